import type { CircuitState, ExponentialBackoff, IBackoff, IBreaker } from 'cockatiel'
import { cockatiel } from './cockatiel.ts'
import type { CircuitBreakerConfig } from '../config/schema.ts'

export type BreakerState = 'closed' | 'open' | 'half-open'

/** Just below 1: all failures still exceed it, as the ratio 1 means. */
const MAX_RATIO = 1 - 1e-9

/**
 * A circuit breaker for one endpoint or one cluster. The failure-counting
 * algorithms (consecutive, sampled ratio over a window) and the growing
 * open-period backoff are cockatiel's; the state machine is ours because
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
  readonly #breaker: IBreaker
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
    this.#breaker = t.by === 'consecutive'
      ? new lib.ConsecutiveBreaker(t.failures)
      // cockatiel wants a rate; the config speaks of a count per window. It
      // also refuses a threshold of 1 (it opens when failures > threshold ×
      // total), which the schema allows: read it as "every request failed".
      : new lib.SamplingBreaker({ threshold: Math.min(t.threshold, MAX_RATIO), duration: t.window, minimumRps: t.minimumRequests / (t.window / 1000) })
    this.#backoffFactory = new lib.ExponentialBackoff({ initialDelay: config.halfOpenAfter, maxDelay: config.maxHalfOpenAfter, generator: lib.noJitterGenerator })
    this.#onChange = options.onChange
    this.#now = options.now ?? Date.now
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
