import type { HeaderMap } from '../../src/plugin.ts'
import type { CacheControl } from './cache-control.ts'
import { currentAge, HEURISTICALLY_CACHEABLE, mustRevalidate, type StoredResponse } from './stored-response.ts'

/**
 * Statuses whose caching rules this cache implements, for `must-understand`
 * (RFC 9111 §5.2.2.3): with it, `no-store` is ignored for these and the
 * response is not stored for any other.
 */
const UNDERSTOOD: ReadonlySet<number> = new Set([...HEURISTICALLY_CACHEABLE, 302, 303, 307])

/** Why a response was not stored, for logs and tests; undefined: storable. */
export type NotStorable =
  | 'status' | 'no-store' | 'private' | 'authorization' | 'no-freshness' | 'vary-star' | 'set-cookie' | 'too-large'

/**
 * May a shared cache store this response to a GET (RFC 9111 §3, §3.5)?
 * Whether it is then worth keeping (fresh, or stale with a validator) is the
 * caller's question.
 */
export function storable (status: number, res: HeaderMap, resCC: CacheControl, reqCC: CacheControl, authorized: boolean, setCookie: 'bypass' | 'strip' | 'store', partial = false): NotStorable | undefined {
  // A 206 is kept only as a part, for range requests (the caller says so:
  // §3.3); 304s only ever update what is stored; 1xx never reach here;
  // 6xx–9xx have no class (RFC 9110 §15), so no caching rules.
  if ((status === 206) !== partial || status === 304 || status < 200 || status > 599) return 'status'
  if (resCC.mustUnderstand) {
    if (!UNDERSTOOD.has(status)) return 'status'
  } else if (resCC.noStore) {
    return 'no-store'
  }
  if (reqCC.noStore) return 'no-store'
  if (resCC.private) return 'private'
  // §3.5: a response to an authenticated request is shared only when the origin said so.
  if (authorized && !sharedWhenAuthenticated(resCC)) return 'authorization'
  if (res.vary !== undefined && String(res.vary).split(',').some((v) => v.trim() === '*')) return 'vary-star'
  if (res['set-cookie'] !== undefined && setCookie === 'bypass') return 'set-cookie'
  if (resCC.public || explicitLifetime(res, resCC)) return undefined
  if (!HEURISTICALLY_CACHEABLE.has(status)) return 'no-freshness'
  // No lifetime, no Last-Modified for a heuristic, no validator to revalidate
  // with: such a copy could never be reused, so it is not worth its memory.
  if (res['last-modified'] === undefined && res.etag === undefined) return 'no-freshness'
  return undefined
}

/** RFC 9111 §3.5: directives that let a shared cache reuse a response to an authenticated request for others. */
export function sharedWhenAuthenticated (cc: CacheControl): boolean {
  return cc.public || cc.mustRevalidate || cc.sMaxage !== undefined
}

/** Does the response give its freshness lifetime itself (s-maxage, max-age or Expires), no heuristic needed? */
export function explicitLifetime (res: HeaderMap, resCC: CacheControl): boolean {
  return resCC.maxAge !== undefined || resCC.sMaxage !== undefined || res.expires !== undefined
}

/** RFC 5861 §4: the failures stale-if-error may hide. */
export function isServerFailure (status: number): boolean {
  return status === 500 || status === 502 || status === 503 || status === 504
}

/** Methods that never invalidate (RFC 9110 §9.2.1 safe methods); every other one does on success (RFC 9111 §4.4). */
export const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE'])

/**
 * A stored response for this request that needs no trip upstream, or why
 * not: 'revalidate' (stale or must be validated), 'swr' (stale, may be
 * served while a refresh runs).
 */
export function usable (e: StoredResponse, reqCC: CacheControl, noCache: boolean, now: number): 'fresh' | 'stale-ok' | 'swr' | 'revalidate' {
  if (noCache || e.cc.noCache) return 'revalidate'
  const age = currentAge(e, now)
  const left = e.lifetime - age
  if (reqCC.maxAge !== undefined && !Number.isNaN(reqCC.maxAge) && age > reqCC.maxAge) return 'revalidate'
  if (left > 0) {
    if (reqCC.minFresh !== undefined && !Number.isNaN(reqCC.minFresh) && left < reqCC.minFresh) return 'revalidate'
    return 'fresh'
  }
  if (mustRevalidate(e.cc)) return 'revalidate'
  const stale = -left
  if (reqCC.maxStale !== undefined && !Number.isNaN(reqCC.maxStale) && stale <= reqCC.maxStale) return 'stale-ok'
  const swr = e.cc.staleWhileRevalidate
  if (swr !== undefined && !Number.isNaN(swr) && stale <= swr) return 'swr'
  return 'revalidate'
}

/**
 * May `e` stand in for a failure now? When the upstream could not be
 * reached at all (a failure made here) the cache is "disconnected" and may
 * serve stale (RFC 9111 §4.2.4); an upstream's own 5xx needs RFC 5861
 * stale-if-error from the response or the request. Never against
 * must-revalidate, proxy-revalidate, s-maxage or no-cache.
 */
export function staleIfError (e: StoredResponse, reqCC: CacheControl, now: number, disconnected: boolean): boolean {
  if (mustRevalidate(e.cc) || e.cc.noCache) return false
  if (disconnected) return true
  const stale = currentAge(e, now) - e.lifetime
  const window = Math.max(e.cc.staleIfError ?? -1, reqCC.staleIfError ?? -1)
  return !Number.isNaN(window) && window >= 0 && stale <= window
}
