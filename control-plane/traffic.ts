import type { RouteDelta } from './analytics.ts'

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

/** What a report carries besides its counters, for ordering and de-duplication. */
export interface ReportOrigin {
  /** Grows by one per report of an instance (0: the data plane does not number its reports). */
  sequence?: number
  /**
   * The increases another replica computed for this very report: used for
   * a route this replica has no earlier report of (it joined late, or missed
   * the node's earlier reports), where subtracting nothing would count the
   * node's whole history as new traffic.
   */
  known?: readonly RouteDelta[]
}

/** Instances of a node remembered as ended: a late report of one is stale, not a restart. */
const RETIRED_INSTANCES = 4

/**
 * Sums per-route traffic over the fleet from cumulative reports. Each node's
 * last report is kept, so only increases are added: a report lost or sent
 * twice changes nothing, and a counter that went down (or a new `instance`)
 * means the data plane restarted and its counters began again at 0.
 *
 * Reports are counted once by (node, instance, sequence): with several
 * replicas the same report reaches this one directly or relayed, possibly
 * late (the node moved to another replica meanwhile); one that is not newer
 * than the last accepted one of its instance, or that belongs to an instance
 * the node has since replaced, is dropped (its counters are included in the
 * newer report, being cumulative).
 *
 * @example
 * const t = new TrafficTotals()
 * t.report('a', 'i1', [{ route: 'api', requests: 10, errors: 1, latencyBounds: [0.1], latencyCounts: [8, 10] }])
 * t.totals()[0].requests // 10
 */
export class TrafficTotals {
  #last = new Map<string, { instance: string, sequence: number, routes: Map<string, RouteCounts>, retired: string[] }>()
  #totals = new Map<string, Totals>()
  #stale = 0

  /** Reports dropped as duplicates or out of order. */
  get stale (): number { return this.#stale }

  /**
   * Adds a node's cumulative counters; returns the increases since its
   * previous report (for analytics), or undefined when the report is a
   * duplicate or older than one already counted.
   */
  report (nodeId: string, instance: string, routes: readonly RouteCounts[], origin: ReportOrigin = {}): RouteDelta[] | undefined {
    const sequence = origin.sequence ?? 0
    const prev = this.#last.get(nodeId)
    if (prev !== undefined && (prev.retired.includes(instance) || (prev.instance === instance && sequence > 0 && sequence <= prev.sequence))) {
      this.#stale++
      return undefined
    }
    const deltas: RouteDelta[] = []
    const sameInstance = prev !== undefined && prev.instance === instance
    const prevRoutes = sameInstance ? prev.routes : new Map<string, RouteCounts>()
    const next = new Map<string, RouteCounts>()
    for (const r of routes) {
      next.set(r.route, r)
      const before = prevRoutes.get(r.route)
      const known = before === undefined ? origin.known?.find((d) => d.route === r.route) : undefined
      const restarted = before !== undefined && r.requests < before.requests
      const base = restarted || before === undefined ? undefined : before
      const t = this.#totals.get(r.route) ?? { requests: 0, errors: 0, nodes: new Set<string>(), bounds: [...r.latencyBounds], buckets: new Array<number>(r.latencyBounds.length + 1).fill(0) }
      const requests = known?.requests ?? r.requests - (base?.requests ?? 0)
      const errors = known?.errors ?? Math.max(0, r.errors - (base?.errors ?? 0))
      t.requests += requests
      t.errors += errors
      t.nodes.add(nodeId)
      let buckets: number[] = []
      if (known !== undefined) buckets = [...known.buckets]
      else if (r.latencyCounts.length === r.latencyBounds.length + 1) {
        const now = perBucket(r.latencyCounts)
        const then = base !== undefined && base.latencyCounts.length === r.latencyCounts.length ? perBucket(base.latencyCounts) : undefined
        buckets = now.map((c, i) => Math.max(0, c - (then?.[i] ?? 0)))
      }
      if (buckets.length === r.latencyBounds.length + 1 && sameBounds(t.bounds, r.latencyBounds)) for (let i = 0; i < buckets.length; i++) t.buckets[i] = (t.buckets[i] ?? 0) + (buckets[i] ?? 0)
      this.#totals.set(r.route, t)
      deltas.push({ route: r.route, requests, errors, bounds: r.latencyBounds, buckets })
    }
    const retired = prev === undefined ? [] : sameInstance ? prev.retired : [prev.instance, ...prev.retired].slice(0, RETIRED_INSTANCES)
    this.#last.set(nodeId, { instance, sequence, routes: next, retired })
    return deltas
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
