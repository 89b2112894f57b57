import t from 'tap'
import http from 'node:http'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.ts'
import { startTestProxy } from '../helpers/proxy.ts'
import { chaos, clusterState, drive, get, metric, waitFor, type Answer } from '../helpers/resilience.ts'

/**
 * Circuit breaking and overload limits (issue #3): an open circuit and a
 * full cluster answer 503 with `x-outrider-overloaded` and an OVERLOADED
 * problem without bothering the upstream, half-open lets exactly one probe
 * through, and the limits never leak a slot (no deadlock).
 */

interface Problem { code: string, status: number }

function shed (a: Answer, limit: string): boolean {
  return a.status === 503 && a.headers['x-outrider-overloaded'] === limit && (JSON.parse(a.body) as Problem).code === 'OVERLOADED'
}

function doc (urls: string[], cluster: Record<string, unknown>): Record<string, unknown> {
  return {
    clusters: [{ name: 'c', endpoints: urls.map((url) => ({ url })), outlierDetection: { enabled: false }, ...cluster }],
    routes: [{ name: 'r', cluster: 'c' }],
  }
}

/** Polls until the open period of the cluster breaker has passed, without sending a request. */
async function openPeriodOver (adminUrl: string): Promise<void> {
  await waitFor(async () => {
    const until = (await clusterState(adminUrl, 'c')).circuit?.openUntil
    return until !== undefined && Date.parse(until) <= Date.now()
  }, 'the open period to pass', 5000, 10)
}

t.test('consecutive failures open the circuit; half-open probes once; recovery closes it', async (t) => {
  const up = await chaos(t, { name: 'u', behaviour: { status: 503, delayMs: 50 } })
  const proxy = await startTestProxy(doc([up.url], { circuitBreaker: { trigger: { by: 'consecutive', failures: 3 }, halfOpenAfter: '1s' } }), t)

  const first = await drive(`${proxy.url}/x`, 3, 1)
  t.same(first.map((a) => a.headers['x-chaos-upstream']), ['u', 'u', 'u'], 'the first three failures reach the upstream')
  const blocked = await drive(`${proxy.url}/x`, 5, 1)
  t.ok(blocked.every((a) => shed(a, 'circuit_open')), 'then the circuit is open: 503 circuit_open, OVERLOADED')
  t.equal(up.count, 3, 'without reaching the upstream')
  let c = await clusterState(proxy.adminUrl, 'c')
  t.equal(c.circuit?.state, 'open')
  t.equal(c.endpoints[0]?.circuit?.state, 'open')
  t.equal(await metric(proxy.adminUrl, 'outrider_circuit_state', { cluster: 'c', endpoint: '' }), 2, 'gauge: open')
  t.equal(await metric(proxy.adminUrl, 'outrider_circuit_transitions_total', { cluster: 'c', endpoint: '', to: 'open' }), 1)

  // Half-open: of concurrent requests exactly one is the probe; it fails, so the circuit opens again.
  await openPeriodOver(proxy.adminUrl)
  const probe = await drive(`${proxy.url}/x`, 5, 5)
  t.equal(up.count, 4, 'exactly one probe reached the upstream')
  t.equal(probe.filter((a) => shed(a, 'circuit_open')).length, 4, 'the others were refused')
  c = await clusterState(proxy.adminUrl, 'c')
  t.equal(c.circuit?.state, 'open', 'a failed probe re-opens the circuit')
  t.equal(await metric(proxy.adminUrl, 'outrider_circuit_transitions_total', { cluster: 'c', endpoint: '', to: 'half-open' }), 1)
  t.equal(await metric(proxy.adminUrl, 'outrider_circuit_transitions_total', { cluster: 'c', endpoint: '', to: 'open' }), 2)

  // The upstream recovers: the next probe closes the circuit and traffic flows.
  up.behave({})
  await openPeriodOver(proxy.adminUrl)
  const after = await drive(`${proxy.url}/x`, 1, 1)
  t.equal(after[0]?.status, 200, 'the probe succeeds')
  const flowing = await drive(`${proxy.url}/x`, 10, 3)
  t.same(flowing.map((a) => a.status), Array(10).fill(200), 'closed: every request goes through')
  c = await clusterState(proxy.adminUrl, 'c')
  t.equal(c.circuit?.state, 'closed')
  t.equal(c.endpoints[0]?.circuit?.state, 'closed')
  t.equal(await metric(proxy.adminUrl, 'outrider_circuit_state', { cluster: 'c', endpoint: '' }), 0, 'gauge: closed')
  t.equal(await metric(proxy.adminUrl, 'outrider_circuit_state', { cluster: 'c', endpoint: up.url }), 0)
  t.equal(await metric(proxy.adminUrl, 'outrider_circuit_transitions_total', { cluster: 'c', endpoint: '', to: 'closed' }), 1)
  t.ok(await metric(proxy.adminUrl, 'outrider_overload_rejections_total', { cluster: 'c', limit: 'circuit_open' }) >= 9)

  // A closed circuit starts counting afresh: one failure does not re-open it.
  up.behave({ status: 503 })
  await drive(`${proxy.url}/x`, 2, 1)
  t.equal((await clusterState(proxy.adminUrl, 'c')).circuit?.state, 'closed', 'two failures after closing are below the trigger')
  const third = await drive(`${proxy.url}/x`, 2, 1)
  t.ok(shed(third[1] as Answer, 'circuit_open'), 'the third one opens it again')
})

t.test('a per-endpoint breaker takes one endpoint out; the other keeps serving', async (t) => {
  const bad = await chaos(t, { name: 'bad', behaviour: { status: 503 } })
  const good = await chaos(t, { name: 'good' })
  // The cluster breaker sees the good answers too, so it stays closed.
  const proxy = await startTestProxy(doc([bad.url, good.url], { circuitBreaker: { trigger: { by: 'consecutive', failures: 3 }, halfOpenAfter: '10s' } }), t)
  await drive(`${proxy.url}/x`, 6, 1)
  t.equal(bad.count, 3)
  const c = await clusterState(proxy.adminUrl, 'c')
  t.equal(c.endpoints[0]?.circuit?.state, 'open', 'the bad endpoint\'s circuit is open')
  t.equal(c.endpoints[1]?.circuit?.state, 'closed')
  t.equal(c.circuit?.state, 'closed', 'the cluster\'s is not')
  const later = await drive(`${proxy.url}/x`, 10, 2)
  t.same(later.map((a) => a.status), Array(10).fill(200), 'traffic goes to the good endpoint')
  t.equal(bad.count, 3, 'the open endpoint gets nothing')
  t.equal(await metric(proxy.adminUrl, 'outrider_circuit_state', { cluster: 'c', endpoint: bad.url }), 2)
})

t.test('a circuit_open 503 says when to retry: Retry-After up to the half-open time', async (t) => {
  const up = await chaos(t, { name: 'u', behaviour: { status: 503 } })
  const proxy = await startTestProxy(doc([up.url], { circuitBreaker: { trigger: { by: 'consecutive', failures: 2 }, halfOpenAfter: '30s' } }), t)
  await drive(`${proxy.url}/x`, 2, 1)
  const [refused] = await drive(`${proxy.url}/x`, 1, 1)
  t.ok(shed(refused as Answer, 'circuit_open'))
  const seconds = Number(refused?.headers['retry-after'])
  t.ok(seconds >= 1 && seconds <= 30, `Retry-After: ${String(refused?.headers['retry-after'])}`)

})

t.test('ratio trigger: opens over the threshold, not under it', async (t) => {
  const up = await chaos(t, { name: 'u', behaviour: { status: 503, failRatio: 0.25 } })
  const breaker = { trigger: { by: 'ratio', threshold: 0.5, window: '10s', minimumRequests: 10 }, halfOpenAfter: '10s' }
  const proxy = await startTestProxy(doc([up.url], { circuitBreaker: breaker }), t)
  const low = await drive(`${proxy.url}/x`, 40, 1)
  t.notOk(low.some((a) => a.headers['x-outrider-overloaded'] !== undefined), '25% failures stay under a 50% threshold')
  t.equal(up.count, 40)
  t.equal((await clusterState(proxy.adminUrl, 'c')).circuit?.state, 'closed')

  // 75% failing: once the window holds enough requests, the ratio opens it.
  up.behave({ status: 503, failRatio: 0.75 })
  // A changed cluster starts with an empty window (an unchanged one is kept, counts and all).
  await proxy.reload(doc([up.url], { circuitBreaker: { ...breaker, halfOpenAfter: '11s' } }))
  up.reset()
  const high = await drive(`${proxy.url}/x`, 40, 1)
  const refused = high.filter((a) => shed(a, 'circuit_open')).length
  t.ok(refused > 0, `the circuit opened (${refused} refused)`)
  t.ok(up.count >= 10, 'not before minimumRequests')
  t.equal(up.count + refused, 40)
  t.equal((await clusterState(proxy.adminUrl, 'c')).circuit?.state, 'open')
})

t.test('ratio threshold 1 is accepted and opens only when everything fails', async (t) => {
  const up = await chaos(t, { name: 'u', behaviour: { status: 503, failRatio: 0.9 } })
  const breaker = { trigger: { by: 'ratio', threshold: 1, window: '10s', minimumRequests: 5 }, halfOpenAfter: '10s' }
  const proxy = await startTestProxy(doc([up.url], { circuitBreaker: breaker }), t)
  const some = await drive(`${proxy.url}/x`, 20, 1)
  t.notOk(some.some((a) => a.headers['x-outrider-overloaded'] !== undefined), '90% failures do not open it')
  // A changed cluster starts with an empty window (an unchanged one is kept, counts and all).
  await proxy.reload(doc([up.url], { circuitBreaker: { ...breaker, halfOpenAfter: '11s' } }))
  up.behave({ status: 503 })
  const all = await drive(`${proxy.url}/x`, 20, 1)
  t.ok(all.some((a) => shed(a, 'circuit_open')), '100% failures do')
})

/** An upstream that holds every request until `release()`, or answers at once after `answerAll()`. */
async function holdingUpstream (t: { teardown (fn: () => unknown): void }): Promise<{ url: string, held: () => number, release: () => void, answerAll: () => void }> {
  const held: http.ServerResponse[] = []
  let hold = true
  const up = await startUpstream((req: http.IncomingMessage, res: http.ServerResponse) => {
    req.resume()
    if (hold) held.push(res)
    else res.end('done')
  })
  t.teardown(up.close)
  const release = (): void => { for (const res of held.splice(0)) res.end('done') }
  return {
    url: up.url,
    held: () => held.length,
    release,
    answerAll: () => { hold = false; release() },
  }
}

t.test('maxRequests: the request over the limit is refused, and the limit never leaks', async (t) => {
  const up = await holdingUpstream(t)
  const proxy = await startTestProxy(doc([up.url], { overload: { maxRequests: 2 } }), t)
  const hung = [request(`${proxy.url}/1`), request(`${proxy.url}/2`)]
  await waitFor(() => up.held() === 2, 'two requests to be held')
  const third = await get(`${proxy.url}/3`)
  t.ok(shed(third, 'max_requests'), '503 max_requests, OVERLOADED')
  t.equal(up.held(), 2, 'the third never reached the upstream')
  t.equal((await clusterState(proxy.adminUrl, 'c')).active, 2)

  up.release()
  for (const p of hung) t.equal((await p).statusCode, 200)
  await waitFor(async () => (await clusterState(proxy.adminUrl, 'c')).active === 0, 'active to drop to 0')
  t.pass('active is back to 0')
  // Repeatedly full, then released: the counter must come back every time.
  for (let round = 0; round < 3; round++) {
    const batch = [request(`${proxy.url}/a`), request(`${proxy.url}/b`)]
    await waitFor(() => up.held() === 2, 'two requests to be held')
    up.release()
    for (const p of batch) await (await p).body.dump()
  }
  up.answerAll()
  const ok = await drive(`${proxy.url}/x`, 6, 2)
  t.same(ok.map((a) => a.status).filter((s) => s !== 200), [], 'new requests succeed')
  t.equal(await metric(proxy.adminUrl, 'outrider_overload_rejections_total', { cluster: 'c', limit: 'max_requests' }), 1)
})

t.test('maxRequests: clients that give up release their slots', async (t) => {
  const up = await holdingUpstream(t)
  const proxy = await startTestProxy(doc([up.url], { overload: { maxRequests: 2 } }), t)
  const ac = new AbortController()
  const hung = [request(`${proxy.url}/1`, { signal: ac.signal }), request(`${proxy.url}/2`, { signal: ac.signal })]
  await waitFor(() => up.held() === 2, 'two requests to be held')
  ac.abort()
  await Promise.allSettled(hung)
  await waitFor(async () => (await clusterState(proxy.adminUrl, 'c')).active === 0, 'active to drop to 0')
  const next = request(`${proxy.url}/after`)
  await waitFor(() => up.held() === 3, 'the next request to reach the upstream')
  up.release()
  t.equal((await next).statusCode, 200, 'a new request is served')
})

t.test('maxPendingRequests: requests queued for a connection are bounded', async (t) => {
  const up = await holdingUpstream(t)
  const proxy = await startTestProxy(doc([up.url], { connectionsPerEndpoint: 1, overload: { maxPendingRequests: 1 } }), t)
  const running = request(`${proxy.url}/1`)
  await waitFor(() => up.held() === 1, 'one request to be held')
  const queued = request(`${proxy.url}/2`)
  await waitFor(async () => (await clusterState(proxy.adminUrl, 'c')).endpoints[0]?.inflight === 2, 'the second to queue')
  const third = await get(`${proxy.url}/3`)
  t.ok(shed(third, 'max_pending_requests'), '503 max_pending_requests')
  up.release()
  t.equal((await running).statusCode, 200)
  await waitFor(() => up.held() === 1, 'the queued request to reach the upstream')
  up.release()
  t.equal((await queued).statusCode, 200)
  await waitFor(async () => (await clusterState(proxy.adminUrl, 'c')).active === 0, 'active to drop to 0')
  t.pass('no slot leaked')
})

t.test('an open circuit with retries: refused requests hold no budget or active slot', async (t) => {
  const up = await chaos(t, { name: 'u', behaviour: { status: 503 } })
  const proxy = await startTestProxy(doc([up.url], {
    circuitBreaker: { trigger: { by: 'consecutive', failures: 2 }, halfOpenAfter: '10s' },
    retry: { retryOn: ['gateway-error'], maxAttempts: 3, backoff: { base: 1, max: 1 } },
    retryBudget: { percent: 100, minRetriesPerSecond: 100 },
  }), t)
  const answers = await drive(`${proxy.url}/x`, 10, 2)
  t.ok(answers.every((a) => a.status === 503))
  t.ok(answers.some((a) => shed(a, 'circuit_open')))
  const c = await waitFor(async () => {
    const s = await clusterState(proxy.adminUrl, 'c')
    return s.active === 0 && s.retriesInFlight === 0 ? s : undefined
  }, 'the cluster to be idle', 2000)
  t.equal(c.retriesInFlight, 0)
})
