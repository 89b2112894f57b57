import t from 'tap'
import { startTestProxy } from '../helpers/proxy.ts'
import { startUpstream } from '../helpers/upstream.ts'
import { chaos, clusterState, drive, from, get, waitFor } from '../helpers/resilience.ts'

/**
 * peak_ewma (issue #3) through a real proxy: traffic moves away from an
 * endpoint that slows down and back once it recovers. Assertions are on
 * shares of requests, never on latencies.
 */

function doc (urls: string[], loadBalancer: Record<string, unknown>): Record<string, unknown> {
  return {
    clusters: [{ name: 'c', loadBalancer, endpoints: urls.map((url) => ({ url })), outlierDetection: { enabled: false } }],
    routes: [{ name: 'r', cluster: 'c' }],
  }
}

t.test('a slow endpoint loses its share, and wins it back after recovering', async (t) => {
  const slow = await chaos(t, { name: 'slow', behaviour: { delayMs: 50 }, recordSeen: false })
  const a = await chaos(t, { name: 'a', recordSeen: false })
  const b = await chaos(t, { name: 'b', recordSeen: false })
  const proxy = await startTestProxy(doc([slow.url, a.url, b.url], { policy: 'peak_ewma' }), t)

  const first = await drive(`${proxy.url}/x`, 600, 10)
  t.ok(first.every((x) => x.status === 200))
  const slowShare = from(first, 'slow') / first.length
  t.ok(slowShare < 0.15, `the slow endpoint got ${(slowShare * 100).toFixed(1)}% (round robin: 33%)`)

  const c = await clusterState(proxy.adminUrl, 'c')
  for (const e of c.endpoints) {
    t.type(e.score?.score, 'number', `${e.url} shows its score`)
    t.type(e.score?.latencyEwmaMs, 'number', 'and its inputs')
    t.type(e.score?.errorRate, 'number')
  }
  const slowScore = c.endpoints[0]?.score?.latencyEwmaMs as number
  t.ok(c.endpoints.slice(1).every((e) => (e.score?.latencyEwmaMs as number) < slowScore), 'the slow endpoint has the highest latency estimate')

  // Recovered: round after round, its share must climb back over 15%. The
  // model forgets by time (decay, 10 s by default), not by request count, so
  // the rounds are bounded by a generous wait rather than by their number.
  slow.behave({})
  const shares: number[] = []
  await waitFor(async () => {
    const answers = await drive(`${proxy.url}/x`, 300, 10)
    shares.push(from(answers, 'slow') / answers.length)
    return (shares.at(-1) as number) > 0.15
  }, 'the recovered endpoint to win its share back', 30_000, 0).catch(() => {})
  const last = shares.at(-1) as number
  t.ok(last > 0.15, `its share came back: ${shares.map((s) => (s * 100).toFixed(1) + '%').join(', ')}`)
})

t.test('round_robin, for comparison, keeps sending a third to the slow endpoint', async (t) => {
  const slow = await chaos(t, { name: 'slow', behaviour: { delayMs: 50 }, recordSeen: false })
  const a = await chaos(t, { name: 'a', recordSeen: false })
  const b = await chaos(t, { name: 'b', recordSeen: false })
  const proxy = await startTestProxy(doc([slow.url, a.url, b.url], { policy: 'round_robin' }), t)
  const answers = await drive(`${proxy.url}/x`, 300, 10)
  t.equal(from(answers, 'slow'), 100)
})

t.test('an endpoint that answers fast but breaks every body loses its share', async (t) => {
  const body = Buffer.alloc(10_000, 97)
  const broken = await chaos(t, { name: 'broken', behaviour: { closeMidBody: true, body }, recordSeen: false })
  const good = await chaos(t, { name: 'good', behaviour: { delayMs: 20, body }, recordSeen: false })
  const proxy = await startTestProxy(doc([broken.url, good.url], { policy: 'peak_ewma' }), t)
  let failed = 0
  for (let i = 0; i < 100; i++) {
    try { await get(`${proxy.url}/x`) } catch { failed++ }
  }
  t.ok(failed < 20, `${failed} of 100 bodies broke (the fast, broken endpoint looked best: 99)`)
  const c = await clusterState(proxy.adminUrl, 'c')
  t.ok((c.endpoints[0]?.score?.errorRate as number) > 0, 'the broken bodies count as errors')
})

t.test('an upstream repeating endpoint-load-metrics is relayed, not turned into a 502', async (t) => {
  const up = await startUpstream((_req, res) => {
    res.writeHead(200, ['content-length', '2', 'endpoint-load-metrics', 'TEXT cpu_utilization=0.5', 'endpoint-load-metrics', 'TEXT mem_utilization=0.5'])
    res.end('ok')
  })
  t.teardown(up.close)
  const proxy = await startTestProxy(doc([up.url], { policy: 'peak_ewma' }), t)
  const answers = await drive(`${proxy.url}/x`, 3, 1)
  t.same(answers.map((a) => `${a.status} ${a.body}`), ['200 ok', '200 ok', '200 ok'])
  const c = await clusterState(proxy.adminUrl, 'c')
  t.ok((c.endpoints[0]?.score?.utilization as number) > 0, 'the first report counts')
})
