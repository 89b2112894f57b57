import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible'
import type { Logger } from '../../../src/log.ts'
import type { RedisStoreConfig } from '../schema.ts'
import { ThrottledLog } from '../throttled-log.ts'
import { allowed, refused, type LimitSpec, type LimitStore, type WindowCounter, type WindowResult } from './store.ts'

/** Longest wait between reconnection attempts: Redis coming back is noticed within this. */
const MAX_RECONNECT_DELAY_MS = 1_000

/** One ioredis client shared by every plugin instance that uses the same Redis. */
interface SharedConnection {
  readonly id: string
  readonly client: Redis | Cluster
  /** Settles once the first connection attempt has succeeded or failed. */
  readonly firstAttempt: Promise<void>
  /** The last connection-level error, for the fallback log. */
  lastError: Error | undefined
  refs: number
}

/**
 * Connections by their config, reference-counted. Every route of a snapshot
 * (and the next snapshot, built before the old one closes) asks for its
 * Redis and gets the same client: one connection per Redis per process, not
 * one per route, and none dropped across a reload. The last release closes it.
 */
const connections = new Map<string, SharedConnection>()

function connectionId (c: RedisStoreConfig): string {
  return JSON.stringify([c.url ?? null, c.cluster ?? null, c.username ?? null, c.password ?? null, c.tls, c.connectTimeout, c.commandTimeout])
}

/** Where the connection goes, for logs: never the password. */
export function redisTarget (c: RedisStoreConfig): string {
  if (c.cluster !== undefined) return `cluster ${c.cluster.map((n) => `${n.host}:${n.port}`).join(',')}`
  try {
    const u = new URL(c.url as string)
    return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`
  } catch {
    return 'redis'
  }
}

function openConnection (config: RedisStoreConfig, log: Logger): SharedConnection {
  // Fail fast, never queue: with the offline queue off a command on a dead
  // connection is refused at once (and the fallback decides) instead of
  // waiting for a reconnect while the client's request waits with it.
  const options: RedisOptions = {
    enableOfflineQueue: false,
    connectTimeout: config.connectTimeout,
    commandTimeout: config.commandTimeout,
    maxRetriesPerRequest: 0,
    retryStrategy: (times: number) => Math.min(times * 100, MAX_RECONNECT_DELAY_MS),
  }
  // Only what is set: credentials in the URL must not be overridden by an unset field.
  if (config.username !== undefined) options.username = config.username
  if (config.password !== undefined) options.password = config.password
  if (config.tls) options.tls = {}
  const client = config.cluster !== undefined
    ? new Cluster(config.cluster, {
      enableOfflineQueue: false,
      clusterRetryStrategy: (times: number) => Math.min(times * 100, MAX_RECONNECT_DELAY_MS),
      redisOptions: options,
    } satisfies ClusterOptions)
    : new Redis(config.url as string, options)

  const target = redisTarget(config)
  const errors = new ThrottledLog(log, 30_000)
  let down = false
  let resolveFirst: () => void = () => {}
  const firstAttempt = new Promise<void>((resolve) => { resolveFirst = resolve })
  const timer = setTimeout(() => { resolveFirst() }, config.connectTimeout)
  timer.unref()
  const settle = (): void => { clearTimeout(timer); resolveFirst() }
  const conn: SharedConnection = { id: connectionId(config), client, firstAttempt, lastError: undefined, refs: 0 }

  // An 'error' without a listener would crash the process; each failed
  // reconnect emits one, so they are logged at most every 30 s.
  client.on('error', (err: Error) => {
    conn.lastError = err
    settle()
    errors.warn('rate-limit: redis connection error', { redis: target, error: err })
  })
  client.on('close', () => { settle(); down = true })
  client.on('ready', () => {
    settle()
    if (down || conn.lastError !== undefined) log.info('rate-limit: redis connection ready', { redis: target })
    down = false
    conn.lastError = undefined
  })
  return conn
}

function acquire (config: RedisStoreConfig, log: Logger): SharedConnection {
  const id = connectionId(config)
  let conn = connections.get(id)
  if (conn === undefined) {
    conn = openConnection(config, log)
    connections.set(id, conn)
  }
  conn.refs++
  return conn
}

async function release (conn: SharedConnection): Promise<void> {
  if (--conn.refs > 0) return
  connections.delete(conn.id)
  // QUIT lets Redis finish what it has; on a dead link it fails at once
  // (no offline queue) and disconnect() stops the reconnect loop either way.
  await conn.client.quit().catch(() => {})
  conn.client.disconnect()
}

/**
 * The per-process insurance limiter (rate-limiter-flexible's
 * `insuranceLimiter`): RateLimiterRedis hands it every operation Redis
 * failed. Subclassed only to notice that it was used.
 */
class InsuranceLimiter extends RateLimiterMemory {
  readonly #onUse: () => void

  constructor (points: number, seconds: number, onUse: () => void) {
    super({ points, duration: seconds, keyPrefix: '' })
    this.#onUse = onUse
  }

  override consume (key: string | number, points?: number, options?: Record<string, unknown>): Promise<RateLimiterRes> {
    this.#onUse()
    return super.consume(key, points, options)
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
        ? new InsuranceLimiter(Math.max(1, Math.floor(limit.points / c.expectedInstances)), limit.seconds, () => { this.#failed(undefined) })
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
