import { eligible, type Balancer, type BalancedEndpoint, type Usable } from '../balancer.ts'

/**
 * Least request by the power of two choices (Mitzenmacher): pick two distinct
 * healthy endpoints at random and keep the less loaded. Nearly as good as a
 * full scan for the least loaded, without herding every proxy onto the same one.
 *
 * Load is (inflight + 1) / weight: the +1 (as Envoy's least_request does)
 * lets weights break ties when both are idle, where inflight / weight would
 * read 0 for both.
 *
 * @example
 * const lr = new LeastRequest(endpoints)
 * lr.pick(undefined) // of two random healthy endpoints, the less loaded
 */
export class LeastRequest implements Balancer {
  readonly #endpoints: readonly BalancedEndpoint[]
  /** Reused per pick for the indices of healthy endpoints; never reallocated. */
  readonly #healthy: Uint32Array

  constructor (endpoints: readonly BalancedEndpoint[]) {
    this.#endpoints = [...endpoints]
    this.#healthy = new Uint32Array(endpoints.length)
  }

  pick (_hashKey?: string, usable?: Usable): BalancedEndpoint | undefined {
    const endpoints = this.#endpoints
    const n = endpoints.length
    if (n < 2) return endpoints[0] !== undefined && eligible(endpoints[0], usable) ? endpoints[0] : undefined

    // Fast path, O(1): a random pair of all endpoints, kept when both are
    // healthy. Falling back to a pair drawn from the healthy ones only when
    // not keeps every healthy pair equally likely overall.
    const i = (Math.random() * n) | 0
    let j = (Math.random() * (n - 1)) | 0
    if (j >= i) j++
    const a = endpoints[i]!
    const b = endpoints[j]!
    if (eligible(a, usable) && eligible(b, usable)) return lessLoaded(a, b)

    const healthy = this.#healthy
    let h = 0
    for (let k = 0; k < n; k++) if (eligible(endpoints[k]!, usable)) healthy[h++] = k
    if (h === 0) return undefined
    if (h === 1) return endpoints[healthy[0]!]
    const x = (Math.random() * h) | 0
    let y = (Math.random() * (h - 1)) | 0
    if (y >= x) y++
    return lessLoaded(endpoints[healthy[x]!]!, endpoints[healthy[y]!]!)
  }
}

/** Compares (inflight + 1) / weight by cross-multiplying, so no division. */
function lessLoaded (a: BalancedEndpoint, b: BalancedEndpoint): BalancedEndpoint {
  return (b.inflight + 1) * a.weight < (a.inflight + 1) * b.weight ? b : a
}
