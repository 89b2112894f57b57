import t from 'tap'
import type { BalancedEndpoint } from '../balancer.ts'
import { SmoothWeighted } from './weighted.ts'

const endpoints = (...weights: number[]): BalancedEndpoint[] =>
  weights.map((weight, i) => ({ id: `http://10.0.0.${i + 1}:80`, weight, inflight: 0, healthy: true }))

t.test('weights 1:2:3 give exact counts over 600 picks', async (t) => {
  const eps = endpoints(1, 2, 3)
  const sw = new SmoothWeighted(eps)
  const counts = new Map<BalancedEndpoint | undefined, number>()
  for (let i = 0; i < 600; i++) {
    const e = sw.pick(undefined)
    counts.set(e, (counts.get(e) ?? 0) + 1)
  }
  t.same([counts.get(eps[0]), counts.get(eps[1]), counts.get(eps[2])], [100, 200, 300])
})

t.test('interleaves: nginx sequence for 5:1:1, never 3 in a row for 1:1:1', async (t) => {
  const eps = endpoints(5, 1, 1)
  const sw = new SmoothWeighted(eps)
  const names = Array.from({ length: 14 }, () => 'abc'[eps.indexOf(sw.pick(undefined)!)]).join('')
  t.equal(names, 'aabacaa'.repeat(2))

  const even = new SmoothWeighted(endpoints(1, 1, 1))
  let last: BalancedEndpoint | undefined
  let run = 0
  let longest = 0
  for (let i = 0; i < 300; i++) {
    const e = even.pick(undefined)
    run = e === last ? run + 1 : 1
    longest = Math.max(longest, run)
    last = e
  }
  t.ok(longest < 3, `longest run ${longest}`)
})

t.test('unhealthy endpoints are skipped; the rest keep their ratio', async (t) => {
  const eps = endpoints(1, 2, 3)
  const sw = new SmoothWeighted(eps)
  eps[2]!.healthy = false
  const counts = [0, 0, 0]
  for (let i = 0; i < 300; i++) counts[eps.indexOf(sw.pick(undefined)!)]!++
  t.same(counts, [100, 200, 0])
})

t.test('undefined when none is healthy', async (t) => {
  const eps = endpoints(1, 2)
  for (const e of eps) e.healthy = false
  t.equal(new SmoothWeighted(eps).pick(undefined), undefined)
})
