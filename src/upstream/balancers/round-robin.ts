import { eligible, type Balancer, type BalancedEndpoint, type Usable } from '../balancer.ts'

/**
 * Plain round robin over the healthy endpoints, ignoring weights.
 *
 * @example
 * const rr = new RoundRobin(endpoints)
 * rr.pick(undefined) // a, b, c, a, …
 */
export class RoundRobin implements Balancer {
  readonly #endpoints: readonly BalancedEndpoint[]
  #next = 0

  constructor (endpoints: readonly BalancedEndpoint[]) {
    this.#endpoints = [...endpoints]
  }

  pick (_hashKey?: string, usable?: Usable): BalancedEndpoint | undefined {
    const endpoints = this.#endpoints
    const n = endpoints.length
    // Walk at most one full lap from the cursor so ejected endpoints are skipped.
    for (let step = 0; step < n; step++) {
      const i = (this.#next + step) % n
      const endpoint = endpoints[i]!
      if (eligible(endpoint, usable)) {
        this.#next = (i + 1) % n
        return endpoint
      }
    }
    return undefined
  }
}
