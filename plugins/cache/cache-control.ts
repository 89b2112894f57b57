/**
 * Cache-Control parsing (RFC 9111 §5.2) for both directions. Directive names
 * are case-insensitive; values may be tokens or quoted strings (§5.2: a
 * recipient accepts either form). Parsed results are memoised per raw header
 * value: a service sends a handful of distinct values, so a hot route parses
 * each once.
 */

/**
 * A delta-seconds directive value: a non-negative integer, capped at 2^31
 * (§1.2.2), `undefined` when absent, NaN when present but not a valid
 * delta-seconds (the response is then treated as stale: §4.2.1 lets a cache
 * consider conflicting or broken freshness information as stale).
 */
export type Seconds = number | undefined

export interface CacheControl {
  maxAge: Seconds
  sMaxage: Seconds
  noStore: boolean
  /** `no-cache` without field names: never served without validation. */
  noCache: boolean
  /** `no-cache="a, b"`: the named fields are not sent from a stored response without validation. */
  noCacheFields: string[] | undefined
  /** `private` without field names: a shared cache never stores the response. */
  private: boolean
  privateFields: string[] | undefined
  public: boolean
  mustRevalidate: boolean
  proxyRevalidate: boolean
  mustUnderstand: boolean
  noTransform: boolean
  immutable: boolean
  /** Request only. `max-stale` without a value means any staleness: Infinity. */
  maxStale: Seconds
  minFresh: Seconds
  onlyIfCached: boolean
  staleWhileRevalidate: Seconds
  staleIfError: Seconds
}

const MAX_DELTA = 2 ** 31

function empty (): CacheControl {
  return {
    maxAge: undefined,
    sMaxage: undefined,
    noStore: false,
    noCache: false,
    noCacheFields: undefined,
    private: false,
    privateFields: undefined,
    public: false,
    mustRevalidate: false,
    proxyRevalidate: false,
    mustUnderstand: false,
    noTransform: false,
    immutable: false,
    maxStale: undefined,
    minFresh: undefined,
    onlyIfCached: false,
    staleWhileRevalidate: undefined,
    staleIfError: undefined,
  }
}

/** An empty directive set, shared: callers must not mutate it. */
export const NO_DIRECTIVES: Readonly<CacheControl> = Object.freeze(empty())

/** delta-seconds = 1*DIGIT; anything else (sign, fraction, empty) is invalid. */
export function parseDeltaSeconds (v: string | undefined): number {
  if (v === undefined || v.length === 0) return NaN
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i)
    if (c < 48 || c > 57) return NaN
  }
  // Long digit strings overflow to the cap rather than to a float (§1.2.2).
  if (v.length > 10) return MAX_DELTA
  return Math.min(Number(v), MAX_DELTA)
}

/**
 * Splits a header value into directives, honouring quoted strings (a comma
 * inside quotes does not end a directive). Yields [name, value|undefined].
 */
function * directives (header: string): Generator<[string, string | undefined]> {
  let i = 0
  const n = header.length
  while (i < n) {
    // Skip separators and whitespace.
    while (i < n && (header[i] === ',' || header[i] === ' ' || header[i] === '\t')) i++
    if (i >= n) break
    const nameStart = i
    while (i < n && header[i] !== '=' && header[i] !== ',') i++
    const name = header.slice(nameStart, i).trim().toLowerCase()
    let value: string | undefined
    if (i < n && header[i] === '=') {
      i++
      while (i < n && (header[i] === ' ' || header[i] === '\t')) i++
      if (header[i] === '"') {
        i++
        let v = ''
        while (i < n && header[i] !== '"') {
          if (header[i] === '\\' && i + 1 < n) i++
          v += header[i]
          i++
        }
        i++ // closing quote
        value = v
        while (i < n && header[i] !== ',') i++
      } else {
        const start = i
        while (i < n && header[i] !== ',') i++
        value = header.slice(start, i).trim()
      }
    }
    if (name !== '') yield [name, value]
  }
}

function fieldList (v: string | undefined): string[] | undefined {
  if (v === undefined) return undefined
  const names = v.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== '')
  return names.length === 0 ? undefined : names
}

/**
 * A delta-seconds directive seen for the first time keeps its value; seen
 * again with a different value, the directive is in conflict (NaN, i.e.
 * stale: §4.2.1 allows either "first wins" or "stale", and stale is the one
 * that never serves something the origin did not mean).
 */
function delta (current: Seconds, raw: string | undefined): number {
  const v = parseDeltaSeconds(raw)
  if (current === undefined) return v
  return current === v ? v : NaN
}

export function parseCacheControl (header: string | string[] | undefined): CacheControl {
  if (header === undefined) return NO_DIRECTIVES as CacheControl
  const raw = typeof header === 'string' ? header : header.join(', ')
  const hit = memo.get(raw)
  if (hit !== undefined) return hit
  const cc = empty()
  for (const [name, value] of directives(raw)) {
    switch (name) {
      case 'max-age': cc.maxAge = delta(cc.maxAge, value); break
      case 's-maxage': cc.sMaxage = delta(cc.sMaxage, value); break
      case 'no-store': cc.noStore = true; break
      case 'no-cache': {
        const fields = fieldList(value)
        if (fields === undefined) cc.noCache = true
        else cc.noCacheFields = [...(cc.noCacheFields ?? []), ...fields]
        break
      }
      case 'private': {
        const fields = fieldList(value)
        if (fields === undefined) cc.private = true
        else cc.privateFields = [...(cc.privateFields ?? []), ...fields]
        break
      }
      case 'public': cc.public = true; break
      case 'must-revalidate': cc.mustRevalidate = true; break
      case 'proxy-revalidate': cc.proxyRevalidate = true; break
      case 'must-understand': cc.mustUnderstand = true; break
      case 'no-transform': cc.noTransform = true; break
      case 'immutable': cc.immutable = true; break
      // `max-stale` alone: the client accepts any staleness (§5.2.1.2).
      case 'max-stale': cc.maxStale = value === undefined ? Infinity : parseDeltaSeconds(value); break
      case 'min-fresh': cc.minFresh = parseDeltaSeconds(value); break
      case 'only-if-cached': cc.onlyIfCached = true; break
      case 'stale-while-revalidate': cc.staleWhileRevalidate = parseDeltaSeconds(value); break
      case 'stale-if-error': cc.staleIfError = parseDeltaSeconds(value); break
      // Unknown extensions are ignored (§5.2.3).
    }
  }
  if (memo.size >= MEMO_MAX) memo.clear()
  memo.set(raw, cc)
  return cc
}

const MEMO_MAX = 512
const memo = new Map<string, CacheControl>()

/** `Pragma: no-cache` counts as `Cache-Control: no-cache` only when the request has no Cache-Control (§5.4). */
export function pragmaNoCache (pragma: string | string[] | undefined): boolean {
  if (pragma === undefined) return false
  const raw = typeof pragma === 'string' ? pragma : pragma.join(',')
  return raw.toLowerCase().split(',').some((t) => t.trim() === 'no-cache')
}
