import type { HeaderMap } from '../../src/plugin.ts'
import { parseHttpDate } from '../../src/http/http-date.ts'
import { parseCacheControl, parseDeltaSeconds, type CacheControl } from './cache-control.ts'
import { parseTargeted } from './targeted.ts'

/**
 * One stored response (one variant of one URL) and the facts RFC 9111 §4.2
 * computes with, fixed when it was stored (or refreshed by a 304).
 */
export interface StoredResponse {
  /** Primary key: `host/path?query`. */
  readonly key: string
  status: number
  /** End-to-end headers as they will be served, without Age. */
  headers: HeaderMap
  readonly body: Buffer
  /** The request's `Vary` field names (lower-case) and their normalised values then. */
  readonly varyNames: readonly string[]
  readonly varyValues: readonly string[]
  /** When the request that got this response was sent, and when the response came (ms since the epoch). */
  requestTime: number
  responseTime: number
  /** Derived from headers (recomputed by `refresh`). */
  cc: CacheControl
  dateValue: number
  ageValue: number
  /** Freshness lifetime in seconds (0: stale at once, needs validation). */
  lifetime: number
  etag: string | undefined
  lastModified: string | undefined
  tags: readonly string[]
  /** Bytes it costs in memory (body + headers, roughly). */
  size: number
}

/** RFC 9110 §15.1: statuses that are cacheable by default (heuristic freshness may apply). */
export const HEURISTICALLY_CACHEABLE: ReadonlySet<number> = new Set([200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501])

export interface FreshnessOptions {
  /** Fraction of (Date − Last-Modified) used as heuristic lifetime (typically 0.1). */
  heuristicFraction: number
  /** Upper bound of a heuristic lifetime, seconds. */
  heuristicMax: number
  /** Targeted cache-control fields honoured, in order (RFC 9213), e.g. `cdn-cache-control`. */
  targeted: readonly string[]
}

/**
 * The directives that govern this cache: the first valid targeted field
 * (which then also overrides Expires), else Cache-Control.
 */
export function effectiveCacheControl (headers: HeaderMap, targeted: readonly string[]): { cc: CacheControl, targeted: boolean } {
  for (const name of targeted) {
    const cc = parseTargeted(headers[name])
    if (cc !== undefined) return { cc, targeted: true }
  }
  return { cc: parseCacheControl(headers['cache-control']), targeted: false }
}

function first (v: string | string[] | undefined): string | undefined {
  return typeof v === 'string' ? v : v?.[0]
}

/**
 * The freshness lifetime of a response in a shared cache (RFC 9111 §4.2.1):
 * s-maxage, then max-age, then Expires − Date, then a heuristic, which is
 * only ever based on Last-Modified (a response with no freshness information
 * and no Last-Modified is never served without validation).
 */
export function freshnessLifetime (status: number, headers: HeaderMap, cc: CacheControl, dateValue: number, opts: FreshnessOptions, targeted = false): number {
  if (cc.sMaxage !== undefined) return Number.isNaN(cc.sMaxage) ? 0 : cc.sMaxage
  if (cc.maxAge !== undefined) return Number.isNaN(cc.maxAge) ? 0 : cc.maxAge
  const expires = targeted ? undefined : headers.expires
  if (targeted) return 0
  if (expires !== undefined) {
    // Several Expires lines, or an invalid date (`0` above all): already expired (§5.3).
    if (typeof expires !== 'string') return 0
    const t = parseHttpDate(expires)
    if (t === undefined) return 0
    return Math.max(0, Math.floor((t - dateValue) / 1000))
  }
  if (!HEURISTICALLY_CACHEABLE.has(status) && !cc.public) return 0
  const lm = parseHttpDate(first(headers['last-modified']))
  if (lm === undefined || lm > dateValue) return 0
  return Math.min(opts.heuristicMax, Math.floor((dateValue - lm) / 1000 * opts.heuristicFraction))
}

/** The Age field's value (§5.1): the first member, a non-negative integer, else ignored (0). */
export function ageFieldValue (age: string | string[] | undefined): number {
  if (age === undefined) return 0
  const raw = (typeof age === 'string' ? age : age[0] ?? '').split(',')[0]?.trim()
  const v = parseDeltaSeconds(raw)
  return Number.isNaN(v) ? 0 : v
}

/** Recomputes the derived facts after `headers` or the times changed. */
export function refresh (e: StoredResponse, ageHeader: string | string[] | undefined, opts: FreshnessOptions): void {
  const eff = effectiveCacheControl(e.headers, opts.targeted)
  e.cc = eff.cc
  const date = parseHttpDate(first(e.headers.date))
  // No usable Date: the time we received it stands in (§4.2.3).
  e.dateValue = date ?? e.responseTime
  e.ageValue = ageFieldValue(ageHeader)
  e.lifetime = freshnessLifetime(e.status, e.headers, e.cc, e.dateValue, opts, eff.targeted)
  e.etag = first(e.headers.etag)
  e.lastModified = first(e.headers['last-modified'])
}

/** current_age of RFC 9111 §4.2.3, in (fractional) seconds. */
export function currentAge (e: StoredResponse, now: number): number {
  const apparentAge = Math.max(0, e.responseTime - e.dateValue) / 1000
  const responseDelay = (e.responseTime - e.requestTime) / 1000
  const correctedAgeValue = e.ageValue + responseDelay
  const correctedInitialAge = Math.max(apparentAge, correctedAgeValue)
  const residentTime = (now - e.responseTime) / 1000
  return correctedInitialAge + residentTime
}

/** Stale responses this cache may never serve without validation (§4.2.4, shared cache). */
export function mustRevalidate (cc: CacheControl): boolean {
  return cc.mustRevalidate || cc.proxyRevalidate || cc.sMaxage !== undefined
}
