import { LRUCache } from 'lru-cache'
import { RateLimiterMemory, type RateLimiterRes } from 'rate-limiter-flexible'
import { DEFAULT_MAX_KEYS } from '../schema.ts'
import { allowed, refused, type LimitSpec, type LimitStore, type WindowCounter, type WindowResult } from './store.ts'

/**
 * The keys a RateLimiterMemory holds, at most `max`: past it the least
 * recently counted key is deleted from the limiter. rate-limiter-flexible
 * keeps every key (a record and a timer, some 600 bytes) for its whole window
 * and takes no storage of its own, so a client choosing keys (a header value
 * per request) would otherwise grow the heap without bound. A forgotten key
 * starts a new window when it comes back. Sized by count (`maxSize`), not
 * `max`: lru-cache allocates `max` slots up front, megabytes per counter.
 */
export class KeyCap {
  readonly #limiter: RateLimiterMemory
  #keys: LRUCache<string, true>

  constructor (limiter: RateLimiterMemory, max: number) {
    this.#limiter = limiter
    this.#keys = this.#cache(max)
  }

  #cache (max: number): LRUCache<string, true> {
    return new LRUCache<string, true>({
      maxSize: max,
      sizeCalculation: () => 1,
      dispose: (_v, key, reason) => { if (reason === 'evict') void this.#limiter.delete(key) },
    })
  }

  /** How many keys are kept at most. */
  get max (): number {
    return this.#keys.maxSize
  }

  /** `key` is about to be counted: it becomes the most recent, and the least recent goes if there is no room. */
  touch (key: string): void {
    this.#keys.set(key, true)
  }

  /** Whether the limiter may hold `key` (a refund for a key already dropped is not made: it would be kept uncapped). */
  has (key: string): boolean {
    return this.#keys.has(key)
  }

  /** Another cap; the least recent keys go if there are more. */
  resize (max: number): void {
    const old = this.#keys
    this.#keys = this.#cache(max)
    // Least recent first, so recency carries over and the excess is evicted (and deleted) in order.
    for (const key of old.rkeys()) this.#keys.set(key, true)
  }
}

interface Shared {
  readonly limiter: RateLimiterMemory
  readonly cap: KeyCap
  refs: number
}

/**
 * Per-process counters by scope and window length, shared by every plugin
 * instance that names them and reference-counted. A reload builds the new
 * snapshot's instances before the old ones close, so counts carry over: a
 * config push from the control plane must not hand every client a fresh
 * window (and the newest snapshot's maxKeys applies). The limiter is given no
 * real limit (MAX_SAFE_INTEGER points): it only counts, and each counter
 * compares with its own points, so an override or a changed limit moves the
 * threshold on the same count, as the Redis store does.
 */
const shared = new Map<string, Shared>()

class MemoryCounter implements WindowCounter {
  readonly #limiter: RateLimiterMemory
  readonly #cap: KeyCap
  readonly #verdict: (res: RateLimiterRes) => WindowResult

  constructor (entry: Shared, points: number) {
    this.#limiter = entry.limiter
    this.#cap = entry.cap
    this.#verdict = (res) => res.consumedPoints > points ? refused(res.msBeforeNext) : allowed(points - res.consumedPoints, res.msBeforeNext)
  }

  hit (key: string): Promise<WindowResult> {
    this.#cap.touch(key)
    return this.#limiter.consume(key).then(this.#verdict)
  }

  refund (key: string): void {
    if (this.#cap.has(key)) void this.#limiter.reward(key)
  }
}

export interface MemoryStoreOptions {
  /** Keys each counter (scope and window) keeps at most; the least recently counted go first. */
  readonly maxKeys: number
}

/**
 * The default store: counters in this process. Exact and free, but each
 * Outrider counts alone, so N sidecars allow N times the limit.
 */
export class MemoryStore implements LimitStore {
  readonly #maxKeys: number
  readonly #held: string[] = []
  #closed = false

  constructor (options: MemoryStoreOptions = { maxKeys: DEFAULT_MAX_KEYS }) {
    this.#maxKeys = options.maxKeys
  }

  counter (scope: string, limit: LimitSpec): WindowCounter {
    const id = `${scope}\u0000${limit.seconds}`
    let entry = shared.get(id)
    if (entry === undefined) {
      const limiter = new RateLimiterMemory({ points: Number.MAX_SAFE_INTEGER, duration: limit.seconds, keyPrefix: '' })
      entry = { limiter, cap: new KeyCap(limiter, this.#maxKeys), refs: 0 }
      shared.set(id, entry)
    } else if (entry.cap.max !== this.#maxKeys) {
      entry.cap.resize(this.#maxKeys)
    }
    entry.refs++
    this.#held.push(id)
    return new MemoryCounter(entry, limit.points)
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const id of this.#held) {
      const entry = shared.get(id)
      if (entry !== undefined && --entry.refs === 0) shared.delete(id)
    }
  }
}
