import { eligible, type Balancer, type BalancedEndpoint, type Usable } from '../balancer.ts'

/**
 * Weighted random: each healthy endpoint is picked with probability
 * weight / (sum of healthy weights). Stateless, so many proxies sharing a
 * cluster do not march in lockstep the way round robin can.
 *
 * @example
 * const wr = new WeightedRandom(endpoints) // weights 1, 3
 * // b about 75% of the time
 */
export class WeightedRandom implements Balancer {
  readonly #endpoints: readonly BalancedEndpoint[]
  /** cumulative[i] = weight of endpoints 0..i, for a binary search. */
  readonly #cumulative: Float64Array
  readonly #total: number

  constructor (endpoints: readonly BalancedEndpoint[]) {
    this.#endpoints = [...endpoints]
    this.#cumulative = new Float64Array(endpoints.length)
    let total = 0
    for (let i = 0; i < endpoints.length; i++) {
      total += endpoints[i]!.weight
      this.#cumulative[i] = total
    }
    this.#total = total
  }

  pick (_hashKey?: string, usable?: Usable): BalancedEndpoint | undefined {
    const endpoints = this.#endpoints
    const cumulative = this.#cumulative
    if (endpoints.length === 0) return undefined

    // Fast path, O(log n): draw over all endpoints and keep a healthy result.
    // Redrawing over the healthy ones otherwise still leaves each healthy
    // endpoint at exactly weight / healthy total.
    const r = Math.random() * this.#total
    let lo = 0
    let hi = cumulative.length - 1
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (cumulative[mid]! > r) hi = mid
      else lo = mid + 1
    }
    const drawn = endpoints[lo]!
    if (eligible(drawn, usable)) return drawn

    let healthyTotal = 0
    for (let i = 0; i < endpoints.length; i++) {
      if (eligible(endpoints[i]!, usable)) healthyTotal += endpoints[i]!.weight
    }
    if (healthyTotal === 0) return undefined
    let rest = Math.random() * healthyTotal
    let last: BalancedEndpoint | undefined
    for (let i = 0; i < endpoints.length; i++) {
      const endpoint = endpoints[i]!
      if (!eligible(endpoint, usable)) continue
      rest -= endpoint.weight
      last = endpoint
      if (rest < 0) return endpoint
    }
    // Floating-point rounding can leave rest at a hair above zero.
    return last
  }
}
