import type { CircuitState, ExponentialBackoff, IBackoff, IBreaker } from 'cockatiel'
import { cockatiel } from './cockatiel.ts'
import type { CircuitBreakerConfig } from '../config/schema.ts'

export type BreakerState = 'closed' | 'open' | 'half-open'

/** Just below 1: all failures still exceed it, as the ratio 1 means. */
const MAX_RATIO = 1 - 1e-9

/** What counts failures towards opening: cockatiel's ConsecutiveBreaker, or our RatioWindow. */
type Trigger = Pick<IBreaker, 'success' | 'failure'>

/**
 * A circuit breaker for one endpoint or one cluster. The consecutive failure
 * count and the growing open-period backoff are cockatiel's, the sampled
 * ratio over a window is RatioWindow; the state machine is ours because
 * cockatiel's `CircuitBreakerPolicy.execute(fn)` wraps a promise-returning
 * function, and an upstream attempt here is a streaming undici dispatch driven
 * by callbacks: wrapping each attempt would cost a closure and a promise per
 * request on the hot path for no gain.
 *
 * Closed → (trigger) → open for `halfOpenAfter` → half-open: exactly one probe
 * request is let through; its success closes the circuit, its failure re-opens
 * it for a longer period (backing off up to `maxHalfOpenAfter`).
 */
export class CircuitBreaker {
  readonly #breaker: Trigger
  readonly #closed: CircuitState
  readonly #halfOpen: CircuitState
  readonly #backoffFactory: ExponentialBackoff<unknown>
  #backoff: IBackoff<unknown> | undefined
  #state: BreakerState = 'closed'
  #openedAt = 0
  #openFor = 0
  #probeInFlight = false
  readonly #onChange: ((state: BreakerState) => void) | undefined
  readonly #now: () => number

  constructor (config: CircuitBreakerConfig, options: { onChange?: (state: BreakerState) => void, now?: () => number } = {}) {
    const lib = cockatiel()
    this.#closed = lib.CircuitState.Closed
    this.#halfOpen = lib.CircuitState.HalfOpen
    const t = config.trigger
    this.#now = options.now ?? Date.now
    this.#breaker = t.by === 'consecutive'
      ? new lib.ConsecutiveBreaker(t.failures)
      : new RatioWindow(t.threshold, t.window, t.minimumRequests, this.#now, this.#closed)
    this.#backoffFactory = new lib.ExponentialBackoff({ initialDelay: config.halfOpenAfter, maxDelay: config.maxHalfOpenAfter, generator: lib.noJitterGenerator })
    this.#onChange = options.onChange
  }

  get state (): BreakerState {
    return this.#state
  }

  /**
   * May a request go through now? In half-open, only the first caller gets
   * true (it becomes the probe) until that probe reports back.
   */
  allow (): boolean {
    if (this.#state === 'closed') return true
    if (this.#state === 'open') {
      if (this.#now() - this.#openedAt < this.#openFor) return false
      this.#set('half-open')
    }
    if (this.#probeInFlight) return false
    this.#probeInFlight = true
    return true
  }

  /** Peek without claiming the probe slot (for balancers and the admin view). */
  wouldAllow (): boolean {
    if (this.#state === 'closed') return true
    if (this.#state === 'open') return this.#now() - this.#openedAt >= this.#openFor
    return !this.#probeInFlight
  }

  success (): void {
    if (this.#state === 'half-open') {
      this.#probeInFlight = false
      this.#backoff = undefined
      // Forget the failures that opened it: a consecutive count left at the
      // threshold would re-open on the very next failure.
      this.#breaker.success(this.#halfOpen)
      this.#set('closed')
      return
    }
    if (this.#state === 'closed') this.#breaker.success(this.#closed)
  }

  failure (): void {
    if (this.#state === 'half-open') {
      this.#probeInFlight = false
      this.#open()
      return
    }
    if (this.#state === 'closed' && this.#breaker.failure(this.#closed)) this.#open()
  }

  /** The probe ended without a verdict (e.g. the client went away). */
  release (): void {
    if (this.#state === 'half-open') this.#probeInFlight = false
  }

  /** Milliseconds until an open circuit lets a probe through; 0 when it is not open. */
  openForMs (): number {
    return this.#state === 'open' ? Math.max(0, this.#openedAt + this.#openFor - this.#now()) : 0
  }

  describe (): Record<string, unknown> {
    return { state: this.#state, openUntil: this.#state === 'open' ? new Date(this.#openedAt + this.#openFor).toISOString() : undefined }
  }

  #open (): void {
    this.#backoff = this.#backoff === undefined ? this.#backoffFactory.next() : this.#backoff.next(undefined)
    this.#openFor = this.#backoff.duration
    this.#openedAt = this.#now()
    this.#set('open')
  }

  #set (state: BreakerState): void {
    if (this.#state === state) return
    this.#state = state
    this.#onChange?.(state)
  }
}

/**
 * The ratio trigger: opens when, over the last `window` ms, at least
 * `minimumRequests` finished and more than `threshold` of them failed.
 * Counted in a ring of buckets (at least 5, at most a second each) that
 * forgets by time: buckets older than the window are cleared before a count,
 * however long the breaker sat idle. cockatiel's SamplingBreaker moved one
 * bucket per count, so after an hour of silence its window still held the
 * requests of an hour ago (and it read Date.now, not our clock).
 */
class RatioWindow implements Trigger {
  readonly #threshold: number
  readonly #minimum: number
  readonly #bucketMs: number
  readonly #failures: Uint32Array
  readonly #successes: Uint32Array
  readonly #now: () => number
  /** cockatiel's CircuitState.Closed (cockatiel is loaded lazily, so no import of the value). */
  readonly #closed: CircuitState
  /** The bucket number (time / bucketMs) counted into last. */
  #bucket: number

  constructor (threshold: number, windowMs: number, minimumRequests: number, now: () => number, closed: CircuitState) {
    const n = Math.max(5, Math.ceil(windowMs / 1000))
    // Opening takes failures > threshold × total; the schema allows a
    // threshold of 1, read as "every request failed".
    this.#threshold = Math.min(threshold, MAX_RATIO)
    this.#minimum = Math.max(1, minimumRequests)
    this.#bucketMs = Math.max(1, windowMs / n)
    this.#failures = new Uint32Array(n)
    this.#successes = new Uint32Array(n)
    this.#now = now
    this.#closed = closed
    this.#bucket = Math.floor(now() / this.#bucketMs)
  }

  success (state: CircuitState): void {
    // Closing after a half-open probe starts the count afresh.
    if (state !== this.#closed) { this.#failures.fill(0); this.#successes.fill(0) }
    this.#successes[this.#rotate()]! += 1
  }

  failure (state: CircuitState): boolean {
    this.#failures[this.#rotate()]! += 1
    if (state !== this.#closed) return true
    let failures = 0
    let total = 0
    for (let i = 0; i < this.#failures.length; i++) {
      failures += this.#failures[i]!
      total += this.#failures[i]! + this.#successes[i]!
    }
    return total >= this.#minimum && failures > this.#threshold * total
  }

  /** Clears the buckets that fell out of the window since the last count; returns the current one's index. */
  #rotate (): number {
    const n = this.#failures.length
    const now = Math.floor(this.#now() / this.#bucketMs)
    const steps = Math.min(n, now - this.#bucket)
    for (let i = 1; i <= steps; i++) {
      const b = (this.#bucket + i) % n
      this.#failures[b] = 0
      this.#successes[b] = 0
    }
    if (now > this.#bucket) this.#bucket = now
    return this.#bucket % n
  }
}
