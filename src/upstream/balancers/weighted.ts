import { eligible, type Balancer, type BalancedEndpoint, type Usable } from '../balancer.ts'

/**
 * Smooth weighted round robin, as in nginx (ngx_http_upstream_get_peer):
 * deterministic, exact ratios over each cycle of sum(weights) picks, and
 * interleaved, so weights 5:1:1 give a a b a c a a rather than a a a a a b c.
 *
 * @example
 * const sw = new SmoothWeighted(endpoints) // weights 1, 2, 3
 * // every 6 picks: a once, b twice, c three times, spread out
 */
export class SmoothWeighted implements Balancer {
  readonly #endpoints: readonly BalancedEndpoint[]
  /** nginx's `current_weight` per endpoint, indexed like #endpoints. */
  readonly #current: Float64Array

  constructor (endpoints: readonly BalancedEndpoint[]) {
    this.#endpoints = [...endpoints]
    this.#current = new Float64Array(endpoints.length)
  }

  pick (_hashKey?: string, usable?: Usable): BalancedEndpoint | undefined {
    const endpoints = this.#endpoints
    const current = this.#current
    let best = -1
    let total = 0
    for (let i = 0; i < endpoints.length; i++) {
      const endpoint = endpoints[i]!
      // Ejected endpoints neither gain nor take share, so the healthy ones keep their ratios.
      if (!eligible(endpoint, usable)) continue
      current[i]! += endpoint.weight
      total += endpoint.weight
      if (best === -1 || current[i]! > current[best]!) best = i
    }
    if (best === -1) return undefined
    current[best]! -= total
    return endpoints[best]
  }
}
