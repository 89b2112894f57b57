import t from 'tap'
import http from 'node:http'
import { Readable } from 'node:stream'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.ts'
import { startTestProxy } from '../helpers/proxy.ts'
import { chaos, clusterState, drive, from, get, metric, waitFor } from '../helpers/resilience.ts'

/**
 * Retries (issue #3): every `retryOn` condition next to the case that must
 * not be retried, the idempotency and body-replay rules, the budget that
 * keeps retries from amplifying an outage, and the overall deadline.
 * Outlier detection is off unless a test is about it, so the counts are exact.
 */

const NO_OUTLIERS = { enabled: false }
/**
 * The retry budget is the cluster's (`retryBudget`): a generous one here, so
 * tests about conditions are not cut short by it. overload.maxRetries (3 by
 * default) caps retries in flight the same way.
 */
const BUDGET = { percent: 100, minRetriesPerSecond: 1000 }
const OVERLOAD = { maxRetries: 100 }

function doc (urls: string[], retry: Record<string, unknown> | undefined, extra: { cluster?: Record<string, unknown>, route?: Record<string, unknown> } = {}): Record<string, unknown> {
  return {
    clusters: [{ name: 'c', endpoints: urls.map((url) => ({ url })), outlierDetection: NO_OUTLIERS, retryBudget: BUDGET, overload: OVERLOAD, ...extra.cluster }],
    routes: [{ name: 'r', cluster: 'c', ...(retry === undefined ? {} : { retry }), ...extra.route }],
  }
}

interface Problem { code: string, status: number }

t.test('connect-failure: a refused endpoint is retried on the good one', async (t) => {
  const down = await chaos(t, { name: 'down' })
  const good = await chaos(t, { name: 'good' })
  await down.stop()
  const proxy = await startTestProxy(doc([down.url, good.url], { retryOn: ['connect-failure'], attemptsHeader: true }), t)
  const answers = await drive(`${proxy.url}/x`, 10, 1)
  t.same(answers.map((a) => a.status), Array(10).fill(200), 'every request succeeds')
  t.equal(from(answers, 'good'), 10)
  const retried = answers.filter((a) => a.headers['x-outrider-attempts'] === '2').length
  t.ok(retried >= 1, `some requests needed a second attempt (${retried})`)
  t.equal(answers.filter((a) => a.headers['x-outrider-attempts'] === '1').length, 10 - retried, 'the others took one')
  t.equal(good.count, 10, 'the good endpoint saw each request once')
  t.equal(await metric(proxy.adminUrl, 'outrider_retries_total', { route: 'r', reason: 'connect-failure' }), retried)
})

t.test('connect-failure is not retried when retryOn leaves it out', async (t) => {
  const down = await chaos(t, { name: 'down' })
  await down.stop()
  const proxy = await startTestProxy(doc([down.url], { retryOn: ['reset'] }), t)
  const a = await get(`${proxy.url}/x`)
  t.equal(a.status, 502)
  t.equal((JSON.parse(a.body) as Problem).code, 'UPSTREAM_CONNECT_FAILED')
  t.equal(await metric(proxy.adminUrl, 'outrider_retries_total'), 0)
})

t.test('gateway-error: a 503 is retried on a different endpoint', async (t) => {
  const bad = await chaos(t, { name: 'bad', behaviour: { status: 503 } })
  const good = await chaos(t, { name: 'good' })
  // random, not round robin: round robin would move on by itself, random
  // shows that the retry avoids the endpoint that just failed.
  const proxy = await startTestProxy(doc([bad.url, good.url], { retryOn: ['gateway-error'], attemptsHeader: true }, { cluster: { loadBalancer: { policy: 'random' } } }), t)
  const answers = await drive(`${proxy.url}/x`, 40, 4)
  t.same(answers.map((a) => a.status), Array(40).fill(200), 'every request succeeds')
  t.equal(from(answers, 'good'), 40)
  t.ok(bad.count > 0, 'the bad endpoint was tried')
  t.equal(good.count, 40, 'no request was sent twice to the good endpoint')
  t.equal(answers.filter((a) => a.headers['x-outrider-attempts'] === '2').length, bad.count, 'each 503 cost exactly one retry, never a second hit on the bad endpoint')
  t.equal(await metric(proxy.adminUrl, 'outrider_retries_total', { route: 'r', reason: 'gateway-error' }), bad.count)
})

t.test('500 is not a gateway error, but 5xx retries it', async (t) => {
  // Every second answer is a 500, so a retry on the same endpoint succeeds.
  const up = await chaos(t, { name: 'u', behaviour: { status: 500, failRatio: 0.5 } })
  const proxy = await startTestProxy(doc([up.url], { retryOn: ['gateway-error'] }), t)
  const answers = await drive(`${proxy.url}/x`, 10, 1)
  t.equal(answers.filter((a) => a.status === 500).length, 5, 'the 500s are relayed')
  t.equal(up.count, 10, 'not retried')

  up.behave({ status: 500, failRatio: 0.5 })
  up.reset()
  await proxy.reload(doc([up.url], { retryOn: ['5xx'] }))
  const again = await drive(`${proxy.url}/x`, 10, 1)
  t.same(again.map((a) => a.status), Array(10).fill(200), 'retried under 5xx')
  t.equal(up.count - 10, await metric(proxy.adminUrl, 'outrider_retries_total', { route: 'r', reason: '5xx' }), 'one retry counted per extra hit')
  t.ok(up.count > 10)
})

t.test('retriable-status-codes retries exactly the listed statuses', async (t) => {
  const up = await chaos(t, { name: 'u', behaviour: { status: 409, failRatio: 0.5 } })
  const proxy = await startTestProxy(doc([up.url], { retryOn: ['retriable-status-codes'], retriableStatusCodes: [409] }), t)
  const answers = await drive(`${proxy.url}/x`, 10, 1)
  t.same(answers.map((a) => a.status), Array(10).fill(200), '409 retried')
  t.equal(up.count - 10, await metric(proxy.adminUrl, 'outrider_retries_total', { route: 'r', reason: 'retriable-status-codes' }))

  up.behave({ status: 409, failRatio: 0.5 })
  up.reset()
  await proxy.reload(doc([up.url], { retryOn: ['gateway-error', 'retriable-status-codes'], retriableStatusCodes: [429] }))
  const again = await drive(`${proxy.url}/x`, 10, 1)
  t.equal(again.filter((a) => a.status === 409).length, 5, 'an unlisted 409 is relayed')
  t.equal(up.count, 10)
})

t.test('reset: retried under reset, relayed as 502 otherwise', async (t) => {
  const bad = await chaos(t, { name: 'bad', behaviour: { reset: true } })
  const good = await chaos(t, { name: 'good' })
  const proxy = await startTestProxy(doc([bad.url, good.url], { retryOn: ['reset'], attemptsHeader: true }), t)
  const answers = await drive(`${proxy.url}/x`, 10, 1)
  t.same(answers.map((a) => a.status), Array(10).fill(200))
  t.equal(good.count, 10)
  t.equal(await metric(proxy.adminUrl, 'outrider_retries_total', { route: 'r', reason: 'reset' }), bad.count)
  t.ok(bad.count > 0)

  await proxy.reload(doc([bad.url], { retryOn: ['connect-failure'] }))
  const a = await get(`${proxy.url}/x`)
  t.equal(a.status, 502)
  t.equal((JSON.parse(a.body) as Problem).code, 'UPSTREAM_PROTOCOL_ERROR')
})

t.test('perTryTimeout: a slow attempt is abandoned and retried under timeout', async (t) => {
  const slow = await chaos(t, { name: 'slow', behaviour: { hang: true } })
  const good = await chaos(t, { name: 'good' })
  const proxy = await startTestProxy(doc([slow.url, good.url], { retryOn: ['timeout'], perTryTimeout: '500ms', attemptsHeader: true }), t)
  const answers = await drive(`${proxy.url}/x`, 4, 1)
  t.same(answers.map((a) => a.status), Array(4).fill(200))
  t.equal(from(answers, 'good'), 4)
  t.ok(slow.count >= 1, 'the slow endpoint was tried')
  t.equal(await metric(proxy.adminUrl, 'outrider_retries_total', { route: 'r', reason: 'timeout' }), slow.count)
  t.equal(answers.filter((a) => a.headers['x-outrider-attempts'] === '2').length, slow.count)

  await proxy.reload(doc([slow.url], { retryOn: ['reset'], perTryTimeout: '100ms' }))
  const a = await get(`${proxy.url}/x`)
  t.equal(a.status, 504, 'without timeout in retryOn the per-try timeout ends the exchange')
  t.equal((JSON.parse(a.body) as Problem).code, 'UPSTREAM_TIMEOUT')
})

t.test('perTryTimeout is honoured below a second: every try fits in the deadline', async (t) => {
  const a = await chaos(t, { name: 'a', behaviour: { hang: true } })
  const b = await chaos(t, { name: 'b', behaviour: { hang: true } })
  // 4 tries of 250 ms fit a 3 s deadline three times over. A per-try
  // timeout rounded up to undici's one-second timer resolution would fit three.
  const retry = { retryOn: ['timeout'], maxAttempts: 4, perTryTimeout: '250ms', backoff: { base: 1, max: 1 }, attemptsHeader: true }
  const proxy = await startTestProxy(doc([a.url, b.url], retry, { route: { timeouts: { overall: '3s' } } }), t)
  const x = await get(`${proxy.url}/x`)
  t.equal(x.status, 504)
  t.equal((JSON.parse(x.body) as Problem & { phase?: string }).code, 'UPSTREAM_TIMEOUT')
  t.equal(a.count + b.count, 4, 'all four tries were made before the deadline')
  t.equal(x.headers['x-outrider-attempts'], '4', 'the problem response counts the attempts too')
  t.equal(await metric(proxy.adminUrl, 'outrider_retries_total', { route: 'r', reason: 'timeout' }), 3)
})

t.test('POST: not retried after 503 or reset, retried after a connect failure', async (t) => {
  const bad = await chaos(t, { name: 'bad', behaviour: { status: 503 } })
  const good = await chaos(t, { name: 'good' })
  const retry = { retryOn: ['connect-failure', 'reset', 'gateway-error'], attemptsHeader: true }
  const proxy = await startTestProxy(doc([bad.url, good.url], retry), t)
  const post = { method: 'POST' as const, body: 'payload', headers: { 'content-type': 'text/plain' } }
  const answers = await drive(`${proxy.url}/x`, 6, 1, post)
  t.equal(answers.filter((a) => a.status === 503).length, bad.count, 'every 503 is relayed')
  t.equal(bad.count + good.count, 6, 'no request was sent twice')
  t.ok(bad.count > 0)

  bad.behave({ reset: true })
  bad.reset()
  good.reset()
  const reset = await drive(`${proxy.url}/x`, 6, 1, post)
  t.equal(reset.filter((a) => a.status === 502).length, bad.count, 'every reset becomes a 502')
  t.equal(bad.count + good.count, 6)

  // Nothing was sent on a refused connection: safe to retry any method.
  await bad.stop()
  good.reset()
  const refused = await drive(`${proxy.url}/x`, 6, 1, post)
  t.same(refused.map((a) => a.status), Array(6).fill(200), 'connect failures are retried for POST too')
  t.ok(refused.some((a) => a.headers['x-outrider-attempts'] === '2'))
  t.equal(good.count, 6)
  t.ok(good.seen.every((s) => s.method === 'POST'))
  t.equal(await metric(proxy.adminUrl, 'outrider_retries_total', { route: 'r', reason: 'connect-failure' }), refused.filter((a) => a.headers['x-outrider-attempts'] === '2').length)
})

/** An upstream that records request bodies and answers with `statuses` in turn (200 once they run out). */
async function recordingUpstream (t: { teardown (fn: () => unknown): void }, statuses: number[]): Promise<{ url: string, bodies: string[] }> {
  const bodies: string[] = []
  const up = await startUpstream((req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      bodies.push(Buffer.concat(chunks).toString())
      const status = statuses[bodies.length - 1] ?? 200
      res.writeHead(status, { 'content-length': '2' })
      res.end('ok')
    })
  })
  t.teardown(up.close)
  return { url: up.url, bodies }
}

t.test('retryNonIdempotent: a POST is retried and the upstream gets the same body again', async (t) => {
  const up = await recordingUpstream(t, [503])
  const proxy = await startTestProxy(doc([up.url], { retryNonIdempotent: true, attemptsHeader: true }), t)
  const body = JSON.stringify({ order: 42, items: ['a', 'b'] })
  const a = await get(`${proxy.url}/orders`, { method: 'POST', body, headers: { 'content-type': 'application/json' } })
  t.equal(a.status, 200)
  t.equal(a.headers['x-outrider-attempts'], '2')
  t.same(up.bodies, [body, body], 'the body was replayed byte for byte')
})

t.test('a body larger than maxReplayBodySize is sent once and not retried', async (t) => {
  const up = await recordingUpstream(t, [503])
  const proxy = await startTestProxy(doc([up.url], { retryNonIdempotent: true, maxReplayBodySize: '1kb', attemptsHeader: true }), t)
  const big = 'x'.repeat(4000)
  const a = await get(`${proxy.url}/upload`, { method: 'PUT', body: big })
  t.equal(a.status, 503, 'the 503 is relayed')
  t.equal(a.headers['x-outrider-attempts'], '1')
  t.same(up.bodies, [big], 'streamed to the upstream once, complete')

  // A small one is still retried on the same route.
  const b = await get(`${proxy.url}/upload`, { method: 'PUT', body: 'small' })
  t.equal(b.status, 200)
  t.same(up.bodies.slice(1), ['small'], 'the upstream is healthy again, one attempt')
})

t.test('a small body is replayed on retry; a chunked one is streamed and not retried', async (t) => {
  const up = await recordingUpstream(t, [503, 200, 503])
  const proxy = await startTestProxy(doc([up.url], { attemptsHeader: true }), t)
  const a = await get(`${proxy.url}/x`, { method: 'PUT', body: 'hello' })
  t.equal(a.status, 200)
  t.same(up.bodies, ['hello', 'hello'])
  // A chunked body has no declared length: it streams, and streamed bytes cannot be sent again.
  const chunked = await request(`${proxy.url}/x`, { method: 'PUT', body: Readable.from(['chunk-1,', 'chunk-2']) })
  const text = await chunked.body.text()
  t.equal(chunked.statusCode, 503, `relayed (${text})`)
  t.same(up.bodies.slice(2), ['chunk-1,chunk-2'])
})

t.test('budget: retries during an outage stay within the budget', async (t) => {
  const a = await chaos(t, { name: 'a', behaviour: { status: 503 } })
  const b = await chaos(t, { name: 'b', behaviour: { status: 503 } })
  const retry = { maxAttempts: 3, backoff: { base: 1, max: 1 } }
  const proxy = await startTestProxy(doc([a.url, b.url], retry, { cluster: { retryBudget: { percent: 0, minRetriesPerSecond: 1 } } }), t)
  const started = Date.now()
  const answers = await drive(`${proxy.url}/x`, 60, 6)
  const elapsedS = (Date.now() - started) / 1000
  t.same(answers.map((x) => x.status), Array(60).fill(503), 'the outage shows')
  const retries = a.count + b.count - 60
  // One token to start with, one more per second since.
  const allowance = 1 + Math.ceil(elapsedS)
  t.ok(retries >= 1, 'the minimum rate allows some retries')
  t.ok(retries <= allowance, `retries (${retries}) within the budget (${allowance})`)
  t.equal(await metric(proxy.adminUrl, 'outrider_retries_total', { route: 'r' }), retries)
  const exhausted = await metric(proxy.adminUrl, 'outrider_retry_budget_exhausted_total', { cluster: 'c' })
  t.ok(exhausted >= 60 - retries - 1, `the budget said no (${exhausted} times)`)
  t.equal((await clusterState(proxy.adminUrl, 'c')).retriesInFlight, 0, 'every budget slot was given back')
})

t.test('overall deadline: 504 UPSTREAM_TIMEOUT when every attempt hangs', async (t) => {
  const a = await chaos(t, { name: 'a', behaviour: { hang: true } })
  const b = await chaos(t, { name: 'b', behaviour: { hang: true } })
  // Long backoffs, so the deadline often fires while a retry waits for its turn.
  const retry = { retryOn: ['timeout'], maxAttempts: 5, perTryTimeout: '60ms', backoff: { base: '200ms', max: '1s' } }
  const proxy = await startTestProxy(doc([a.url, b.url], retry, { route: { timeouts: { overall: '300ms' } } }), t)
  const answers = await drive(`${proxy.url}/x`, 6, 3)
  for (const x of answers) {
    t.equal(x.status, 504)
    t.equal((JSON.parse(x.body) as Problem).code, 'UPSTREAM_TIMEOUT')
  }
  t.ok(a.count + b.count >= 6, 'each request made at least one attempt')
  t.ok(a.count + b.count <= 6 * 5, 'and never more than maxAttempts')
  t.ok(await metric(proxy.adminUrl, 'outrider_retries_total', { route: 'r', reason: 'timeout' }) > 0, 'tries timed out and were retried')
  // A retry waiting out its backoff when the deadline fires holds a budget slot: it must come back.
  const idle = await waitFor(async () => {
    const s = await clusterState(proxy.adminUrl, 'c')
    return s.active === 0 && s.endpoints.every((e) => e.inflight === 0) ? s : undefined
  }, 'the cluster to be idle', 2000)
  t.equal(idle.retriesInFlight, 0, 'no budget slot is left behind')
})

t.test('overall deadline without retries still ends a hanging exchange', async (t) => {
  const a = await chaos(t, { name: 'a', behaviour: { hang: true } })
  const proxy = await startTestProxy(doc([a.url], undefined, { route: { timeouts: { overall: '150ms' } } }), t)
  const x = await get(`${proxy.url}/x`)
  t.equal(x.status, 504)
  t.equal((JSON.parse(x.body) as Problem).code, 'UPSTREAM_TIMEOUT')
  await waitFor(async () => (await clusterState(proxy.adminUrl, 'c')).endpoints[0]?.inflight === 0, 'the attempt to be released', 2000)
  t.pass('the hung attempt was cancelled')
})
