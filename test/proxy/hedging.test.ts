import t from 'tap'
import http from 'node:http'
import { startUpstream } from '../helpers/upstream.ts'
import { startTestProxy } from '../helpers/proxy.ts'
import { chaos, clusterState, drive, from, get, metric, waitFor } from '../helpers/resilience.ts'

/**
 * Hedging (issue #3): a GET whose first attempt is slow is raced against a
 * second endpoint; the first answer wins and the loser is cancelled, so the
 * slow upstream sees its request go away instead of working for nobody.
 */

interface SlowUpstream {
  url: string
  /** Requests received. */
  received: number
  /** Requests whose connection closed before the answer was sent. */
  abandoned: number
  /** Requests answered in full. */
  answered: number
}

/** Answers after `delayMs` and records whether the proxy went away first. */
async function slowUpstream (t: { teardown (fn: () => unknown): void }, delayMs: number): Promise<SlowUpstream> {
  const state: SlowUpstream = { url: '', received: 0, abandoned: 0, answered: 0 }
  const up = await startUpstream((req: http.IncomingMessage, res: http.ServerResponse) => {
    state.received++
    req.resume()
    const timer = setTimeout(() => {
      res.writeHead(200, { 'x-chaos-upstream': 'slow', 'content-length': '5' })
      res.end('slow\n')
    }, delayMs)
    res.on('close', () => {
      if (res.writableFinished) { state.answered++; return }
      clearTimeout(timer)
      state.abandoned++
    })
  })
  t.teardown(up.close)
  state.url = up.url
  return state
}

function doc (urls: string[], route: Record<string, unknown>): Record<string, unknown> {
  return {
    // Generous budget and no outlier detection: the counts stay exact.
    clusters: [{ name: 'c', endpoints: urls.map((url) => ({ url })), outlierDetection: { enabled: false }, retryBudget: { percent: 100, minRetriesPerSecond: 1000 } }],
    routes: [{ name: 'r', cluster: 'c', ...route }],
  }
}

t.test('a slow GET is hedged to another endpoint; the loser is cancelled', async (t) => {
  const slow = await slowUpstream(t, 1000)
  const fast = await chaos(t, { name: 'fast' })
  const proxy = await startTestProxy(doc([slow.url, fast.url], { hedge: { delay: '30ms' } }), t)
  const answers = await drive(`${proxy.url}/x`, 6, 1)
  t.same(answers.map((a) => a.status), Array(6).fill(200))
  t.equal(from(answers, 'fast'), 6, 'every answer came from the fast endpoint')
  t.equal(fast.count, 6, 'each request reached the fast endpoint once (first or as the hedge)')
  t.ok(slow.received >= 1, `the slow endpoint was tried first ${slow.received} times`)
  await waitFor(() => slow.abandoned === slow.received, 'the slow attempts to be cancelled', 3000)
  t.equal(slow.answered, 0, 'the slow endpoint never finished an answer nobody wanted')
  t.equal(await metric(proxy.adminUrl, 'outrider_hedges_total', { route: 'r', outcome: 'sent' }), slow.received)
  t.equal(await metric(proxy.adminUrl, 'outrider_hedges_total', { route: 'r', outcome: 'won' }), slow.received)
  const c = await waitFor(async () => {
    const s = await clusterState(proxy.adminUrl, 'c')
    return s.active === 0 && s.retriesInFlight === 0 && s.endpoints.every((e) => e.inflight === 0) ? s : undefined
  }, 'the cluster to be idle', 2000)
  t.equal(c.retriesInFlight, 0, 'the hedges gave their budget slots back')
})

t.test('a fast first attempt is not hedged', async (t) => {
  const a = await chaos(t, { name: 'a' })
  const b = await chaos(t, { name: 'b' })
  const proxy = await startTestProxy(doc([a.url, b.url], { hedge: { delay: '500ms' } }), t)
  await drive(`${proxy.url}/x`, 10, 2)
  t.equal(a.count + b.count, 10, 'one attempt per request')
  t.equal(await metric(proxy.adminUrl, 'outrider_hedges_total', { route: 'r', outcome: 'sent' }), 0)
})

t.test('hedging never applies to POST', async (t) => {
  const slow = await slowUpstream(t, 200)
  const fast = await chaos(t, { name: 'fast' })
  const proxy = await startTestProxy(doc([slow.url, fast.url], { hedge: { delay: '20ms' } }), t)
  // Round robin starts at the slow endpoint.
  const a = await get(`${proxy.url}/x`, { method: 'POST', body: 'order' })
  t.equal(a.status, 200)
  t.equal(a.headers['x-chaos-upstream'], 'slow', 'the slow answer was awaited')
  t.equal(fast.count, 0, 'no second attempt')
  t.equal(slow.answered, 1)
  t.equal(await metric(proxy.adminUrl, 'outrider_hedges_total', { route: 'r', outcome: 'sent' }), 0)
})

t.test('when the hedge fails, the first attempt still answers', async (t) => {
  const slow = await slowUpstream(t, 150)
  const broken = await chaos(t, { name: 'broken', behaviour: { reset: true } })
  const proxy = await startTestProxy(doc([slow.url, broken.url], { hedge: { delay: '20ms' } }), t)
  const a = await get(`${proxy.url}/x`)
  t.equal(a.status, 200)
  t.equal(a.headers['x-chaos-upstream'], 'slow')
  t.equal(broken.count, 1, 'the hedge was sent and failed')
  t.equal(slow.abandoned, 0, 'the first attempt was left to finish')
})

t.test('a hedged 503 does not pre-empt the attempt still running', async (t) => {
  const slow = await slowUpstream(t, 150)
  const failing = await chaos(t, { name: 'failing', behaviour: { status: 503 } })
  const proxy = await startTestProxy(doc([slow.url, failing.url], { hedge: { delay: '20ms' }, retry: { retryOn: ['gateway-error'], maxAttempts: 3 } }), t)
  const a = await get(`${proxy.url}/x`)
  t.equal(a.status, 200, 'the 503 of the hedge was dropped, the first attempt answered')
  t.equal(a.headers['x-chaos-upstream'], 'slow')
  t.equal(failing.count, 1)
  t.equal(slow.received, 1, 'no extra retry was started while the first attempt ran')
})

t.test('maxHedges 2: two slow endpoints are raced against a third, both losers cancelled', async (t) => {
  const a = await slowUpstream(t, 1000)
  const b = await slowUpstream(t, 1000)
  const fast = await chaos(t, { name: 'fast' })
  const proxy = await startTestProxy(doc([a.url, b.url, fast.url], { hedge: { delay: '20ms', maxHedges: 2 } }), t)
  // Round robin: the first attempt goes to a, the hedges to b, then the fast one.
  const x = await get(`${proxy.url}/x`)
  t.equal(x.status, 200)
  t.equal(x.headers['x-chaos-upstream'], 'fast')
  t.equal(a.received + b.received, 2, 'both slow endpoints were tried')
  await waitFor(() => a.abandoned + b.abandoned === 2, 'both losers to be cancelled', 3000)
  t.equal(a.answered + b.answered, 0)
  t.equal(await metric(proxy.adminUrl, 'outrider_hedges_total', { route: 'r', outcome: 'sent' }), 2)
})
