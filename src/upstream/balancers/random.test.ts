import t from 'tap'
import type { BalancedEndpoint } from '../balancer.ts'
import { WeightedRandom } from './random.ts'

const endpoints = (...weights: number[]): BalancedEndpoint[] =>
  weights.map((weight, i) => ({ id: `http://10.0.0.${i + 1}:80`, weight, inflight: 0, healthy: true }))

const count = (eps: BalancedEndpoint[], picks: number): number[] => {
  const wr = new WeightedRandom(eps)
  const counts = eps.map(() => 0)
  for (let i = 0; i < picks; i++) counts[eps.indexOf(wr.pick(undefined)!)]!++
  return counts
}

t.test('weights 1:2:3 within ±5% over 60k picks', async (t) => {
  const counts = count(endpoints(1, 2, 3), 60_000)
  const expected = [10_000, 20_000, 30_000]
  counts.forEach((c, i) => t.ok(Math.abs(c - expected[i]!) <= expected[i]! * 0.05, `endpoint ${i}: ${c}`))
})

t.test('unhealthy endpoints are never picked; the rest keep their ratio', async (t) => {
  const eps = endpoints(1, 2, 3, 4)
  eps[3]!.healthy = false // the heaviest, so the fallback path runs often
  const counts = count(eps, 60_000)
  t.equal(counts[3], 0)
  const expected = [10_000, 20_000, 30_000]
  expected.forEach((e, i) => t.ok(Math.abs(counts[i]! - e) <= e * 0.05, `endpoint ${i}: ${counts[i]}`))
})

t.test('undefined when none is healthy', async (t) => {
  const eps = endpoints(1, 2)
  for (const e of eps) e.healthy = false
  t.equal(new WeightedRandom(eps).pick(undefined), undefined)
  t.equal(new WeightedRandom([]).pick(undefined), undefined)
})
