import t from 'tap'
import type { BalancedEndpoint } from '../balancer.ts'
import { LeastRequest } from './least-request.ts'

const endpoints = (...weights: number[]): BalancedEndpoint[] =>
  weights.map((weight, i) => ({ id: `http://10.0.0.${i + 1}:80`, weight, inflight: 0, healthy: true }))

t.test('an endpoint with high inflight is almost never picked', async (t) => {
  const eps = endpoints(1, 1, 1, 1)
  const lr = new LeastRequest(eps)
  eps[2]!.inflight = 50
  const counts = [0, 0, 0, 0]
  for (let i = 0; i < 10_000; i++) counts[eps.indexOf(lr.pick(undefined)!)]!++
  // Two distinct choices: the strictly busiest can never win a pair.
  t.equal(counts[2], 0)
  for (const i of [0, 1, 3]) t.ok(counts[i]! > 3000 && counts[i]! < 3700, `endpoint ${i}: ${counts[i]}`)
})

t.test('idle endpoints share evenly', async (t) => {
  const eps = endpoints(1, 1, 1)
  const lr = new LeastRequest(eps)
  const counts = [0, 0, 0]
  for (let i = 0; i < 30_000; i++) counts[eps.indexOf(lr.pick(undefined)!)]!++
  for (const c of counts) t.ok(c > 9000 && c < 11_000, `${c}`)
})

t.test('with different weights, load is inflight relative to weight', async (t) => {
  const eps = endpoints(1, 4)
  const lr = new LeastRequest(eps)
  eps[0]!.inflight = 2 // 3 / 1
  eps[1]!.inflight = 6 // 7 / 4: busier in count, lighter per weight
  for (let i = 0; i < 100; i++) t.equal(lr.pick(undefined), eps[1])
  eps[1]!.inflight = 12 // 13 / 4 > 3 / 1
  for (let i = 0; i < 100; i++) t.equal(lr.pick(undefined), eps[0])
})

t.test('unhealthy endpoints are never picked, even when idle', async (t) => {
  const eps = endpoints(1, 1, 1, 1, 1)
  const lr = new LeastRequest(eps)
  for (const e of eps) e.inflight = 10
  eps[0]!.inflight = 0
  eps[0]!.healthy = false
  eps[3]!.healthy = false
  const seen = new Set<BalancedEndpoint | undefined>()
  for (let i = 0; i < 5000; i++) seen.add(lr.pick(undefined))
  t.same([...seen].sort((a, b) => eps.indexOf(a!) - eps.indexOf(b!)), [eps[1], eps[2], eps[4]])

  eps[1]!.healthy = false
  eps[2]!.healthy = false
  for (let i = 0; i < 100; i++) t.equal(lr.pick(undefined), eps[4])
})

t.test('undefined when none is healthy', async (t) => {
  for (const n of [1, 2, 5]) {
    const eps = endpoints(...Array<number>(n).fill(1))
    for (const e of eps) e.healthy = false
    t.equal(new LeastRequest(eps).pick(undefined), undefined)
  }
  t.equal(new LeastRequest([]).pick(undefined), undefined)
})
