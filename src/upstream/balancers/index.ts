import type { BalancerFactory } from '../balancer.ts'
import { ConsistentHashRing } from './consistent-hash.ts'
import { LeastRequest } from './least-request.ts'
import { PeakEwma } from './peak-ewma.ts'
import { WeightedRandom } from './random.ts'
import { RoundRobin } from './round-robin.ts'
import { SmoothWeighted } from './weighted.ts'

export { ConsistentHashRing, createHashKeyExtractor } from './consistent-hash.ts'
export type { HashKeyExtractor } from './consistent-hash.ts'
export { LeastRequest } from './least-request.ts'
export { PeakEwma } from './peak-ewma.ts'
export { WeightedRandom } from './random.ts'
export { RoundRobin } from './round-robin.ts'
export { SmoothWeighted } from './weighted.ts'

/**
 * Builds the balancer a cluster's `loadBalancer.policy` names, once per
 * snapshot. The consistent_hash key is derived separately, by
 * `createHashKeyExtractor(config.hashOn)`, and passed to `pick`.
 *
 * @example
 * const balancer = createBalancer({ policy: 'least_request' }, endpoints)
 * const endpoint = balancer.pick(undefined)
 */
export const createBalancer: BalancerFactory = (config, endpoints) => {
  switch (config.policy) {
    case 'round_robin': return new RoundRobin(endpoints)
    case 'weighted': return new SmoothWeighted(endpoints)
    case 'least_request': return new LeastRequest(endpoints)
    case 'random': return new WeightedRandom(endpoints)
    case 'consistent_hash': return new ConsistentHashRing(endpoints)
    case 'peak_ewma': return new PeakEwma(endpoints, config)
  }
}
