import type { Logger } from '../log.ts'

/**
 * The one place that decides the `healthy` flag balancers read (issue #3).
 *
 * Two independent signals feed it, as in Envoy, where a host carries separate
 * FAILED_ACTIVE_HC and FAILED_OUTLIER_CHECK flags:
 * - the active health checker's verdict (`setActive`),
 * - outlier ejection (`eject` / `readmit`).
 * An endpoint is truly healthy when the active verdict is not 'unhealthy' and it
 * is not ejected. Neither signal clears the other: an ejected endpoint that
 * passes its probes stays ejected until it is readmitted.
 *
 * The flag is recomputed only when one of those signals changes, never per
 * request, so balancers read a plain boolean on the hot path.
 */

/** What EndpointHealth writes to: the cluster's endpoints (`BalancedEndpoint`s). */
export interface HealthTarget {
  readonly id: string
  healthy: boolean
}

export type ActiveState = 'healthy' | 'unhealthy' | 'unchecked'

/** One endpoint as the admin endpoint shows it. */
export interface EndpointHealthState {
  /** The active checker's verdict; 'unchecked' (no check configured or none finished yet) counts as healthy. */
  active: ActiveState
  /** Set while ejected by outlier detection. */
  ejectedUntil?: string
  /** Ejections of this endpoint since the cluster was built. */
  ejections: number
  /** The verdict before panic mode: false when failing active checks or ejected. */
  healthy: boolean
  /** The cluster is in panic mode: every endpoint takes traffic regardless of its verdict. */
  panic: boolean
}

export interface EndpointHealthOptions {
  /**
   * Envoy's panic threshold in %: below this share of truly healthy endpoints
   * the cluster balances over all of them. 0 disables panic mode. Default 50.
   */
  panicThreshold?: number
  /**
   * An endpoint's verdict changed (not its flag: in panic mode the flag stays
   * true). Meant for metrics and logs.
   */
  onChange?: (endpointIndex: number, healthy: boolean, reason: string) => void
  /** The cluster entered (true) or left (false) panic mode. */
  onPanic?: (panic: boolean) => void
  /**
   * Where a throwing onChange / onPanic is reported. They are called from
   * timers (readmission, probes), so an exception must not escape: the state
   * is already updated when they run.
   */
  logger?: Logger
}

const UNCHECKED = 0
const ACTIVE_OK = 1
const ACTIVE_FAILED = 2
const ACTIVE_NAMES: readonly ActiveState[] = ['unchecked', 'healthy', 'unhealthy']

/**
 * Combines active checks and outlier ejection for the endpoints of one cluster
 * and applies Envoy's panic threshold.
 *
 * Every endpoint starts healthy: its `healthy` flag is set to true here.
 *
 * @example
 * const health = new EndpointHealth(cluster.endpoints, { panicThreshold: cfg.panicThreshold })
 * health.setActive(0, false)            // from ActiveHealthChecker
 * health.eject(1, Date.now() + 10_000)  // from OutlierDetector
 * health.panic                          // true: 0 of 2 healthy < 50 %, so both take traffic
 */
export class EndpointHealth {
  readonly #endpoints: readonly HealthTarget[]
  readonly #threshold: number
  readonly #onChange: EndpointHealthOptions['onChange']
  readonly #onPanic: EndpointHealthOptions['onPanic']
  readonly #log: Logger | undefined
  readonly #active: Uint8Array
  /** Epoch ms until which the endpoint is ejected; 0 when admitted. */
  readonly #ejectedUntil: Float64Array
  readonly #ejections: Uint32Array
  /** The verdict without panic mode, per endpoint (1 healthy, 0 not). */
  readonly #verdict: Uint8Array
  #healthyCount: number
  #panic = false

  constructor (endpoints: readonly HealthTarget[], options: EndpointHealthOptions = {}) {
    const n = endpoints.length
    this.#endpoints = endpoints
    this.#threshold = options.panicThreshold ?? 50
    this.#onChange = options.onChange
    this.#onPanic = options.onPanic
    this.#log = options.logger
    this.#active = new Uint8Array(n)
    this.#ejectedUntil = new Float64Array(n)
    this.#ejections = new Uint32Array(n)
    this.#verdict = new Uint8Array(n).fill(1)
    this.#healthyCount = n
    for (const e of endpoints) e.healthy = true
  }

  /** Number of endpoints. */
  get size (): number { return this.#endpoints.length }

  /** True while too few endpoints are healthy and all of them take traffic. */
  get panic (): boolean { return this.#panic }

  /** Endpoints whose verdict is healthy (panic mode aside). */
  get healthyCount (): number { return this.#healthyCount }

  /** The verdict of one endpoint, ignoring panic mode. */
  isHealthy (index: number): boolean { return this.#verdict[index] === 1 }

  /** The active health checker's verdict for an endpoint. */
  setActive (index: number, ok: boolean, reason = ok ? 'active-check-passed' : 'active-check-failed'): void {
    if (!this.#valid(index)) return
    const next = ok ? ACTIVE_OK : ACTIVE_FAILED
    if (this.#active[index] === next) return
    this.#active[index] = next
    this.#update(index, reason)
  }

  /**
   * Ejects an endpoint until `untilMs` (epoch ms, shown by the admin endpoint).
   * The caller readmits it: this class runs no timers. Ejecting an ejected
   * endpoint only moves its deadline.
   */
  eject (index: number, untilMs: number, reason = 'ejected'): void {
    if (!this.#valid(index)) return
    const wasEjected = this.#ejectedUntil[index] !== 0
    // 0 means "admitted"; a deadline at the epoch is still an ejection.
    this.#ejectedUntil[index] = untilMs > 0 ? untilMs : 1
    if (wasEjected) return
    this.#ejections[index]!++
    this.#update(index, reason)
  }

  /** Ends an endpoint's ejection; a no-op when it is not ejected. */
  readmit (index: number, reason = 'readmitted'): void {
    if (!this.#valid(index) || this.#ejectedUntil[index] === 0) return
    this.#ejectedUntil[index] = 0
    this.#update(index, reason)
  }

  isEjected (index: number): boolean { return this.#valid(index) && this.#ejectedUntil[index] !== 0 }

  /** What the admin endpoint shows of one endpoint. */
  describe (index: number): EndpointHealthState {
    const out: EndpointHealthState = {
      active: ACTIVE_NAMES[this.#active[index] ?? UNCHECKED] ?? 'unchecked',
      ejections: this.#ejections[index] ?? 0,
      healthy: this.#verdict[index] === 1,
      panic: this.#panic,
    }
    const until = this.#ejectedUntil[index] ?? 0
    if (until !== 0) out.ejectedUntil = new Date(until).toISOString()
    return out
  }

  #valid (index: number): boolean {
    return Number.isInteger(index) && index >= 0 && index < this.#endpoints.length
  }

  /** Recomputes one endpoint's verdict, then the panic mode and the flags. */
  #update (index: number, reason: string): void {
    const healthy = this.#active[index] !== ACTIVE_FAILED && this.#ejectedUntil[index] === 0
    const before = this.#verdict[index] === 1
    if (healthy === before) return
    this.#verdict[index] = healthy ? 1 : 0
    this.#healthyCount += healthy ? 1 : -1

    const n = this.#endpoints.length
    // Envoy: panic when the healthy share is strictly below the threshold, so
    // 1 of 2 healthy at the default 50 % is not yet panic.
    const panic = this.#healthyCount * 100 < this.#threshold * n
    const panicChanged = panic !== this.#panic
    if (panicChanged) {
      this.#panic = panic
      // Entering or leaving panic changes every flag: O(n), but only on the
      // rare transition.
      for (let i = 0; i < n; i++) this.#endpoints[i]!.healthy = panic || this.#verdict[i] === 1
    } else if (!panic) {
      this.#endpoints[index]!.healthy = healthy
    }
    try {
      this.#onChange?.(index, healthy, reason)
      if (panicChanged) this.#onPanic?.(panic)
    } catch (err) {
      this.#log?.error('endpoint health callback failed', { endpoint: this.#endpoints[index]!.id, err })
    }
  }
}
