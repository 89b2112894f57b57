import type { OutlierDetectionConfig } from '../config/schema.ts'

/**
 * Passive health (issue #3): endpoints that keep failing real traffic are
 * ejected for a while, following Envoy's outlier detection
 * (consecutive_5xx, consecutive_gateway_failure, base/max_ejection_time,
 * max_ejection_percent).
 */

/** How one finished upstream attempt ended, as outlier detection counts it. */
export type AttemptOutcome = 'success' | '5xx' | 'gateway-failure'

/** Time and timers, injectable so tests need not wait. */
export interface Clock {
  now (): number
  setTimeout (fn: () => void, ms: number): unknown
  clearTimeout (handle: unknown): void
}

/** Date.now and unref'd timers: a pending readmission never keeps the process alive. */
export const systemClock: Clock = {
  now: Date.now,
  setTimeout (fn, ms) {
    const t = setTimeout(fn, ms)
    t.unref()
    return t
  },
  clearTimeout (handle) { clearTimeout(handle as NodeJS.Timeout) },
}

/** What the detector ejects endpoints from; EndpointHealth implements it. */
export interface EjectionSink {
  readonly size: number
  eject (index: number, untilMs: number, reason: string): void
  readmit (index: number, reason: string): void
}

export interface OutlierDetectorOptions {
  clock?: Clock
  /**
   * How long an endpoint must stay admitted for its ejection multiplier to drop
   * by one. Envoy decrements it once per detection `interval` the host spends
   * un-ejected; we have no interval, so the default is `baseEjectionTime`.
   */
  backoffDecay?: number
}

/** Counters for metrics, after Envoy's outlier_detection stats. */
export interface OutlierStats {
  /** Endpoints ejected right now. */
  ejectionsActive: number
  /** Ejections carried out. */
  ejectionsEnforced: number
  /** Runs of consecutive 5xx that reached the threshold (ejected or not). */
  ejectionsDetectedConsecutive5xx: number
  /** Runs of consecutive gateway failures that reached the threshold (ejected or not). */
  ejectionsDetectedConsecutiveGatewayFailure: number
  /** Ejections refused because `maxEjectionPercent` would have been exceeded. */
  ejectionsOverflow: number
}

/**
 * Counts consecutive failures per endpoint and ejects through an EjectionSink.
 *
 * Counting follows Envoy with `split_external_local_origin_errors: false`,
 * where a local-origin failure is turned into a 503/504 first: a gateway
 * failure counts towards both `consecutiveGatewayFailures` and
 * `consecutive5xx`, a plain 5xx counts towards `consecutive5xx` and ends a
 * run of gateway failures, a success ends both runs. Callers that want
 * Envoy's exact behaviour for upstream statuses pass 502/503/504 as
 * 'gateway-failure'.
 *
 * @example
 * const health = new EndpointHealth(cluster.endpoints)
 * const outliers = new OutlierDetector(cfg.outlierDetection, health)
 * // once per finished attempt:
 * outliers.record(index, failed ? (connectFailed ? 'gateway-failure' : '5xx') : 'success')
 * // when the snapshot is retired:
 * outliers.close()
 */
export class OutlierDetector {
  readonly #config: OutlierDetectionConfig
  readonly #sink: EjectionSink
  readonly #clock: Clock
  readonly #decay: number
  /** The multiplier at which base × n reaches maxEjectionTime: n never grows past it. */
  readonly #maxMultiplier: number
  readonly #consecutive5xx: Uint32Array
  readonly #consecutiveGateway: Uint32Array
  /** Envoy's ejection time backoff: the n in base × n. */
  readonly #multiplier: Uint32Array
  /** When the endpoint was last readmitted (for the decay of #multiplier); 0 if never. */
  readonly #readmittedAt: Float64Array
  readonly #ejected: Uint8Array
  readonly #timers: unknown[]
  /** One callback per endpoint, built once, so an ejection allocates only its timer. */
  readonly #expire: Array<() => void>
  readonly #stats: OutlierStats = { ejectionsActive: 0, ejectionsEnforced: 0, ejectionsDetectedConsecutive5xx: 0, ejectionsDetectedConsecutiveGatewayFailure: 0, ejectionsOverflow: 0 }
  #closed = false

  constructor (config: OutlierDetectionConfig, sink: EjectionSink, options: OutlierDetectorOptions = {}) {
    const n = sink.size
    this.#config = config
    this.#sink = sink
    this.#clock = options.clock ?? systemClock
    this.#decay = options.backoffDecay ?? config.baseEjectionTime
    this.#maxMultiplier = config.baseEjectionTime > 0
      ? Math.max(1, Math.ceil(config.maxEjectionTime / config.baseEjectionTime))
      : 1
    this.#consecutive5xx = new Uint32Array(n)
    this.#consecutiveGateway = new Uint32Array(n)
    this.#multiplier = new Uint32Array(n)
    this.#readmittedAt = new Float64Array(n)
    this.#ejected = new Uint8Array(n)
    this.#timers = new Array<unknown>(n).fill(undefined)
    this.#expire = Array.from({ length: n }, (_, i) => () => {
      this.#timers[i] = undefined
      this.#readmit(i, 'ejection-expired')
    })
  }

  /**
   * Counts one finished upstream attempt. O(1) and allocation-free: it runs on
   * every response. Attempts that finish while their endpoint is ejected (they
   * were in flight, or panic mode sent them) are not counted, as Envoy does not
   * eject an ejected host again.
   */
  record (endpointIndex: number, outcome: AttemptOutcome): void {
    if (!this.#config.enabled || this.#closed) return
    const i = endpointIndex
    if (i < 0 || i >= this.#ejected.length || this.#ejected[i] === 1) return
    if (outcome === 'success') {
      this.#consecutive5xx[i] = 0
      this.#consecutiveGateway[i] = 0
      return
    }
    if (outcome === 'gateway-failure') {
      if (++this.#consecutiveGateway[i]! >= this.#config.consecutiveGatewayFailures) {
        // Envoy resets the counter that fired whether or not the ejection is
        // allowed, so a refused endpoint needs a whole new run to try again.
        this.#consecutiveGateway[i] = 0
        this.#stats.ejectionsDetectedConsecutiveGatewayFailure++
        if (this.#eject(i, 'consecutive-gateway-failure')) return
      }
    } else {
      this.#consecutiveGateway[i] = 0
    }
    if (++this.#consecutive5xx[i]! >= this.#config.consecutive5xx) {
      this.#consecutive5xx[i] = 0
      this.#stats.ejectionsDetectedConsecutive5xx++
      this.#eject(i, 'consecutive-5xx')
    }
  }

  /**
   * Ends an ejection early (admin action, or a passing active health check,
   * as Envoy's `successful_active_health_check_uneject_host` does).
   */
  readmit (endpointIndex: number): void {
    if (endpointIndex < 0 || endpointIndex >= this.#ejected.length || this.#ejected[endpointIndex] === 0) return
    this.#clock.clearTimeout(this.#timers[endpointIndex])
    this.#timers[endpointIndex] = undefined
    this.#readmit(endpointIndex, 'readmitted')
  }

  isEjected (endpointIndex: number): boolean { return this.#ejected[endpointIndex] === 1 }

  /** Counters for metrics; the object is live, read it, do not keep it for later comparison. */
  get stats (): Readonly<OutlierStats> { return this.#stats }

  /** What the admin endpoint shows of one endpoint's passive health. */
  describe (endpointIndex: number): { consecutive5xx: number, consecutiveGatewayFailures: number, ejectionMultiplier: number, ejected: boolean } {
    return {
      consecutive5xx: this.#consecutive5xx[endpointIndex] ?? 0,
      consecutiveGatewayFailures: this.#consecutiveGateway[endpointIndex] ?? 0,
      ejectionMultiplier: this.#decayed(endpointIndex, this.#clock.now()),
      ejected: this.#ejected[endpointIndex] === 1,
    }
  }

  /**
   * Cancels every pending readmission and ignores further records. Endpoints
   * stay as they are: the detector is closed with the snapshot that owns it.
   */
  close (): void {
    this.#closed = true
    for (let i = 0; i < this.#timers.length; i++) {
      if (this.#timers[i] !== undefined) this.#clock.clearTimeout(this.#timers[i])
      this.#timers[i] = undefined
    }
  }

  /** The multiplier after the decay earned since the last readmission. */
  #decayed (i: number, now: number): number {
    const n = this.#multiplier[i]!
    // n > 0 means the endpoint was ejected before, so #readmittedAt is set.
    if (n === 0 || this.#ejected[i] === 1 || this.#decay <= 0) return n
    return Math.max(0, n - Math.floor((now - this.#readmittedAt[i]!) / this.#decay))
  }

  /** @returns whether the endpoint was ejected. */
  #eject (i: number, reason: string): boolean {
    const size = this.#ejected.length
    // Envoy's rule: eject only if the share ejected afterwards stays within
    // max_ejection_percent; a single-endpoint cluster at 50 % is never ejected.
    if ((this.#stats.ejectionsActive + 1) * 100 > this.#config.maxEjectionPercent * size) {
      this.#stats.ejectionsOverflow++
      return false
    }
    const now = this.#clock.now()
    const n = Math.min(this.#decayed(i, now) + 1, this.#maxMultiplier)
    this.#multiplier[i] = n
    const ms = Math.min(this.#config.baseEjectionTime * n, this.#config.maxEjectionTime)
    this.#ejected[i] = 1
    this.#stats.ejectionsActive++
    this.#stats.ejectionsEnforced++
    this.#consecutive5xx[i] = 0
    this.#consecutiveGateway[i] = 0
    this.#timers[i] = this.#clock.setTimeout(this.#expire[i]!, ms)
    this.#sink.eject(i, now + ms, reason)
    return true
  }

  #readmit (i: number, reason: string): void {
    this.#ejected[i] = 0
    this.#stats.ejectionsActive--
    this.#readmittedAt[i] = this.#clock.now()
    this.#consecutive5xx[i] = 0
    this.#consecutiveGateway[i] = 0
    this.#sink.readmit(i, reason)
  }
}
