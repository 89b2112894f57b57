import type { ExponentialBackoff, IBackoff } from 'cockatiel'
import { cockatiel } from './cockatiel.ts'
import type { RetryConfig } from '../config/schema.ts'
import type { OutriderError } from '../errors.ts'

export type RetryReason = 'connect-failure' | 'reset' | 'timeout' | '5xx' | 'gateway-error' | 'retriable-status-codes'

/** RFC 9110 §9.2.2: requests whose repetition has the same intended effect. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE', 'QUERY'])

/**
 * A route's retry policy, compiled once per snapshot. Decides whether a failed
 * attempt is retried and why; the budget and the backoff are separate.
 */
export class RetryPolicy {
  readonly config: RetryConfig
  readonly maxAttempts: number
  readonly #on: ReadonlySet<string>
  readonly #statuses: ReadonlySet<number>
  /** Connect failures are retried (forError agrees). */
  readonly #onConnect: boolean
  readonly #backoff: ExponentialBackoff<unknown>

  constructor (config: RetryConfig) {
    this.config = config
    this.maxAttempts = config.maxAttempts
    this.#on = new Set(config.retryOn)
    this.#statuses = new Set(config.retriableStatusCodes)
    this.#onConnect = this.#on.has('connect-failure') || this.#on.has('gateway-error') || this.#on.has('5xx')
    const lib = cockatiel()
    this.#backoff = new lib.ExponentialBackoff({ initialDelay: config.backoff.base, maxDelay: config.backoff.max, generator: lib.fullJitterGenerator })
  }

  /**
   * May this method be retried at all, after the given failure? A connect
   * failure sent no byte, so even a POST is safe to send again.
   */
  methodAllows (method: string, reason: RetryReason): boolean {
    return reason === 'connect-failure' || this.config.retryNonIdempotent || IDEMPOTENT.has(method)
  }

  /**
   * Could some failure of a request with this method be retried? Then its
   * body is worth buffering for a replay. True for every method when connect
   * failures are retried: nothing was sent, so even a POST may go again.
   */
  mayReplay (method: string): boolean {
    return this.config.retryNonIdempotent || IDEMPOTENT.has(method) || this.#onConnect
  }

  /** The reason to retry a response status, or undefined. */
  forStatus (status: number): RetryReason | undefined {
    if (status < 500) return this.#statuses.has(status) && this.#on.has('retriable-status-codes') ? 'retriable-status-codes' : undefined
    if ((status === 502 || status === 503 || status === 504) && this.#on.has('gateway-error')) return 'gateway-error'
    if (this.#on.has('5xx')) return '5xx'
    if (this.#statuses.has(status) && this.#on.has('retriable-status-codes')) return 'retriable-status-codes'
    return undefined
  }

  /** The reason to retry a failed attempt (no response head), or undefined. */
  forError (err: OutriderError): RetryReason | undefined {
    const phase = err.extensions?.phase
    if (phase === 'connect') {
      if (this.#on.has('connect-failure')) return 'connect-failure'
      // A connect failure is also a gateway error (Envoy counts it as one).
      return this.#on.has('gateway-error') || this.#on.has('5xx') ? 'connect-failure' : undefined
    }
    if (phase === 'reset' || phase === 'response') return this.#on.has('reset') || this.#on.has('gateway-error') || this.#on.has('5xx') ? 'reset' : undefined
    if (phase === 'headers') return this.#on.has('timeout') || this.#on.has('gateway-error') || this.#on.has('5xx') ? 'timeout' : undefined
    return undefined
  }

  /** Backoff before the next retry (full jitter, exponential, capped). */
  nextBackoff (previous: IBackoff<unknown> | undefined): IBackoff<unknown> {
    return previous === undefined ? this.#backoff.next() : previous.next(undefined)
  }
}

/**
 * A cluster's retry budget, as Linkerd's: over a sliding 10-second window,
 * retries (and hedges) may add at most `percent` of the requests the cluster
 * received, plus `minRetriesPerSecond` so a quiet cluster can still retry.
 * During an outage every first attempt fails; without a budget each would be
 * sent `maxAttempts` times and multiply the load on what is left.
 *
 * A rate, not a share of requests in flight (Envoy's budget_percent): with
 * fast upstreams few requests are in flight at any instant, and a
 * concurrency-based budget would refuse the retries a partial failure needs.
 * Counts live in one-second buckets of a ring: O(1), no allocation.
 */
export class RetryBudget {
  readonly #ratio: number
  readonly #minPerSecond: number
  readonly #requests = new Float64Array(WINDOW_BUCKETS)
  readonly #retries = new Float64Array(WINDOW_BUCKETS)
  readonly #createdAt: number
  #bucket: number
  /** Retries and hedges sent and not finished (for the admin view). */
  retriesInFlight = 0
  readonly #now: () => number

  constructor (percent: number, minRetriesPerSecond: number, now: () => number = wallClockMs) {
    this.#ratio = percent / 100
    this.#minPerSecond = minRetriesPerSecond
    this.#now = now
    this.#createdAt = now()
    this.#bucket = Math.floor(this.#createdAt / 1000)
  }

  /**
   * Counts a first attempt: what retries are a share of. `nowMs` is a time the
   * caller already read from the budget's clock (a clock read is ~80 ns on a
   * VM, and this runs per request).
   */
  deposit (nowMs?: number): void {
    this.#requests[this.#rotate(nowMs) % WINDOW_BUCKETS]! += 1
  }

  /** Claims a retry if the budget allows one now. */
  tryAcquire (): boolean {
    const cur = this.#rotate()
    let requests = 0
    let retries = 0
    for (let i = 0; i < WINDOW_BUCKETS; i++) { requests += this.#requests[i] as number; retries += this.#retries[i] as number }
    // The minimum accrues from the start, so a new cluster cannot burst a whole window's worth.
    const seconds = Math.min(WINDOW_BUCKETS, (this.#now() - this.#createdAt) / 1000 + 1)
    if (retries + 1 > requests * this.#ratio + this.#minPerSecond * seconds) return false
    this.#retries[cur % WINDOW_BUCKETS]! += 1
    this.retriesInFlight++
    return true
  }

  release (): void {
    if (this.retriesInFlight > 0) this.retriesInFlight--
  }

  /** Moves the ring to the current second, clearing buckets that fell out of the window. */
  #rotate (nowMs?: number): number {
    const now = Math.floor((nowMs ?? this.#now()) / 1000)
    if (now !== this.#bucket) {
      const steps = Math.min(WINDOW_BUCKETS, now - this.#bucket)
      for (let i = 1; i <= steps; i++) {
        const b = (this.#bucket + i) % WINDOW_BUCKETS
        this.#requests[b] = 0
        this.#retries[b] = 0
      }
      this.#bucket = now
    }
    return now
  }
}

const WINDOW_BUCKETS = 10

/**
 * The budget's default clock: epoch milliseconds from the monotonic clock, so
 * a request's `performance.now()` start time can be passed to `deposit`.
 */
export function wallClockMs (): number {
  return performance.timeOrigin + performance.now()
}
