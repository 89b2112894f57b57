/**
 * What a store gives the plugin: one counter per window length and scope,
 * counting requests per key in fixed windows (rate-limiter-flexible's model:
 * a key's window starts with its first request and lasts `seconds`).
 */

/** What one limit said about one request. */
export interface WindowResult {
  readonly allowed: boolean
  /** Requests left in the window after this one (0 once refused). */
  readonly remaining: number
  /** Milliseconds until the key's window ends and its count starts again. */
  readonly resetMs: number
  /** False when the store could not tell (a store error with onStoreError: allow). */
  readonly known: boolean
}

export interface LimitSpec {
  readonly points: number
  /** Window length in whole seconds. */
  readonly seconds: number
}

export interface WindowCounter {
  /** Counts one request for `key`. Never rejects: store failures are decided inside. */
  hit (key: string): Promise<WindowResult>
  /** Takes back a request that another limit refused; best effort, never rejects. */
  refund (key: string): void
}

export interface LimitStore {
  /**
   * The counter for `limit` in `scope`. Called while a snapshot is built,
   * never per request. Counters of one scope and window length count the same
   * requests, whatever their points (an override only moves the threshold).
   */
  counter (scope: string, limit: LimitSpec): WindowCounter
  /** Releases what the store holds (shared limiters, the Redis connection). */
  close (): Promise<void>
}

/** A result for the request a limit allowed. */
export function allowed (remaining: number, resetMs: number): WindowResult {
  return { allowed: true, remaining, resetMs: Math.max(0, resetMs), known: true }
}

/** A result for the request a limit refused. */
export function refused (resetMs: number): WindowResult {
  return { allowed: false, remaining: 0, resetMs: Math.max(0, resetMs), known: true }
}
