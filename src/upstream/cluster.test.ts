import t from 'tap'
import { configSchema } from '../config/schema.ts'
import { Cluster } from './cluster.ts'
import { loadCockatiel } from './cockatiel.ts'

await loadCockatiel()

/** A cluster of `n` endpoints (pools connect lazily: nothing listens on these ports). */
function cluster (policy: string, n: number, extra: Record<string, unknown> = {}): Cluster {
  const config = configSchema.parse({
    listen: { port: 0 },
    admin: { port: 0 },
    clusters: [{
      name: 'c',
      endpoints: Array.from({ length: n }, (_, i) => ({ url: `http://127.0.0.1:${9001 + i}` })),
      loadBalancer: { policy, ...(policy === 'consistent_hash' ? { hashOn: { by: 'header', header: 'x-k' } } : {}) },
      outlierDetection: { enabled: false },
      circuitBreaker: { trigger: { by: 'consecutive', failures: 1 }, halfOpenAfter: '60s' },
      ...extra,
    }],
    routes: [{ name: 'r', cluster: 'c' }],
  })
  return new Cluster(config.clusters[0]!)
}

/** How often each endpoint (or refusal) came out of `choose` over 300 requests with distinct keys. */
function tally (c: Cluster): Record<string, number> {
  const out: Record<string, number> = {}
  for (let k = 0; k < 300; k++) {
    const r = c.choose({ 'x-k': `key-${k}` }, '10.0.0.1')
    const name = typeof r === 'string' ? r : r.id
    out[name] = (out[name] ?? 0) + 1
  }
  return out
}

for (const policy of ['least_request', 'peak_ewma', 'consistent_hash', 'random', 'round_robin', 'weighted']) {
  t.test(`${policy}: an endpoint with an open circuit passes its requests to the closed ones`, async (t) => {
    const c = cluster(policy, 3)
    t.teardown(() => c.drain(0))
    const [open, ...rest] = c.endpoints
    open!.breaker!.failure()
    // Load on the others: P2C policies then prefer the idle, open endpoint.
    for (const e of rest) e.inflight = 3
    const got = tally(c)
    t.same(Object.keys(got).sort(), rest.map((e) => e.id).sort(), 'only the closed endpoints, never circuit_open')
  })
}

t.test('consistent_hash: an open endpoint\'s keys move along the ring and only they move', async (t) => {
  const c = cluster('consistent_hash', 4)
  t.teardown(() => c.drain(0))
  const before = new Map<string, string>()
  for (let k = 0; k < 200; k++) before.set(`key-${k}`, (c.choose({ 'x-k': `key-${k}` }, '') as { id: string }).id)
  const open = c.endpoints[1]!
  open.breaker!.failure()
  const owners = new Set<string>()
  const moved: string[] = []
  for (const [key, was] of before) {
    const now = (c.choose({ 'x-k': key }, '') as { id: string }).id
    if (was === open.id) owners.add(now)
    else if (now !== was) moved.push(key)
  }
  t.same(moved, [], 'the other endpoints keep their keys')
  t.notOk(owners.has(open.id), 'the open endpoint gets none')
  t.ok(owners.size > 1, 'the open endpoint\'s keys spread over the ring, not onto one neighbour')
})

t.test('a full queue passes requests on too; refused only when no endpoint can take one', async (t) => {
  // A hash ring maps a key to the full endpoint every time it is asked.
  const c = cluster('consistent_hash', 2, { overload: { maxPendingRequests: 2 } })
  t.teardown(() => c.drain(0))
  const [full, idle] = c.endpoints
  full!.inflight = full!.connections + 1
  t.same(tally(c), { [idle!.id]: 300 })
  idle!.breaker!.failure()
  t.equal(c.choose({}, ''), 'max_pending_requests', 'the pick\'s reason when nothing is left')
  full!.inflight = 0
  full!.breaker!.failure()
  t.equal(c.choose({}, ''), 'circuit_open')
})

t.test('Retry-After of a circuit_open refusal: when the first endpoint circuit half-opens', async (t) => {
  const c = cluster('round_robin', 2)
  t.teardown(() => c.drain(0))
  for (const e of c.endpoints) e.breaker!.failure()
  t.equal(c.choose({}, ''), 'circuit_open')
  t.same(c.overloadHeaders('circuit_open'), { 'x-outrider-overloaded': 'circuit_open', 'retry-after': '60' })
  t.same(c.overloadHeaders('max_requests'), { 'x-outrider-overloaded': 'max_requests' })
})

t.test('half-open: only the probe\'s own end frees its slot or decides the circuit', async (t) => {
  const c = cluster('round_robin', 1, { circuitBreaker: { trigger: { by: 'consecutive', failures: 1 }, halfOpenAfter: '20ms' } })
  t.teardown(() => c.drain(0))
  const e = c.endpoints[0]!
  const stale = [c.choose({}, ''), c.choose({}, '')] // sent while closed: long streams, say
  t.same(stale.map((s) => s === e && !c.isProbe(e)), [true, true])
  c.record(e, 'gateway-failure', 1, undefined, false)
  t.equal(e.breaker!.state, 'open')
  for (let i = 0; i < 100 && !e.breaker!.wouldAllow(); i++) await new Promise((resolve) => setTimeout(resolve, 5))

  t.equal(c.choose({}, ''), e, 'one probe')
  t.ok(c.isProbe(e))
  t.equal(c.choose({}, ''), 'circuit_open', 'a concurrent request is refused')
  c.record(e, undefined, 1, undefined, false) // an older request's client left
  t.equal(c.choose({}, ''), 'circuit_open', 'still refused: the probe is still out')
  c.record(e, 'gateway-failure', 1, undefined, false) // the other older request failed
  t.equal(e.breaker!.state, 'half-open', 'the probe decides, not an older request')
  t.equal(c.choose({}, ''), 'circuit_open')

  c.record(e, undefined, 1, undefined, true) // the probe's client left
  t.equal(c.choose({}, ''), e, 'its slot is free for the next probe')
  c.record(e, 'success', 1, undefined, true)
  t.equal(e.breaker!.state, 'closed')
})
