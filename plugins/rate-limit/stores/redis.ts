import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible'
import type { Logger } from '../../../src/log.ts'
import { DEFAULT_MAX_KEYS, MAX_MEMORY_WINDOW_S, type RedisStoreConfig } from '../schema.ts'
import { KeyCap } from './memory.ts'
import { ThrottledLog } from '../../../src/throttled-log.ts'
import { acquireRedis as acquire, releaseRedis as release, redisTarget, type SharedRedis as SharedConnection } from '../../../src/redis-connection.ts'
import { allowed, refused, type LimitSpec, type LimitStore, type WindowCounter, type WindowResult } from './store.ts'

/**
 * The per-process insurance limiter (rate-limiter-flexible's
 * `insuranceLimiter`): RateLimiterRedis hands it every operation Redis
 * failed. Subclassed to notice that it was used, and to keep as many keys
 * as the memory store does at most: an outage must not grow the heap
 * without bound either.
 */
class InsuranceLimiter extends RateLimiterMemory {
  readonly #onUse: () => void
  readonly #cap: KeyCap

  constructor (points: number, seconds: number, onUse: () => void) {
    super({ points, duration: seconds, keyPrefix: '' })
    this.#onUse = onUse
    this.#cap = new KeyCap(this, DEFAULT_MAX_KEYS)
  }

  override consume (key: string | number, points?: number, options?: Record<string, unknown>): Promise<RateLimiterRes> {
    this.#onUse()
    this.#cap.touch(String(key))
    return super.consume(key, points, options)
  }

  override reward (key: string | number, points?: number, options?: Record<string, unknown>): Promise<RateLimiterRes> {
    // A key already dropped stays dropped: a refund would keep it uncapped.
    if (!this.#cap.has(String(key))) return Promise.resolve(new RateLimiterRes(0, 0, 0))
    return super.reward(key, points, options)
  }
}

export interface RedisStoreEnv {
  readonly log: Logger
  /** A Redis operation failed and onStoreError decided instead. */
  readonly onStoreError: () => void
}

class RedisCounter implements WindowCounter {
  readonly #limiter: RateLimiterRedis
  readonly #denied: (res: unknown) => WindowResult

  constructor (limiter: RateLimiterRedis, denied: (res: unknown) => WindowResult) {
    this.#limiter = limiter
    this.#denied = denied
  }

  hit (key: string): Promise<WindowResult> {
    return this.#limiter.consume(key).then(allowedResult, this.#denied)
  }

  refund (key: string): void {
    this.#limiter.reward(key).catch(() => {})
  }
}

function allowedResult (res: RateLimiterRes): WindowResult {
  return allowed(res.remainingPoints, res.msBeforeNext)
}

/**
 * Counters in Redis, shared by every Outrider using the same Redis: the
 * limit is global across sidecars. rate-limiter-flexible's RateLimiterRedis
 * counts with one Lua script per request (SET NX EX to open the window, then
 * INCRBY and PTTL), so concurrent hits from many processes are atomic.
 *
 * When Redis cannot answer (not connected, a command timed out), the
 * request is decided by `onStoreError`: `local` asks a per-process limiter
 * allowing points / expectedInstances, `allow` lets it through, `deny`
 * refuses it. Each such decision is counted and logged (at most every 10 s).
 */
export class RedisStore implements LimitStore {
  readonly #config: RedisStoreConfig
  readonly #conn: SharedConnection
  readonly #env: RedisStoreEnv
  readonly #target: string
  readonly #fallbackLog: ThrottledLog
  #closed = false

  private constructor (config: RedisStoreConfig, conn: SharedConnection, env: RedisStoreEnv) {
    this.#config = config
    this.#conn = conn
    this.#env = env
    this.#target = redisTarget(config)
    this.#fallbackLog = new ThrottledLog(env.log, 10_000)
  }

  /**
   * Joins (or opens) the shared connection. The first attempt is awaited, at
   * most connectTimeout, so a fresh process does not decide its first
   * requests locally just because the TCP handshake was still under way.
   */
  static async open (config: RedisStoreConfig, env: RedisStoreEnv): Promise<RedisStore> {
    const conn = acquire(config, env.log)
    await conn.firstAttempt
    return new RedisStore(config, conn, env)
  }

  #failed (err: unknown): void {
    this.#env.onStoreError()
    const status = this.#conn.client.status
    this.#fallbackLog.warn('rate-limit: redis unavailable, deciding by onStoreError', {
      redis: this.#target,
      onStoreError: this.#config.onStoreError,
      status,
      error: err ?? this.#conn.lastError ?? (status === 'ready' ? 'command failed or timed out' : `connection ${status}`),
    })
  }

  counter (scope: string, limit: LimitSpec): WindowCounter {
    const c = this.#config
    const mode = c.onStoreError
    const limiter = new RateLimiterRedis({
      storeClient: this.#conn.client,
      keyPrefix: `${c.keyPrefix}:${scope}:${limit.seconds}`,
      points: limit.points,
      duration: limit.seconds,
      // With the connection down, fail (or go local) without trying.
      rejectIfRedisNotReady: true,
      // A key over its limit is refused from memory until its window ends,
      // so a flood from one client costs Redis one round trip per window and
      // process. Set one past the limit: only a request this limit refused
      // blocks, never one that is later refunded.
      inMemoryBlockOnConsumed: limit.points + 1,
      insuranceLimiter: mode === 'local'
        // Its per-key timers cannot wait past 24.8 days: a longer window is
        // cut to that while Redis is away (a shorter window, never none).
        ? new InsuranceLimiter(Math.max(1, Math.floor(limit.points / c.expectedInstances)), Math.min(limit.seconds, MAX_MEMORY_WINDOW_S), () => { this.#failed(undefined) })
        : undefined,
    })
    const unknownWindow = limit.seconds * 1000
    const denied = (res: unknown): WindowResult => {
      if (res instanceof RateLimiterRes) return refused(res.msBeforeNext)
      // Only reached without an insurance limiter: allow or deny.
      this.#failed(res)
      return mode === 'allow' ? { allowed: true, remaining: limit.points, resetMs: unknownWindow, known: false } : refused(1000)
    }
    return new RedisCounter(limiter, denied)
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await release(this.#conn)
  }
}
