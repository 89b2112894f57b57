import t from 'tap'
import type { BalancedEndpoint } from '../balancer.ts'
import { RoundRobin } from './round-robin.ts'

const endpoints = (...weights: number[]): BalancedEndpoint[] =>
  weights.map((weight, i) => ({ id: `http://10.0.0.${i + 1}:80`, weight, inflight: 0, healthy: true }))

t.test('cycles evenly in order, ignoring weights', async (t) => {
  const eps = endpoints(1, 5, 1)
  const rr = new RoundRobin(eps)
  const ids = Array.from({ length: 6 }, () => rr.pick(undefined)?.id)
  t.same(ids, [eps[0]!.id, eps[1]!.id, eps[2]!.id, eps[0]!.id, eps[1]!.id, eps[2]!.id])
  const counts = new Map<string, number>()
  for (let i = 0; i < 3000; i++) {
    const id = rr.pick(undefined)!.id
    counts.set(id, (counts.get(id) ?? 0) + 1)
  }
  for (const e of eps) t.equal(counts.get(e.id), 1000)
})

t.test('skips unhealthy endpoints and picks them again once healthy', async (t) => {
  const eps = endpoints(1, 1, 1)
  const rr = new RoundRobin(eps)
  eps[1]!.healthy = false
  for (let i = 0; i < 100; i++) t.not(rr.pick(undefined), eps[1])
  eps[1]!.healthy = true
  const seen = new Set(Array.from({ length: 3 }, () => rr.pick(undefined)))
  t.equal(seen.size, 3)
})

t.test('undefined when none is healthy or there are none', async (t) => {
  const eps = endpoints(1, 1)
  for (const e of eps) e.healthy = false
  t.equal(new RoundRobin(eps).pick(undefined), undefined)
  t.equal(new RoundRobin([]).pick(undefined), undefined)
})
