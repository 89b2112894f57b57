import { promisify } from 'node:util'
import { zstdCompress, zstdDecompress } from 'node:zlib'
import type { Cluster, Redis } from 'ioredis'
import type { HeaderMap, PurgeSelector } from '../../src/plugin.ts'
import type { Logger } from '../../src/log.ts'
import { acquireRedis, releaseRedis, type SharedRedis } from '../../src/redis-connection.ts'
import { ThrottledLog } from '../../src/throttled-log.ts'
import { parseCacheControl } from './cache-control.ts'
import { refresh, type FreshnessOptions, type StoredResponse } from './stored-response.ts'
import { varyMatches } from './vary.ts'
import type { L2Config } from './schema.ts'

const compress = promisify(zstdCompress)
const decompress = promisify(zstdDecompress)

const FLAG_ZSTD = 1

/** What is stored beside the body. */
interface Meta {
  k: string
  s: number
  h: HeaderMap
  vn: string[]
  vv: string[]
  rq: number
  rs: number
  a: number
  t: string[]
}

/**
 * One round trip per write. Fields are `[varyNames,varyValues,responseTime]`
 * as JSON, so both tests are prefix tests: a field for the same Vary values
 * (ARGV[4] is `[names,values,`) is replaced, and one stored under other
 * Vary names (not starting with ARGV[5], `[names,`) is from before the
 * upstream changed its Vary and is dropped. The URL's TTL is only ever
 * extended (a hash has one TTL; a shorter-lived variant must not cut a
 * longer one's). The loop is O(variants of the URL), as HKEYS was before.
 */
const PUT_SCRIPT = `
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, #ARGV[4]) == ARGV[4] or string.sub(f, 1, #ARGV[5]) ~= ARGV[5] then redis.call('HDEL', KEYS[1], f) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1`

/**
 * A tag set outlives every entry in it: its TTL is only ever extended, or a
 * shorter-lived entry tagged later would make a purge by tag miss a
 * longer-lived one.
 */
const TAG_SCRIPT = `
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1`

type CacheRedis = (Redis | Cluster) & {
  outriderCachePut (key: string, field: string, value: Buffer, ttlMs: number, sameVariant: string, sameNames: string): Promise<number>
  outriderCacheTag (key: string, member: string, ttlMs: number): Promise<number>
}

export interface RedisLayerEnv {
  readonly log: Logger
  readonly onError: (op: 'get' | 'put' | 'purge') => void
  /** Another sidecar (or another store in this process) purged: drop the same from L1. */
  readonly onRemotePurge: (selector: PurgeSelector) => void
  /**
   * Names the L1 store this layer fronts. Its own purges are applied to it
   * before they are broadcast; heard back later, they would drop what was
   * stored since (a POST's new representation), so they are not applied again.
   */
  readonly sender: string
}

/** Subscribers for purge broadcasts: one per Redis and channel, shared by every cache instance using them. */
const subscribers = new Map<string, { client: Redis | Cluster, listeners: Set<(s: PurgeSelector) => void> }>()

function subscribe (conn: SharedRedis, channel: string, listener: (s: PurgeSelector) => void, log: ThrottledLog): () => void {
  const id = `${conn.id}\u0000${channel}`
  let s = subscribers.get(id)
  if (s === undefined) {
    const client = (conn.client as Redis).duplicate() as Redis | Cluster
    const entry = { client, listeners: new Set<(s: PurgeSelector) => void>() }
    client.on('error', (err: Error) => { log.warn('cache: redis purge subscriber error', { error: err }) })
    // With the offline queue off, SUBSCRIBE is sent once connected; ioredis re-subscribes after reconnects.
    client.once('ready', () => { client.subscribe(channel).catch(() => {}) })
    client.on('message', (_ch: string, message: string) => {
      let selector: PurgeSelector
      try { selector = JSON.parse(message) as PurgeSelector } catch { return }
      for (const l of entry.listeners) l(selector)
    })
    s = entry
    subscribers.set(id, s)
  }
  const held = s
  held.listeners.add(listener)
  return () => {
    held.listeners.delete(listener)
    if (held.listeners.size > 0) return
    subscribers.delete(id)
    held.client.disconnect()
  }
}

function globEscape (s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`)
}

/**
 * The L2 layer: stored responses in a Redis every sidecar shares. One hash
 * per URL (`<prefix>:u:<host/path?query>`), one field per variant, values
 * zstd-compressed above a size; a set per purge tag; purges are broadcast on
 * `<prefix>:purge` so every sidecar drops the same from its L1. Any Redis
 * failure is a miss (or a skipped write), counted and logged, never an error
 * for the client.
 */
export class RedisLayer {
  readonly #conn: SharedRedis
  readonly #client: CacheRedis
  readonly #config: L2Config
  readonly #env: RedisLayerEnv
  readonly #log: ThrottledLog
  readonly #unsubscribe: () => void
  readonly #freshness: FreshnessOptions

  private constructor (conn: SharedRedis, config: L2Config, env: RedisLayerEnv, freshness: FreshnessOptions) {
    this.#conn = conn
    this.#config = config
    this.#env = env
    this.#freshness = freshness
    this.#log = new ThrottledLog(env.log, 30_000)
    const client = conn.client as CacheRedis
    if (typeof client.outriderCachePut !== 'function') client.defineCommand('outriderCachePut', { numberOfKeys: 1, lua: PUT_SCRIPT })
    if (typeof client.outriderCacheTag !== 'function') client.defineCommand('outriderCacheTag', { numberOfKeys: 1, lua: TAG_SCRIPT })
    this.#client = client
    this.#unsubscribe = subscribe(conn, `${config.keyPrefix}:purge`, (s) => { if ((s as { from?: string }).from !== env.sender) env.onRemotePurge(s) }, this.#log)
  }

  static async open (config: L2Config, env: RedisLayerEnv, freshness: FreshnessOptions): Promise<RedisLayer> {
    const conn = acquireRedis(config, env.log)
    await conn.firstAttempt
    return new RedisLayer(conn, config, env, freshness)
  }

  #urlKey (key: string): string { return `${this.#config.keyPrefix}:u:${key}` }
  #tagKey (tag: string): string { return `${this.#config.keyPrefix}:t:${tag}` }

  #failed (op: 'get' | 'put' | 'purge', err: unknown): void {
    this.#env.onError(op)
    this.#log.warn(`cache: redis ${op} failed`, { error: err, redis: this.#conn.lastError?.message })
  }

  /** The stored variant of `key` matching the request, most recent first; undefined on a miss or any failure. */
  async get (key: string, req: HeaderMap, normaliseAE: boolean): Promise<StoredResponse | undefined> {
    let all: Record<string, Buffer>
    try {
      all = await this.#client.hgetallBuffer(this.#urlKey(key))
    } catch (err) {
      this.#failed('get', err)
      return undefined
    }
    let best: Buffer | undefined
    let bestTime = -1
    for (const field in all) {
      let vary: [string[], string[], number]
      try { vary = JSON.parse(field) as [string[], string[], number] } catch { continue }
      if (!varyMatches(vary[0], vary[1], req, normaliseAE)) continue
      if (vary[2] > bestTime) { bestTime = vary[2]; best = all[field] }
    }
    if (best === undefined) return undefined
    try {
      return await this.#decode(best)
    } catch (err) {
      this.#failed('get', err)
      return undefined
    }
  }

  async #decode (value: Buffer): Promise<StoredResponse> {
    const flags = value.readUInt8(0)
    const metaLength = value.readUInt32BE(1)
    const meta = JSON.parse(value.subarray(5, 5 + metaLength).toString('utf8')) as Meta
    let body = value.subarray(5 + metaLength)
    if ((flags & FLAG_ZSTD) !== 0) body = await decompress(body)
    const e: StoredResponse = {
      key: meta.k,
      status: meta.s,
      headers: meta.h,
      body,
      varyNames: meta.vn,
      varyValues: meta.vv,
      requestTime: meta.rq,
      responseTime: meta.rs,
      cc: parseCacheControl(undefined),
      dateValue: meta.rs,
      ageValue: 0,
      lifetime: 0,
      etag: undefined,
      lastModified: undefined,
      tags: meta.t,
      size: 0,
    }
    refresh(e, String(meta.a), this.#freshness)
    e.size = body.length + value.length - body.length + 256
    return e
  }

  /** Writes a variant (fire and forget: a failed write is a later miss). */
  put (e: StoredResponse, keepMs: number): void {
    void this.#put(e, keepMs)
  }

  async #put (e: StoredResponse, keepMs: number): Promise<void> {
    try {
      const meta: Meta = { k: e.key, s: e.status, h: e.headers, vn: [...e.varyNames], vv: [...e.varyValues], rq: e.requestTime, rs: e.responseTime, a: e.ageValue, t: [...e.tags] }
      const metaBuf = Buffer.from(JSON.stringify(meta), 'utf8')
      const zip = e.body.length > this.#config.compressAbove
      const body = zip ? await compress(e.body) : e.body
      const head = Buffer.allocUnsafe(5)
      head.writeUInt8(zip ? FLAG_ZSTD : 0, 0)
      head.writeUInt32BE(metaBuf.length, 1)
      const names = JSON.stringify(e.varyNames)
      const sameVariant = `[${names},${JSON.stringify(e.varyValues)},`
      const field = `${sameVariant}${e.responseTime}]`
      const ttl = Math.max(1, Math.ceil(keepMs))
      // Sent together, answered together: one round trip whatever the tag count.
      const writes: Array<Promise<number>> = [this.#client.outriderCachePut(this.#urlKey(e.key), field, Buffer.concat([head, metaBuf, body]), ttl, sameVariant, `[${names},`)]
      for (const tag of e.tags) writes.push(this.#client.outriderCacheTag(this.#tagKey(tag), e.key, Math.max(ttl, 60_000)))
      await Promise.all(writes)
    } catch (err) {
      this.#failed('put', err)
    }
  }

  /** Purges L2 and tells every sidecar to purge its L1; how many URLs went from Redis. */
  async purge (selector: PurgeSelector): Promise<number> {
    let n = 0
    try {
      if ('url' in selector) {
        n = await this.#client.del(this.#urlKey(selector.url))
      } else if ('tag' in selector) {
        const keys = await this.#client.smembers(this.#tagKey(selector.tag))
        for (const k of keys) n += await this.#client.del(this.#urlKey(k))
        await this.#client.del(this.#tagKey(selector.tag))
      } else {
        n = await this.#purgePrefix(selector.prefix)
      }
      await this.#client.publish(`${this.#config.keyPrefix}:purge`, JSON.stringify({ ...selector, from: this.#env.sender }))
    } catch (err) {
      this.#failed('purge', err)
      throw err
    }
    return n
  }

  async #purgePrefix (prefix: string): Promise<number> {
    const match = `${globEscape(this.#urlKey(prefix))}*`
    const client = this.#client
    const nodes: Redis[] = 'nodes' in client && typeof client.nodes === 'function' && client.constructor.name === 'Cluster'
      ? (client as Cluster).nodes('master')
      : [client as Redis]
    let n = 0
    for (const node of nodes) {
      let cursor = '0'
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', match, 'COUNT', 500)
        cursor = next
        if (keys.length > 0) n += await node.unlink(...keys)
      } while (cursor !== '0')
    }
    return n
  }

  async close (): Promise<void> {
    this.#unsubscribe()
    await releaseRedis(this.#conn)
  }
}
