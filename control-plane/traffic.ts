/** Cumulative counters of one route on one node, as reported. */
export interface RouteCounts {
  route: string
  requests: number
  errors: number
  /** Histogram upper bounds (seconds). */
  latencyBounds: number[]
  /** Cumulative counts per bound, plus +Inf last (Prometheus `le` semantics). */
  latencyCounts: number[]
}

/** Fleet-wide totals for one route. */
export interface RouteTotals {
  route: string
  requests: number
  errors: number
  nodes: number
  latencyBounds: number[]
  /** Per bucket (not cumulative), +Inf last. */
  latencyCounts: number[]
}

interface Totals {
  requests: number
  errors: number
  nodes: Set<string>
  bounds: number[]
  buckets: number[]
}

/**
 * Sums per-route traffic over the fleet from cumulative reports. Each node's
 * last report is kept, so only increases are added: a report lost or sent
 * twice changes nothing, and a counter that went down (or a new `instance`)
 * means the data plane restarted and its counters began again at 0.
 *
 * @example
 * const t = new TrafficTotals()
 * t.report('a', 'i1', [{ route: 'api', requests: 10, errors: 1, latencyBounds: [0.1], latencyCounts: [8, 10] }])
 * t.totals()[0].requests // 10
 */
export class TrafficTotals {
  #last = new Map<string, { instance: string, routes: Map<string, RouteCounts> }>()
  #totals = new Map<string, Totals>()

  report (nodeId: string, instance: string, routes: readonly RouteCounts[]): void {
    const prev = this.#last.get(nodeId)
    const prevRoutes = prev !== undefined && prev.instance === instance ? prev.routes : new Map<string, RouteCounts>()
    const next = new Map<string, RouteCounts>()
    for (const r of routes) {
      next.set(r.route, r)
      const before = prevRoutes.get(r.route)
      const restarted = before !== undefined && r.requests < before.requests
      const base = restarted || before === undefined ? undefined : before
      const t = this.#totals.get(r.route) ?? { requests: 0, errors: 0, nodes: new Set<string>(), bounds: [...r.latencyBounds], buckets: new Array<number>(r.latencyBounds.length + 1).fill(0) }
      t.requests += r.requests - (base?.requests ?? 0)
      t.errors += Math.max(0, r.errors - (base?.errors ?? 0))
      t.nodes.add(nodeId)
      if (sameBounds(t.bounds, r.latencyBounds) && r.latencyCounts.length === t.buckets.length) {
        const now = perBucket(r.latencyCounts)
        const then = base !== undefined && base.latencyCounts.length === r.latencyCounts.length ? perBucket(base.latencyCounts) : undefined
        for (let i = 0; i < now.length; i++) t.buckets[i] = (t.buckets[i] ?? 0) + Math.max(0, (now[i] ?? 0) - (then?.[i] ?? 0))
      }
      this.#totals.set(r.route, t)
    }
    this.#last.set(nodeId, { instance, routes: next })
  }

  /** Routes sorted by name. */
  totals (): RouteTotals[] {
    return [...this.#totals.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([route, t]) => ({
      route,
      requests: t.requests,
      errors: t.errors,
      nodes: t.nodes.size,
      latencyBounds: [...t.bounds],
      latencyCounts: [...t.buckets],
    }))
  }
}

function sameBounds (a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

/** Cumulative `le` counts → counts per bucket. */
function perBucket (cumulative: readonly number[]): number[] {
  return cumulative.map((c, i) => c - (i === 0 ? 0 : (cumulative[i - 1] ?? 0)))
}
