import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import type { Logger } from './log.ts'
import { ThrottledLog } from './throttled-log.ts'

/** How to reach one Redis (a node or a cluster); the plugins' store configs extend it. */
export interface RedisConnectionConfig {
  url?: string | undefined
  cluster?: Array<{ host: string, port: number }> | undefined
  username?: string | undefined
  password?: string | undefined
  tls: boolean
  connectTimeout: number
  commandTimeout: number
}

/** Longest wait between reconnection attempts: Redis coming back is noticed within this. */
const MAX_RECONNECT_DELAY_MS = 1_000

/** One ioredis client shared by every plugin instance that uses the same Redis. */
export interface SharedRedis {
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
const connections = new Map<string, SharedRedis>()

function connectionId (c: RedisConnectionConfig): string {
  return JSON.stringify([c.url ?? null, c.cluster ?? null, c.username ?? null, c.password ?? null, c.tls, c.connectTimeout, c.commandTimeout])
}

/** Where the connection goes, for logs: never the password. */
export function redisTarget (c: RedisConnectionConfig): string {
  if (c.cluster !== undefined) return `cluster ${c.cluster.map((n) => `${n.host}:${n.port}`).join(',')}`
  try {
    const u = new URL(c.url as string)
    return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`
  } catch {
    return 'redis'
  }
}

function openConnection (config: RedisConnectionConfig, log: Logger): SharedRedis {
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
  const conn: SharedRedis = { id: connectionId(config), client, firstAttempt, lastError: undefined, refs: 0 }

  // An 'error' without a listener would crash the process; each failed
  // reconnect emits one, so they are logged at most every 30 s.
  client.on('error', (err: Error) => {
    conn.lastError = err
    settle()
    errors.warn('redis connection error', { redis: target, error: err })
  })
  client.on('close', () => { settle(); down = true })
  client.on('ready', () => {
    settle()
    if (down || conn.lastError !== undefined) log.info('redis connection ready', { redis: target })
    down = false
    conn.lastError = undefined
  })
  return conn
}

export function acquireRedis (config: RedisConnectionConfig, log: Logger): SharedRedis {
  const id = connectionId(config)
  let conn = connections.get(id)
  if (conn === undefined) {
    conn = openConnection(config, log)
    connections.set(id, conn)
  }
  conn.refs++
  return conn
}

export async function releaseRedis (conn: SharedRedis): Promise<void> {
  if (--conn.refs > 0) return
  connections.delete(conn.id)
  // QUIT lets Redis finish what it has; on a dead link it fails at once
  // (no offline queue) and disconnect() stops the reconnect loop either way.
  await conn.client.quit().catch(() => {})
  conn.client.disconnect()
}

