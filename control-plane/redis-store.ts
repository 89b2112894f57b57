import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { StaleStateError, type Relay, type StateStore, type StoreState } from './store.ts'

/**
 * Saves the state when the stored revision is the one this replica last
 * read, bumps it and announces it, atomically (a script runs alone).
 * KEYS: state, rev. ARGV: state JSON, expected rev, channel, message.
 */
const SAVE = `
local rev = tonumber(redis.call('GET', KEYS[2]) or '0')
if rev ~= tonumber(ARGV[2]) then return -1 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], rev + 1)
redis.call('PUBLISH', ARGV[3], ARGV[4])
return rev + 1`

/** Takes or keeps the lease. KEYS: lease. ARGV: holder, ttl ms. */
const LEASE = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0`

export interface RedisStoreOptions {
  /** Key prefix, so several control planes can share one Redis. Default `outrider:cp:`. */
  prefix?: string
}

/**
 * The shared store for several control-plane replicas (ARCHITECTURE §5):
 * the whole state in one key, saved with compare-and-set on a revision
 * counter so two replicas changing at once cannot lose a change (the loser
 * gets StaleStateError, reloads and redoes its edit), and announced on a
 * pub/sub channel so every replica reloads and pushes the change to the data
 * planes connected to it.
 *
 * @example
 * const store = new RedisStore('redis://10.0.0.9:6379')
 * const cp = await startControlPlane({ listen: '0.0.0.0:50051', store, tokens })
 */
export class RedisStore implements StateStore {
  readonly #redis: Redis
  readonly #keys: { state: string, rev: string, channel: string, lease: string, relay: string }
  readonly #id = randomUUID()
  #rev = 0
  #subscriber: Redis | undefined

  constructor (url: string, options: RedisStoreOptions = {}) {
    const prefix = options.prefix ?? 'outrider:cp:'
    this.#keys = { state: `${prefix}state`, rev: `${prefix}rev`, channel: `${prefix}changed`, lease: `${prefix}rules-lease`, relay: `${prefix}relay` }
    // Commands fail fast while Redis is down: a change is refused (UNAVAILABLE) rather than queued.
    this.#redis = new Redis(url, { maxRetriesPerRequest: 1, enableOfflineQueue: true })
    this.#redis.on('error', () => {})
  }

  async load (): Promise<StoreState | undefined> {
    const [[, text], [, rev]] = await this.#redis.multi().get(this.#keys.state).get(this.#keys.rev).exec() as [[unknown, string | null], [unknown, string | null]]
    this.#rev = Number(rev ?? 0)
    if (text === null) return undefined
    const state = JSON.parse(text) as StoreState
    if (state.format !== 1 || !Array.isArray(state.history)) throw new Error(`${this.#keys.state}: not an outrider-cp state (format 1)`)
    return state
  }

  async save (state: StoreState): Promise<void> {
    const r = Number(await this.#redis.eval(SAVE, 2, this.#keys.state, this.#keys.rev, JSON.stringify(state), this.#rev, this.#keys.channel, this.#id))
    if (r === -1) throw new StaleStateError('another replica changed the state first')
    this.#rev = r
  }

  /** Calls `listener` when another replica saved; returns the unsubscribe function. */
  watch (listener: () => void): () => void {
    const sub = this.#subscriber ??= this.#redis.duplicate()
    sub.on('error', () => {})
    const onMessage = (channel: string, from: string): void => { if (channel === this.#keys.channel && from !== this.#id) listener() }
    sub.on('message', onMessage)
    // A message lost while the subscription was down is made up for by reloading once it is back.
    sub.on('ready', listener)
    void sub.subscribe(this.#keys.channel).catch(() => {})
    return () => { sub.off('message', onMessage); sub.off('ready', listener) }
  }

  /**
   * Pub/sub between the replicas (fleet-wide telemetry): each message is
   * sent as `<replica id> <text>` so a replica skips its own.
   */
  readonly relay: Relay = {
    publish: async (message) => { await this.#redis.publish(this.#keys.relay, `${this.#id} ${message}`) },
    subscribe: (listener) => {
      const sub = this.#subscriber ??= this.#redis.duplicate()
      sub.on('error', () => {})
      const onMessage = (channel: string, text: string): void => {
        if (channel !== this.#keys.relay) return
        const space = text.indexOf(' ')
        if (space !== -1 && text.slice(0, space) !== this.#id) listener(text.slice(space + 1))
      }
      sub.on('message', onMessage)
      // ioredis subscribes again by itself after a reconnection.
      const ready = sub.subscribe(this.#keys.relay).then(() => {})
      ready.catch(() => {})
      return { ready, close: () => { sub.off('message', onMessage) } }
    },
  }

  /** True while this replica holds (or just took) the lease of `ttlMs`: one replica runs the rules. */
  async lease (ttlMs: number): Promise<boolean> {
    return Number(await this.#redis.eval(LEASE, 1, this.#keys.lease, this.#id, ttlMs)) === 1
  }

  /** Drops the connections (every save was awaited: nothing is pending; a quit would wait for a Redis that may be gone). */
  async close (): Promise<void> {
    this.#subscriber?.disconnect()
    this.#redis.disconnect()
  }
}
