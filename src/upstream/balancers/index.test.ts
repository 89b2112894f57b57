import t from 'tap'
import type { BalancedEndpoint } from '../balancer.ts'
import type { LoadBalancerConfig } from '../../config/schema.ts'
import { ConsistentHashRing, LeastRequest, RoundRobin, SmoothWeighted, WeightedRandom, createBalancer } from './index.ts'

const endpoints = (...weights: number[]): BalancedEndpoint[] =>
  weights.map((weight, i) => ({ id: `http://10.0.0.${i + 1}:80`, weight, inflight: 0, healthy: true }))

const policies: Array<[LoadBalancerConfig, new (...args: never[]) => unknown]> = [
  [{ policy: 'round_robin' }, RoundRobin],
  [{ policy: 'weighted' }, SmoothWeighted],
  [{ policy: 'least_request' }, LeastRequest],
  [{ policy: 'random' }, WeightedRandom],
  [{ policy: 'consistent_hash', hashOn: { by: 'ip' } }, ConsistentHashRing],
]

for (const [config, Class] of policies) {
  t.test(config.policy, async (t) => {
    const eps = endpoints(1, 2, 3, 1)
    const balancer = createBalancer(config, eps)
    t.type(balancer, Class)

    eps[1]!.healthy = false
    eps[2]!.healthy = false
    for (let i = 0; i < 2000; i++) {
      const e = balancer.pick(i % 2 === 0 ? `key-${i}` : undefined)
      if (e !== eps[0] && e !== eps[3]) t.fail(`picked ${e?.id}`)
    }

    for (const e of eps) e.healthy = false
    t.equal(balancer.pick('key'), undefined)
    t.equal(balancer.pick(undefined), undefined)
  })
}
