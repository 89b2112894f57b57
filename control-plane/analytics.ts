/**
 * Fleet-wide per-route analytics (ARCHITECTURE §4): request rate, error
 * ratio and latency percentiles over sliding windows, merged from the
 * histograms every data plane reports. Memory is bounded: each route keeps
 * fixed ring buffers of per-interval aggregates (one per tier: by default
 * 10 s intervals for an hour and 5 min intervals for three weeks, with
 * histograms for the last week of them), allocated once, and at most
 * `maxRoutes` routes are tracked. Plain module: no gRPC.
 */

import type { RouteAnalytics } from './generated/types.ts'

/** What one report added for one route (increases, not cumulative counters). */
export interface RouteDelta {
  route: string
  requests: number
  errors: number
  /** Histogram upper bounds (seconds) as the node reported them. */
  bounds: readonly number[]
  /** Per-bucket increases, +Inf last (bounds.length + 1 entries), or [] when unknown. */
  buckets: readonly number[]
}

export interface Tier {
  stepSeconds: number
  slots: number
  /**
   * Intervals whose latency histograms are kept (the latest; at most
   * `slots`, all of them by default): counts cost 3 numbers per interval,
   * a histogram one per bucket. An older point has no buckets (its
   * latency is unknown, not 0 ms) once a newer interval has taken its
   * histogram's place.
   */
  histogramSlots?: number
}

export interface AnalyticsOptions {
  /** Finest first. Default: 10 s × 360 (1 h) and 300 s × 6048 (3 weeks; histograms for 7 days). */
  tiers?: Tier[]
  /** Routes tracked at most (each costs its ring buffers); later ones are dropped. Default 200. */
  maxRoutes?: number
  /** Clock in ms (tests drive it). */
  now?: () => number
}

/**
 * Aggregates of one route over one window: exactly the wire message
 * (rate in req/s, errorRatio = errors / requests, percentiles in ms
 * interpolated within the merged histogram's buckets, counts per bucket with
 * +Inf last, nodes that reported within the window).
 */
export type WindowStats = RouteAnalytics

/** One interval of a route's series. */
export interface SeriesPoint {
  /** Start of the interval, seconds since the epoch. */
  t: number
  requests: number
  errors: number
  /**
   * Per bucket, +Inf last (the route's bounds); undefined beyond the tier's
   * histogramSlots (Tier): the interval's latency is not known.
   */
  buckets: number[] | undefined
}

/** Latency bounds a route's report may carry: each costs a number per interval of every tier. */
export const MAX_LATENCY_BOUNDS = 64

/**
 * Why a report's histogram bounds are refused, or undefined: at most
 * MAX_LATENCY_BOUNDS, finite and strictly ascending (as Prometheus `le`
 * buckets are), so a route's rings stay small and folding is one walk.
 */
export function latencyBoundsProblem (bounds: readonly number[]): string | undefined {
  if (bounds.length > MAX_LATENCY_BOUNDS) return `${bounds.length} latency bounds, more than ${MAX_LATENCY_BOUNDS}`
  for (let i = 0; i < bounds.length; i++) {
    const b = bounds[i] as number
    if (!Number.isFinite(b) || (i > 0 && b <= (bounds[i - 1] as number))) return `latency bounds must be finite and strictly ascending (bound ${i}: ${b})`
  }
  return undefined
}

/**
 * The 5-minute tier holds three weeks of counts: the forecaster and the
 * detector learn the weekly profile once 10 days are seen (a week plus
 * three days), and it takes the weekend of a second week to tell a
 * weekly dip from an incident. Histograms are kept for a week: they cost
 * one number per bucket per interval, counts three.
 */
export const DEFAULT_TIERS: readonly Tier[] = [{ stepSeconds: 10, slots: 360 }, { stepSeconds: 300, slots: 6048, histogramSlots: 2016 }]

/**
 * One ring buffer: slot i holds interval `ids[i]` (floor(t / step)); a slot
 * whose id is stale is empty. Histograms have a ring of their own, possibly
 * shorter (`histogramSlots`), with its own ids.
 */
class Ring {
  readonly step: number
  readonly slots: number
  readonly #width: number
  readonly #ids: Float64Array
  readonly #requests: Float64Array
  readonly #errors: Float64Array
  readonly #histSlots: number
  readonly #histIds: Float64Array
  readonly #hist: Float64Array

  constructor (tier: Tier, width: number) {
    this.step = tier.stepSeconds
    this.slots = tier.slots
    this.#width = width
    this.#ids = new Float64Array(tier.slots).fill(-1)
    this.#requests = new Float64Array(tier.slots)
    this.#errors = new Float64Array(tier.slots)
    this.#histSlots = Math.max(1, Math.min(tier.histogramSlots ?? tier.slots, tier.slots))
    this.#histIds = new Float64Array(this.#histSlots).fill(-1)
    this.#hist = new Float64Array(this.#histSlots * width)
  }

  add (tSeconds: number, requests: number, errors: number, buckets: ArrayLike<number>): void {
    const id = Math.floor(tSeconds / this.step)
    const slot = id % this.slots
    if (this.#ids[slot] !== id) {
      // Older than what the slot holds: beyond retention, dropped.
      if ((this.#ids[slot] as number) > id) return
      this.#ids[slot] = id
      this.#requests[slot] = 0
      this.#errors[slot] = 0
    }
    this.#requests[slot] = (this.#requests[slot] as number) + requests
    this.#errors[slot] = (this.#errors[slot] as number) + errors
    const h = id % this.#histSlots
    if (this.#histIds[h] !== id) {
      // Beyond the histograms' retention (not the counts'): the counts are kept, the buckets dropped.
      if ((this.#histIds[h] as number) > id) return
      this.#histIds[h] = id
      this.#hist.fill(0, h * this.#width, (h + 1) * this.#width)
    }
    for (let i = 0; i < this.#width; i++) this.#hist[h * this.#width + i] = (this.#hist[h * this.#width + i] as number) + (buckets[i] ?? 0)
  }

  /** The interval `id`, or undefined when it is not held (no traffic, or out of retention). */
  point (id: number): SeriesPoint | undefined {
    const slot = id % this.slots
    if (this.#ids[slot] !== id) return undefined
    const h = id % this.#histSlots
    return {
      t: id * this.step,
      requests: this.#requests[slot] as number,
      errors: this.#errors[slot] as number,
      buckets: this.#histIds[h] === id ? Array.from(this.#hist.subarray(h * this.#width, (h + 1) * this.#width)) : undefined,
    }
  }
}

class RouteSeries {
  readonly bounds: number[]
  readonly rings: Ring[]
  readonly lastSeen = new Map<string, number>()
  #scratch: Float64Array

  constructor (bounds: readonly number[], tiers: readonly Tier[]) {
    this.bounds = [...bounds]
    this.rings = tiers.map((t) => new Ring(t, bounds.length + 1))
    this.#scratch = new Float64Array(bounds.length + 1)
  }

  add (tSeconds: number, d: RouteDelta): void {
    // Nodes with other bucket bounds are folded into ours: each of their
    // buckets goes to our first bucket whose bound is at least its own. Both
    // lists ascend, so one walk over the two finds them all.
    const scratch = this.#scratch.fill(0)
    if (d.buckets.length === d.bounds.length + 1) {
      let j = 0
      for (let i = 0; i < d.buckets.length; i++) {
        const upper = i < d.bounds.length ? d.bounds[i] as number : Infinity
        while (j < this.bounds.length && (this.bounds[j] as number) < upper) j++
        scratch[j] = (scratch[j] as number) + Math.max(0, d.buckets[i] as number)
      }
    }
    for (const ring of this.rings) ring.add(tSeconds, d.requests, d.errors, scratch)
  }
}

/**
 * @example
 * const a = new Analytics()
 * a.record('node-1', [{ route: 'api', requests: 10, errors: 1, bounds: [0.1, 1], buckets: [8, 2, 0] }])
 * a.window(60)[0] // { route: 'api', rate: 0.1666…, errorRatio: 0.1, p50Ms: 62.5, … }
 */
export class Analytics {
  readonly tiers: readonly Tier[]
  readonly #maxRoutes: number
  readonly #now: () => number
  readonly #routes = new Map<string, RouteSeries>()
  #dropped = 0

  constructor (options: AnalyticsOptions = {}) {
    this.tiers = [...(options.tiers ?? DEFAULT_TIERS)].sort((a, b) => a.stepSeconds - b.stepSeconds)
    this.#maxRoutes = options.maxRoutes ?? 200
    this.#now = options.now ?? Date.now
  }

  /** Seconds since the epoch, by the analytics clock. */
  now (): number { return this.#now() / 1000 }

  /** Reports of routes beyond `maxRoutes`, dropped. */
  get dropped (): number { return this.#dropped }

  routes (): string[] { return [...this.#routes.keys()].sort() }

  /**
   * Adds one node's increases at `tSeconds` (now by default). A delta whose
   * bounds latencyBoundsProblem refuses is skipped (the Telemetry service
   * refuses such reports before they get here).
   */
  record (nodeId: string, deltas: readonly RouteDelta[], tSeconds = this.now()): void {
    for (const d of deltas) {
      if (latencyBoundsProblem(d.bounds) !== undefined) continue
      let series = this.#routes.get(d.route)
      if (series === undefined) {
        if (this.#routes.size >= this.#maxRoutes) { this.#dropped++; continue }
        series = new RouteSeries(d.bounds, this.tiers)
        this.#routes.set(d.route, series)
      }
      series.lastSeen.set(nodeId, Math.max(series.lastSeen.get(nodeId) ?? 0, tSeconds))
      if (d.requests > 0 || d.errors > 0) series.add(tSeconds, d)
    }
  }

  /**
   * Stats over the last `windowSeconds` (ending now, or at `atSeconds`) from
   * the finest tier that spans it: the window's intervals, the current one
   * included. Every route, or the one named.
   */
  window (windowSeconds: number, route?: string, atSeconds = this.now()): WindowStats[] {
    const names = route === undefined ? this.routes() : this.#routes.has(route) ? [route] : []
    return names.map((name) => this.#stats(name, this.#routes.get(name) as RouteSeries, windowSeconds, atSeconds))
  }

  /**
   * Per-interval points of `route` from the tier with `stepSeconds` (the
   * coarsest when 0), oldest first, from `fromSeconds` up to the last
   * complete interval before `toSeconds` (the current one is still filling).
   * Intervals without traffic are zeros: a missing interval means no requests.
   */
  series (route: string, stepSeconds = 0, fromSeconds = 0, toSeconds = this.now()): SeriesPoint[] {
    const s = this.#routes.get(route)
    if (s === undefined) return []
    const ring = stepSeconds === 0 ? s.rings.at(-1) : s.rings.find((r) => r.step === stepSeconds)
    if (ring === undefined) throw new RangeError(`no tier with a ${stepSeconds} s step (tiers: ${this.tiers.map((t) => t.stepSeconds).join(', ')})`)
    const last = Math.floor(toSeconds / ring.step) - 1
    const first = Math.max(last - ring.slots + 1, Math.ceil(fromSeconds / ring.step))
    const out: SeriesPoint[] = []
    let started = false
    for (let id = first; id <= last; id++) {
      const p = ring.point(id)
      // Leading empty intervals: before the route existed, not zero traffic.
      if (p === undefined && !started) continue
      started = true
      out.push(p ?? { t: id * ring.step, requests: 0, errors: 0, buckets: new Array<number>(s.bounds.length + 1).fill(0) })
    }
    return out
  }

  /** The histogram bounds (seconds) of a route. */
  bounds (route: string): number[] | undefined {
    return this.#routes.get(route)?.bounds.slice()
  }

  #stats (route: string, s: RouteSeries, windowSeconds: number, at: number): WindowStats {
    const ring = s.rings.find((r) => r.step * r.slots >= windowSeconds) ?? (s.rings.at(-1) as Ring)
    const n = Math.max(1, Math.min(ring.slots, Math.round(windowSeconds / ring.step)))
    const current = Math.floor(at / ring.step)
    let requests = 0
    let errors = 0
    const buckets = new Array<number>(s.bounds.length + 1).fill(0)
    for (let id = current - n + 1; id <= current; id++) {
      const p = ring.point(id)
      if (p === undefined) continue
      requests += p.requests
      errors += p.errors
      if (p.buckets !== undefined) for (let i = 0; i < buckets.length; i++) buckets[i] = (buckets[i] as number) + (p.buckets[i] ?? 0)
    }
    let nodes = 0
    for (const seen of s.lastSeen.values()) if (seen > at - windowSeconds && seen <= at) nodes++
    return {
      route,
      windowSeconds,
      requests,
      errors,
      rate: requests / windowSeconds,
      errorRatio: requests === 0 ? 0 : errors / requests,
      p50Ms: quantile(0.5, s.bounds, buckets) * 1000,
      p90Ms: quantile(0.9, s.bounds, buckets) * 1000,
      p99Ms: quantile(0.99, s.bounds, buckets) * 1000,
      nodes,
      latencyBounds: [...s.bounds],
      latencyCounts: buckets,
    }
  }
}

/**
 * The q-quantile of a histogram in milliseconds, or undefined when the
 * histogram is empty or absent: no requests, or none whose latency was
 * kept (Tier.histogramSlots, a report without buckets). An unknown latency
 * MUST NOT read as 0 ms: a rule such as `p99 < 50ms` would fire on it.
 */
export function latencyMs (q: number, bounds: readonly number[], buckets: readonly number[] | undefined): number | undefined {
  if (buckets === undefined || !buckets.some((c) => c > 0)) return undefined
  return quantile(q, bounds, buckets) * 1000
}

/**
 * The q-quantile of a histogram (per-bucket counts, +Inf last), as
 * Prometheus' histogram_quantile computes it: linear interpolation within
 * the bucket the rank falls in, from its lower bound (0 for the first); a
 * rank in the +Inf bucket gives the highest finite bound. 0 when empty.
 */
export function quantile (q: number, bounds: readonly number[], buckets: readonly number[]): number {
  let total = 0
  for (const c of buckets) total += c
  if (total === 0) return 0
  const rank = q * total
  let cumulative = 0
  for (let i = 0; i < buckets.length; i++) {
    const c = buckets[i] as number
    if (c > 0 && cumulative + c >= rank) {
      if (i >= bounds.length) return bounds.at(-1) ?? 0
      const lower = i === 0 ? 0 : bounds[i - 1] as number
      const upper = bounds[i] as number
      return lower + (upper - lower) * ((rank - cumulative) / c)
    }
    cumulative += c
  }
  return bounds.at(-1) ?? 0
}
