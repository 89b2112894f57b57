import type { LoadBalancerConfig } from '../../config/schema.ts'
import { eligible, type AttemptSample, type Balancer, type BalancedEndpoint, type Usable } from '../balancer.ts'
import { createOrcaLoadReport, orcaUtilization, parseOrcaLoadReport } from '../orca.ts'

export type PeakEwmaConfig = Extract<LoadBalancerConfig, { policy: 'peak_ewma' }>

/** The knobs of the model; the schema's `peak_ewma` entry supplies them with their defaults. */
export type PeakEwmaSettings = Pick<PeakEwmaConfig, 'decay' | 'errorPenalty' | 'useOrca'>

export interface PeakEwmaOptions {
  /** Milliseconds on the clock `AttemptSample.now` uses; performance.now by default. Tests pass a simulated one. */
  now?: () => number
  /** Uniform in [0, 1); Math.random by default. */
  random?: () => number
}

/**
 * Error rate and utilization are capped below 1 so a cost stays finite: an
 * endpoint that failed everything is still ranked (and so still probed once
 * its estimates decay), just 100 times as expensive as a clean one.
 */
const MAX_FRACTION = 0.99
/** How stale the cluster-wide reference latencies may get, so pick stays O(1). */
const REFERENCE_REFRESH_MS = 100
/** The latency assumed before any endpoint has answered; all endpoints then tie, so only the describe() output shows it. */
const UNKNOWN_LATENCY_MS = 1

/**
 * Peak EWMA, the latency-aware policy of Finagle and Linkerd: of two random
 * healthy endpoints, take the one whose next request is predicted to be
 * cheaper. Every input is an estimate that decays with time, so the balancer
 * moves traffic away from an endpoint within one slow response and back
 * within about `decay` of it recovering.
 *
 * The predicted cost of sending the next request to an endpoint is
 *
 *     latency × (inflight + 1) / (weight × (1 − errorRate) × (1 − utilization))
 *
 * - latency × (inflight + 1): the request waits behind the ones in flight,
 *   each taking about the latency estimate (Finagle's and Tower's cost).
 * - / weight: the configured weight, or the control plane's hint when one is
 *   set, reads as capacity: an endpoint of weight 3 works through its queue
 *   three times as fast. Under load P2C settles where these costs are equal,
 *   which is inflight (and so, at equal latency, traffic) in proportion to
 *   weight. With nothing in flight the heavier endpoint wins unless its
 *   latency is worse by more than the ratio of the weights (as in Finagle).
 * - / (1 − errorRate): with failures retried elsewhere, 1 / (1 − p) is the
 *   expected number of attempts per success. Each failure also charges
 *   `errorPenalty` ms into the latency estimate, so a fast-failing endpoint
 *   never looks attractive for being fast.
 * - / (1 − utilization): the ORCA-reported load; queueing delay grows as
 *   1 / (1 − ρ) (M/M/1), so an endpoint close to saturation is avoided before
 *   its latency shows it.
 *
 * The estimates:
 * - latency is "peak" sensitive: a response slower than the estimate replaces
 *   it at once; faster ones pull it down as an EWMA weighted by time:
 *   estimate ← estimate × w + sample × (1 − w), w = e^(−Δt/τ), Δt the time
 *   since the endpoint's previous sample. τ = decay / ln 100, so after `decay`
 *   an observation keeps under 1% of its weight (the schema's "how long a
 *   past observation keeps weight"): a 50 ms spike among 1 ms answers is
 *   forgotten within `decay` (10 s by default) of the endpoint recovering.
 * - errorRate is the same time-weighted EWMA of failures (1) and successes (0).
 * - utilization is peak-sensitive like latency, from `application_utilization`
 *   (else `cpu_utilization`) of the ORCA `endpoint-load-metrics` header.
 * - with no samples arriving, the estimates decay as if each elapsed moment had
 *   brought an unremarkable sample: errors and utilization toward 0, latency
 *   toward the lowest estimate in the cluster. A bad endpoint P2C no longer
 *   picks is thus predicted, after about `decay`, to be as good as the best,
 *   and gets a probe: one probe per decay period while it stays bad, and a
 *   recovery found within one.
 * - an endpoint that has never answered starts at the cluster's median
 *   latency: 0 would flood it, the worst would starve it.
 *
 * State lives in typed arrays indexed by the endpoint's position; pick and
 * observe allocate nothing (bar the strings an ORCA header is parsed into).
 *
 * @example
 * const balancer = new PeakEwma(endpoints, { decay: 10_000, errorPenalty: 1_000, useOrca: true })
 * const endpoint = balancer.pick(undefined)
 * // …when the attempt ends:
 * balancer.observe(endpoint, { latencyMs: 12, failed: false, orca: undefined, now: performance.now() })
 */
export class PeakEwma implements Balancer {
  readonly #endpoints: readonly BalancedEndpoint[]
  readonly #indexOf: Map<BalancedEndpoint, number>
  readonly #indexOfId: Map<string, number>
  readonly #now: () => number
  readonly #random: () => number
  readonly #useOrca: boolean
  readonly #errorPenalty: number
  /** −1/τ, so a decay factor is one multiplication and one exp. */
  readonly #negInvTau: number

  /** Latency estimate (ms) as of updatedAt. */
  readonly #latency: Float64Array
  readonly #errorRate: Float64Array
  readonly #utilization: Float64Array
  /** Time of the last sample; NaN while the endpoint has none. */
  readonly #updatedAt: Float64Array
  /** The control plane's weight; NaN when none is set. */
  readonly #hint: Float64Array

  /** Reused per pick for the indices of healthy endpoints; never reallocated. */
  readonly #healthy: Uint32Array
  /** Reused to sort the latencies when the reference values are refreshed. */
  readonly #sorted: Float64Array
  readonly #report = createOrcaLoadReport()

  /** Median latency estimate: where an endpoint without samples starts. */
  #median = UNKNOWN_LATENCY_MS
  /** Lowest latency estimate: where an idle endpoint's estimate decays to. */
  #lowest = UNKNOWN_LATENCY_MS
  #referenceAt = Number.NEGATIVE_INFINITY
  #referenceStale = false

  // What #cost last read, so describe() can show the inputs without a second pass.
  #readLatency = 0
  #readErrorRate = 0
  #readUtilization = 0

  constructor (endpoints: readonly BalancedEndpoint[], settings: PeakEwmaSettings, options: PeakEwmaOptions = {}) {
    const n = endpoints.length
    this.#endpoints = [...endpoints]
    this.#indexOf = new Map()
    this.#indexOfId = new Map()
    for (let i = 0; i < n; i++) {
      this.#indexOf.set(endpoints[i]!, i)
      this.#indexOfId.set(endpoints[i]!.id, i)
    }
    this.#now = options.now ?? performance.now.bind(performance)
    this.#random = options.random ?? Math.random
    this.#useOrca = settings.useOrca
    this.#errorPenalty = settings.errorPenalty
    // decay 0 means no memory: every factor e^(−Δt/τ) with Δt > 0 is then 0.
    this.#negInvTau = settings.decay > 0 ? -Math.log(100) / settings.decay : Number.NEGATIVE_INFINITY
    this.#latency = new Float64Array(n)
    this.#errorRate = new Float64Array(n)
    this.#utilization = new Float64Array(n)
    this.#updatedAt = new Float64Array(n).fill(Number.NaN)
    this.#hint = new Float64Array(n).fill(Number.NaN)
    this.#healthy = new Uint32Array(n)
    this.#sorted = new Float64Array(n)
  }

  pick (_hashKey?: string, usable?: Usable): BalancedEndpoint | undefined {
    const endpoints = this.#endpoints
    const n = endpoints.length
    if (n < 2) return endpoints[0] !== undefined && eligible(endpoints[0], usable) ? endpoints[0] : undefined

    // A random pair of all endpoints, kept when both are healthy, else a pair
    // drawn from the healthy ones: every healthy pair stays equally likely.
    const random = this.#random
    let i = (random() * n) | 0
    let j = (random() * (n - 1)) | 0
    if (j >= i) j++
    if (!eligible(endpoints[i]!, usable) || !eligible(endpoints[j]!, usable)) {
      const healthy = this.#healthy
      let h = 0
      for (let k = 0; k < n; k++) if (eligible(endpoints[k]!, usable)) healthy[h++] = k
      if (h === 0) return undefined
      if (h === 1) return endpoints[healthy[0]!]
      const x = (random() * h) | 0
      let y = (random() * (h - 1)) | 0
      if (y >= x) y++
      i = healthy[x]!
      j = healthy[y]!
    }

    const now = this.#now()
    this.#refreshReference(now)
    // Strictly cheaper wins, so a tie goes to i: itself a random draw.
    return this.#cost(j, now) < this.#cost(i, now) ? endpoints[j] : endpoints[i]
  }

  observe (endpoint: BalancedEndpoint, sample: AttemptSample): void {
    const i = this.#indexOf.get(endpoint)
    if (i === undefined) return
    const now = sample.now
    const measured = sample.latencyMs >= 0 && sample.latencyMs < Infinity ? sample.latencyMs : 0
    const failed = sample.failed
    const charged = failed ? measured + this.#errorPenalty : measured

    // keep = e^(−Δt/τ): the weight the estimates so far keep against this
    // sample. A first sample has nothing to keep.
    const at = this.#updatedAt[i]!
    const elapsed = now - at
    const keep = at !== at ? 0 : elapsed > 0 ? Math.exp(elapsed * this.#negInvTau) : 1

    // Peak: a response slower than expected counts in full at once. The error
    // penalty is blended, not peaked: one failure is evidence, not a verdict
    // that should wipe out the latency history.
    let latency = this.#latency[i]!
    if (at !== at || measured > latency) latency = measured
    this.#latency[i] = latency * keep + charged * (1 - keep)
    this.#errorRate[i] = this.#errorRate[i]! * keep + (failed ? 1 - keep : 0)

    const previous = this.#utilization[i]!
    let utilization = previous * keep
    if (this.#useOrca && sample.orca !== undefined) {
      const report = parseOrcaLoadReport(sample.orca, this.#report)
      const reported = report === undefined ? Number.NaN : orcaUtilization(report)
      if (reported >= 0) utilization = reported > previous ? reported : utilization + reported * (1 - keep)
    }
    this.#utilization[i] = utilization
    this.#updatedAt[i] = now
    this.#referenceStale = true
  }

  /**
   * Sets the control plane's weight for an endpoint. A hint replaces the
   * configured weight while it is set (the control plane sees the whole
   * cluster, so its weights are absolute, not factors); undefined restores
   * the configured one. Unknown ids and weights that are not positive and
   * finite are ignored: a bad push must not take an endpoint out.
   */
  setWeightHint (endpointId: string, weight: number | undefined): void {
    const i = this.#indexOfId.get(endpointId)
    if (i === undefined) return
    if (weight === undefined) this.#hint[i] = Number.NaN
    else if (weight > 0 && weight < Infinity) this.#hint[i] = weight
  }

  /** The endpoint's score (its predicted cost: lower wins) and every input to it, as of now. */
  describe (endpoint: BalancedEndpoint): Record<string, unknown> {
    const i = this.#indexOf.get(endpoint)
    if (i === undefined) return {}
    const now = this.#now()
    this.#refreshReference(now)
    const score = this.#cost(i, now)
    const hint = this.#hint[i]!
    return {
      score,
      latencyEwmaMs: this.#readLatency,
      inflight: endpoint.inflight,
      errorRate: this.#readErrorRate,
      utilization: this.#readUtilization,
      weight: endpoint.weight,
      weightHint: hint === hint ? hint : null,
    }
  }

  /** The predicted cost of one more request to endpoint i (see the class comment). */
  #cost (i: number, now: number): number {
    const endpoint = this.#endpoints[i]!
    const at = this.#updatedAt[i]!
    let latency = this.#median
    let errorRate = 0
    let utilization = 0
    if (at === at) {
      const elapsed = now - at
      const keep = elapsed > 0 ? Math.exp(elapsed * this.#negInvTau) : 1
      const lowest = this.#lowest
      latency = lowest + (this.#latency[i]! - lowest) * keep
      errorRate = this.#errorRate[i]! * keep
      utilization = this.#utilization[i]! * keep
    }
    this.#readLatency = latency
    this.#readErrorRate = errorRate
    this.#readUtilization = utilization
    const hint = this.#hint[i]!
    const weight = hint === hint ? hint : endpoint.weight
    const healthyShare = (1 - Math.min(errorRate, MAX_FRACTION)) * (1 - Math.min(utilization, MAX_FRACTION))
    return latency * (endpoint.inflight + 1) / (weight * healthyShare)
  }

  /**
   * Recomputes the median and lowest latency estimates, at most every
   * REFERENCE_REFRESH_MS: an O(n log n) sort per pick would not do, and both
   * move slowly.
   */
  #refreshReference (now: number): void {
    if (!this.#referenceStale || now - this.#referenceAt < REFERENCE_REFRESH_MS) return
    this.#referenceStale = false
    this.#referenceAt = now
    const sorted = this.#sorted
    const updatedAt = this.#updatedAt
    let m = 0
    for (let i = 0; i < updatedAt.length; i++) {
      if (updatedAt[i] === updatedAt[i]) sorted[m++] = this.#latency[i]!
    }
    if (m === 0) return
    // Unobserved slots sort last, so the first m are the estimates, in order.
    sorted.fill(Infinity, m)
    sorted.sort()
    this.#lowest = sorted[0]!
    this.#median = m % 2 === 1 ? sorted[(m - 1) / 2]! : (sorted[m / 2 - 1]! + sorted[m / 2]!) / 2
  }
}
