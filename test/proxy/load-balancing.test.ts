import t from 'tap'
import { request } from 'undici'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import { startTestProxy } from '../helpers/proxy.ts'

async function upstreams (t: { teardown (fn: () => unknown): void }, n: number): Promise<Upstream[]> {
  const out: Upstream[] = []
  for (let i = 0; i < n; i++) {
    const u = await startUpstream((_req, res) => { res.end(String(i)) })
    t.teardown(u.close)
    out.push(u)
  }
  return out
}

async function tally (url: string, n: number, headers: Record<string, string> = {}): Promise<number[]> {
  const counts: number[] = []
  for (let i = 0; i < n; i++) {
    const k = Number(await (await request(url, { headers })).body.text())
    counts[k] = (counts[k] ?? 0) + 1
  }
  return counts
}

function doc (ups: Upstream[], loadBalancer: Record<string, unknown>, weights: number[] = []): Record<string, unknown> {
  return {
    clusters: [{ name: 'c', loadBalancer, endpoints: ups.map((u, i) => ({ url: u.url, weight: weights[i] ?? 1 })) }],
    routes: [{ name: 'r', cluster: 'c' }],
  }
}

t.test('round_robin spreads evenly through the proxy', async (t) => {
  const ups = await upstreams(t, 3)
  const proxy = await startTestProxy(doc(ups, { policy: 'round_robin' }), t)
  t.same(await tally(proxy.url, 30), [10, 10, 10])
})

t.test('weighted follows the weights exactly over a cycle', async (t) => {
  const ups = await upstreams(t, 3)
  const proxy = await startTestProxy(doc(ups, { policy: 'weighted' }, [1, 2, 3]), t)
  t.same(await tally(proxy.url, 60), [10, 20, 30])
})

t.test('random is weighted', async (t) => {
  const ups = await upstreams(t, 2)
  const proxy = await startTestProxy(doc(ups, { policy: 'random' }, [1, 3]), t)
  const c = await tally(proxy.url, 400)
  const share = (c[1] ?? 0) / 400
  t.ok(share > 0.62 && share < 0.88, `weight-3 endpoint got ${share} (expected ≈0.75)`)
})

t.test('least_request avoids the busy endpoint', async (t) => {
  const holds: Array<() => void> = []
  const busy = await startUpstream((_req, res) => { holds.push(() => res.end('0')) })
  const idle = await startUpstream((_req, res) => { res.end('1') })
  t.teardown(busy.close)
  t.teardown(idle.close)
  const proxy = await startTestProxy(doc([busy, idle], { policy: 'least_request' }), t)
  // Send until one is parked on the busy endpoint (the idle one answers the
  // others at once), then check where the next ones go.
  const parked: Array<ReturnType<typeof request>> = []
  for (let i = 0; i < 100 && holds.length === 0; i++) {
    parked.push(request(proxy.url))
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.ok(holds.length > 0, 'a request is parked on the busy endpoint')
  const c = await tally(proxy.url, 20)
  t.equal(c[1], 20, 'every new request went to the idle endpoint')
  for (const h of holds) h()
  await Promise.all(parked.map(async (p) => { await (await p).body.dump() }))
})

t.test('consistent_hash on a header is sticky and remaps minimally', async (t) => {
  const ups = await upstreams(t, 4)
  const proxy = await startTestProxy(doc(ups, { policy: 'consistent_hash', hashOn: { by: 'header', header: 'x-user' } }), t)
  const before = new Map<string, string>()
  for (let i = 0; i < 60; i++) {
    const key = `user-${i}`
    const a = await (await request(proxy.url, { headers: { 'x-user': key } })).body.text()
    const b = await (await request(proxy.url, { headers: { 'x-user': key } })).body.text()
    t.equal(a, b, `${key} is sticky`)
    before.set(key, a)
  }
  t.ok(new Set(before.values()).size >= 3, 'keys spread over the endpoints')
  // Remove endpoint 3: only its keys move.
  await proxy.reload(doc(ups.slice(0, 3), { policy: 'consistent_hash', hashOn: { by: 'header', header: 'x-user' } }))
  let moved = 0
  for (const [key, was] of before) {
    const now = await (await request(proxy.url, { headers: { 'x-user': key } })).body.text()
    if (was !== '3') t.equal(now, was, `${key} stays on ${was}`)
    else moved++
  }
  t.ok(moved > 0, 'the removed endpoint had keys')
})

t.test('consistent_hash on a cookie', async (t) => {
  const ups = await upstreams(t, 3)
  const proxy = await startTestProxy(doc(ups, { policy: 'consistent_hash', hashOn: { by: 'cookie', cookie: 'session' } }), t)
  const seen = new Set<string>()
  for (let i = 0; i < 5; i++) seen.add(await (await request(proxy.url, { headers: { cookie: `a=1; session=abc; b=2` } })).body.text())
  t.equal(seen.size, 1)
})
