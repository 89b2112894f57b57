import { randomUUID } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { StoredResponse } from './stored-response.ts'

/** Every stored variant of one URL. */
interface Variants {
  entries: StoredResponse[]
  size: number
  /** Absolute expiry (ms) of the longest-lived variant: lru-cache's TTL for the set. */
  until: number
}

/** Variants kept per URL: a Vary on a high-cardinality header must not crowd out everything else. */
const MAX_VARIANTS = 32

/**
 * The L1 layer: an LRU bounded by bytes (lru-cache's `maxSize`), with a
 * per-URL TTL equal to the longest time any of its variants is still useful
 * (fresh, or stale but revalidatable / servable stale). A tag index serves
 * purge-by-tag without a scan.
 */
export class MemoryStore {
  /** Tells this store's purge broadcasts from others' (see RedisLayerEnv.sender). */
  readonly id = randomUUID()
  readonly #lru: LRUCache<string, Variants>
  readonly #tags = new Map<string, Set<string>>()
  /** When a variant was last taken out on purpose (purge, removal): memory pressure does not count. */
  #withdrawnAt = 0

  constructor (maxBytes: number) {
    this.#lru = new LRUCache<string, Variants>({
      maxSize: maxBytes,
      sizeCalculation: (v) => Math.max(1, v.size),
      dispose: (v, key, reason) => { if (reason !== 'set') this.#untag(key, v) },
    })
  }

  get bytes (): number { return this.#lru.calculatedSize }
  get urls (): number { return this.#lru.size }

  /** The URL's variants, most recently stored first. */
  get (key: string): readonly StoredResponse[] | undefined {
    return this.#lru.get(key)?.entries
  }

  /**
   * Stores a variant, replacing the one with the same Vary field values
   * (and every variant that was selected by a different Vary list: the
   * origin's Vary for this URL changed, RFC 9111 §4.1).
   */
  put (entry: StoredResponse, keepMs: number, now: number): void {
    const old = this.#lru.get(entry.key)
    const entries: StoredResponse[] = [entry]
    let size = entry.size
    let until = now + keepMs
    if (old !== undefined) {
      for (const e of old.entries) {
        if (entries.length >= MAX_VARIANTS) break
        if (sameList(e.varyNames, entry.varyNames) && !sameList(e.varyValues, entry.varyValues)) {
          entries.push(e)
          size += e.size
          // lru-cache has one TTL per key: the set lives as long as its longest-lived variant.
          until = Math.max(until, old.until)
        }
      }
    }
    const ttl = Math.max(1, until - now)
    this.#lru.set(entry.key, { entries, size, until }, { ttl })
    for (const tag of entry.tags) {
      let keys = this.#tags.get(tag)
      if (keys === undefined) { keys = new Set(); this.#tags.set(tag, keys) }
      keys.add(entry.key)
    }
  }

  /**
   * Updates a variant in place (a 304 refreshed it); `keepMs` as in put.
   * A variant the LRU evicted while its revalidation (sent at `since`) was on
   * its way is stored again, as the fresh response it now is. False, and
   * nothing stored, when it may not come back: something was purged or
   * removed since then, or the URL holds a newer response for its request.
   */
  touch (entry: StoredResponse, keepMs: number, now: number, since: number): boolean {
    const v = this.#lru.get(entry.key)
    if (v === undefined || !v.entries.includes(entry)) {
      if (this.#withdrawnAt >= since || v?.entries.some((e) => !sameList(e.varyNames, entry.varyNames) || sameList(e.varyValues, entry.varyValues)) === true) return false
      this.put(entry, keepMs, now)
      return true
    }
    v.until = Math.max(v.until, now + keepMs)
    this.#lru.set(entry.key, v, { ttl: Math.max(1, v.until - now) })
    return true
  }

  /** Removes one variant (e.g. it turned out unusable). */
  remove (entry: StoredResponse): void {
    this.#withdrawnAt = Date.now()
    const v = this.#lru.get(entry.key)
    if (v === undefined) return
    const i = v.entries.indexOf(entry)
    if (i === -1) return
    if (v.entries.length === 1) { this.#lru.delete(entry.key); return }
    v.entries.splice(i, 1)
    v.size -= entry.size
    this.#lru.set(entry.key, v, { ttl: Math.max(1, v.until - Date.now()) })
  }

  /** Drops every variant of a URL; how many went. */
  delete (key: string): number {
    this.#withdrawnAt = Date.now()
    const v = this.#lru.get(key)
    if (v === undefined) return 0
    this.#lru.delete(key)
    return v.entries.length
  }

  deletePrefix (prefix: string): number {
    this.#withdrawnAt = Date.now()
    let n = 0
    for (const key of [...this.#lru.keys()]) if (key.startsWith(prefix)) n += this.delete(key)
    return n
  }

  deleteTag (tag: string): number {
    this.#withdrawnAt = Date.now()
    const keys = this.#tags.get(tag)
    if (keys === undefined) return 0
    this.#tags.delete(tag)
    let n = 0
    for (const key of keys) {
      const v = this.#lru.get(key)
      // The index may name a URL whose current variants no longer carry the tag.
      if (v !== undefined && v.entries.some((e) => e.tags.includes(tag))) n += this.delete(key)
    }
    return n
  }

  clear (): void { this.#withdrawnAt = Date.now(); this.#lru.clear(); this.#tags.clear() }

  #untag (key: string, v: Variants): void {
    for (const e of v.entries) {
      for (const tag of e.tags) {
        const keys = this.#tags.get(tag)
        if (keys === undefined) continue
        keys.delete(key)
        if (keys.size === 0) this.#tags.delete(tag)
      }
    }
  }
}

function sameList (a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
