import { eligible, type Balancer, type BalancedEndpoint, type Usable } from '../balancer.ts'
import type { LoadBalancerConfig } from '../../config/schema.ts'
import { RoundRobin } from './round-robin.ts'

/** Ring points per unit of weight: enough to keep shares within a few % of fair. */
const POINTS_PER_WEIGHT = 100
/**
 * At most this many points in all (Envoy bounds its ring too, by
 * `maximum_ring_size`): 1000 and 999 must not cost 200 000 points, hashed
 * and sorted on every build.
 */
export const MAX_RING_POINTS = 65_536

/**
 * Consistent hashing on a ring (Karger et al.; ketama): each endpoint owns
 * points in proportion to its weight, and a key goes to the first point at or
 * after its hash. Removing an endpoint moves only the keys it owned (while
 * the ring is under its bound: past it every endpoint's points are scaled
 * anew); an ejected endpoint's keys go
 * to the next healthy point and come back when it does (as do an open
 * circuit's, on the cluster's restricted second pick).
 *
 * The ring is built once; `pick` is a binary search over a Uint32Array.
 * Requests without a key fall back to round robin.
 *
 * @example
 * const ring = new ConsistentHashRing(endpoints)
 * ring.pick('user-42') === ring.pick('user-42') // true while healthy
 */
export class ConsistentHashRing implements Balancer {
  readonly #endpoints: readonly BalancedEndpoint[]
  /** Sorted point hashes. */
  readonly #points: Uint32Array
  /** #owners[i] is the index in #endpoints of the endpoint owning #points[i]. */
  readonly #owners: Uint32Array
  readonly #fallback: RoundRobin

  constructor (endpoints: readonly BalancedEndpoint[]) {
    this.#endpoints = [...endpoints]
    this.#fallback = new RoundRobin(endpoints)
    const counts = pointCounts(endpoints)
    const n = endpoints.length
    // Ties on a hash collision break by id, not position, so that they too
    // resolve the same way in a ring built without some endpoint: each point
    // is packed as hash × n + the owner's rank by id, exact in a double for
    // up to 2^21 endpoints, and sorted natively (no comparator calls).
    const byRank = endpoints.map((_, i) => i).sort((a, b) => compareIds(endpoints[a]!.id, endpoints[b]!.id) || a - b)
    let size = 0
    for (const c of counts) size += c
    const packed = new Float64Array(size)
    let k = 0
    for (let r = 0; r < n; r++) {
      const e = byRank[r]!
      const id = endpoints[e]!.id
      // Points depend only on the endpoint's own id, so the other endpoints'
      // points stay put when one is added or removed.
      for (let v = 0; v < counts[e]!; v++) packed[k++] = murmur3(`${id}#${v}`) * n + r
    }
    packed.sort()
    this.#points = new Uint32Array(size)
    this.#owners = new Uint32Array(size)
    for (let i = 0; i < size; i++) {
      const rank = packed[i]! % n
      this.#points[i] = (packed[i]! - rank) / n
      this.#owners[i] = byRank[rank]!
    }
  }

  pick (hashKey: string | undefined, usable?: Usable): BalancedEndpoint | undefined {
    if (hashKey === undefined) return this.#fallback.pick(undefined, usable)
    const points = this.#points
    const n = points.length
    if (n === 0) return undefined

    const hash = murmur3(hashKey)
    let lo = 0
    let hi = n
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (points[mid]! < hash) lo = mid + 1
      else hi = mid
    }
    // Past the last point the ring wraps to the first.
    if (lo === n) lo = 0

    const endpoint = this.#endpoints[this.#owners[lo]!]!
    if (eligible(endpoint, usable)) return endpoint
    // Walking the whole ring to learn that nothing is healthy would cost
    // O(points); a scan of the endpoints is O(endpoints).
    if (!this.#anyEligible(usable)) return undefined
    for (let step = 1; step < n; step++) {
      const next = this.#endpoints[this.#owners[(lo + step) % n]!]!
      if (eligible(next, usable)) return next
    }
    return undefined
  }

  #anyEligible (usable: Usable | undefined): boolean {
    for (const endpoint of this.#endpoints) if (eligible(endpoint, usable)) return true
    return false
  }
}

/**
 * Ring points per endpoint: POINTS_PER_WEIGHT per unit of weight, so an
 * endpoint's points depend on its own weight alone and only the keys of an
 * endpoint that comes or goes move. Weights so large that the ring would
 * exceed MAX_RING_POINTS scale every endpoint down alike (then a change of
 * the total moves some keys, as in Envoy's ring); never fewer than one.
 */
export function pointCounts (endpoints: readonly BalancedEndpoint[]): number[] {
  let total = 0
  for (const e of endpoints) total += e.weight
  const perUnit = Math.min(POINTS_PER_WEIGHT, MAX_RING_POINTS / total)
  return endpoints.map((e) => Math.max(1, Math.floor(e.weight * perUnit)))
}

function compareIds (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/**
 * MurmurHash3 x86 32-bit over the UTF-8 bytes of `key`, encoded on the fly so
 * hashing allocates nothing. Fast, non-cryptographic, good avalanche (unlike
 * FNV-1a on keys differing only in their last characters, such as `id#1`).
 */
export function murmur3 (key: string, seed = 0): number {
  let h = seed >>> 0
  let block = 0
  let length = 0
  for (let i = 0; i < key.length; i++) {
    let c = key.charCodeAt(i)
    // Encode c as 1–4 UTF-8 bytes packed little-endian into `bytes`.
    let bytes: number
    let count: number
    if (c < 0x80) {
      bytes = c
      count = 1
    } else if (c < 0x800) {
      bytes = (0xc0 | (c >> 6)) | ((0x80 | (c & 0x3f)) << 8)
      count = 2
    } else if (c >= 0xd800 && c < 0xdc00 && i + 1 < key.length && (key.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      c = 0x10000 + ((c - 0xd800) << 10) + (key.charCodeAt(++i) - 0xdc00)
      bytes = (0xf0 | (c >> 18)) | ((0x80 | ((c >> 12) & 0x3f)) << 8) |
        ((0x80 | ((c >> 6) & 0x3f)) << 16) | ((0x80 | (c & 0x3f)) << 24)
      count = 4
    } else {
      // A lone surrogate becomes U+FFFD, as TextEncoder does.
      if (c >= 0xd800 && c < 0xe000) c = 0xfffd
      bytes = (0xe0 | (c >> 12)) | ((0x80 | ((c >> 6) & 0x3f)) << 8) | ((0x80 | (c & 0x3f)) << 16)
      count = 3
    }
    for (let b = 0; b < count; b++) {
      block |= ((bytes >>> (8 * b)) & 0xff) << (8 * (length & 3))
      length++
      if ((length & 3) === 0) {
        h ^= scramble(block)
        h = (h << 13) | (h >>> 19)
        h = (Math.imul(h, 5) + 0xe6546b64) | 0
        block = 0
      }
    }
  }
  if ((length & 3) !== 0) h ^= scramble(block)
  h ^= length
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

function scramble (k: number): number {
  k = Math.imul(k, 0xcc9e2d51)
  k = (k << 15) | (k >>> 17)
  return Math.imul(k, 0x1b873593)
}

type HashOn = Extract<LoadBalancerConfig, { policy: 'consistent_hash' }>['hashOn']

/** Derives a request's consistent-hash key; undefined when it has none. */
export type HashKeyExtractor = (headers: Record<string, string | string[] | undefined>, clientIp: string) => string | undefined

/**
 * Builds, once per config, the function that reads a request's hash key:
 * a header's first value, a cookie's value, or the client IP. Empty values
 * count as absent, so those requests fall back to round robin instead of all
 * landing on the endpoint that owns the empty string.
 *
 * @example
 * const keyOf = createHashKeyExtractor({ by: 'cookie', cookie: 'session' })
 * keyOf({ cookie: 'theme=dark; session=abc' }, '10.0.0.1') // 'abc'
 */
export function createHashKeyExtractor (hashOn: HashOn): HashKeyExtractor {
  switch (hashOn.by) {
    case 'header': {
      // Node lowercases header names; the schema already lowercases this one.
      const name = hashOn.header.toLowerCase()
      return (headers) => firstValue(headers[name])
    }
    case 'cookie': {
      const needle = `${hashOn.cookie}=`
      return (headers) => cookieValue(headers.cookie, needle)
    }
    case 'ip':
      return clientIpKey
  }
}

function firstValue (value: string | string[] | undefined): string | undefined {
  const first = typeof value === 'string' ? value : value?.[0]
  return first === '' ? undefined : first
}

function clientIpKey (_headers: unknown, clientIp: string): string | undefined {
  return clientIp === '' ? undefined : clientIp
}

function cookieValue (header: string | string[] | undefined, needle: string): string | undefined {
  if (typeof header === 'string') return findCookie(header, needle)
  if (header === undefined) return undefined
  for (const line of header) {
    const value = findCookie(line, needle)
    if (value !== undefined) return value
  }
  return undefined
}

/**
 * Finds `name=` (as `needle`) at the start of a cookie-pair in a Cookie header
 * (RFC 6265 §4.2.1: pairs separated by `; `) with indexOf, so no regex and no
 * split array per request. The first pair with the name wins.
 */
function findCookie (header: string, needle: string): string | undefined {
  let from = 0
  for (;;) {
    const at = header.indexOf(needle, from)
    if (at === -1) return undefined
    let before = at - 1
    while (before >= 0 && isSpace(header.charCodeAt(before))) before--
    // Only a match at a pair's start counts: not `xsession=` nor `a=session=`.
    if (before < 0 || header.charCodeAt(before) === 59 /* ; */) {
      let start = at + needle.length
      let end = header.indexOf(';', start)
      if (end === -1) end = header.length
      while (end > start && isSpace(header.charCodeAt(end - 1))) end--
      // RFC 6265 §4.1.1 allows the value in double quotes; they are not part of it.
      if (end - start >= 2 && header.charCodeAt(start) === 34 && header.charCodeAt(end - 1) === 34) {
        start++
        end--
      }
      return end > start ? header.slice(start, end) : undefined
    }
    from = at + 1
  }
}

function isSpace (c: number): boolean {
  return c === 32 || c === 9
}
