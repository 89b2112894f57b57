import type { HeaderMap } from '../../src/plugin.ts'
import { parseHttpDate } from '../../src/http/http-date.ts'
import type { StoredResponse } from './stored-response.ts'

function opaque (tag: string): string {
  const t = tag.trim()
  return t.startsWith('W/') ? t.slice(2) : t
}

/**
 * If-None-Match against a stored ETag with the weak comparison (RFC 9110
 * §13.1.2: If-None-Match always compares weakly). `*` matches any stored
 * representation.
 */
export function noneMatchHits (ifNoneMatch: string, etag: string | undefined): boolean {
  if (ifNoneMatch.trim() === '*') return true
  if (etag === undefined) return false
  const want = opaque(etag)
  // Entity tags may contain commas only inside quotes; split on commas outside them.
  let inQuote = false
  let start = 0
  for (let i = 0; i <= ifNoneMatch.length; i++) {
    const c = ifNoneMatch[i]
    if (c === '"') inQuote = !inQuote
    else if ((c === ',' && !inQuote) || i === ifNoneMatch.length) {
      if (opaque(ifNoneMatch.slice(start, i)) === want) return true
      start = i + 1
    }
  }
  return false
}

/**
 * Would the client's own conditional GET/HEAD be answered 304 by the stored
 * response (RFC 9111 §4.3.2, RFC 9110 §13.2.2)? If-None-Match takes
 * precedence; If-Modified-Since is compared with Last-Modified, else Date,
 * else the time the response was received.
 */
export function notModified (req: HeaderMap, e: StoredResponse): boolean {
  const inm = req['if-none-match']
  if (inm !== undefined) return noneMatchHits(typeof inm === 'string' ? inm : inm.join(','), e.etag)
  const ims = req['if-modified-since']
  if (ims === undefined) return false
  const since = parseHttpDate(typeof ims === 'string' ? ims : ims[0])
  if (since === undefined) return false
  const modified = parseHttpDate(e.lastModified) ?? e.dateValue
  return modified <= since
}

/**
 * Does a 304's ETag name the stored response (RFC 9111 §4.3.4)? A strong
 * tag identifies only a stored response with the same strong tag: 'strong'.
 * A weak one, compared weakly, any with the same opaque tag: 'weak', and the
 * stored bytes may be another encoding of it. No ETag on either side (the
 * question was If-Modified-Since): nothing says it is another one, 'strong'.
 * Undefined: the 304 is about another representation.
 */
export function sameValidator (fromNotModified: string | string[] | undefined, stored: string | undefined): 'strong' | 'weak' | undefined {
  if (fromNotModified === undefined || stored === undefined) return 'strong'
  const tag = (typeof fromNotModified === 'string' ? fromNotModified : fromNotModified[0] ?? '').trim()
  if (!tag.startsWith('W/')) return !stored.startsWith('W/') && stored.trim() === tag ? 'strong' : undefined
  return opaque(stored) === tag.slice(2) ? 'weak' : undefined
}

/** Does the client ask a conditional question at all? */
export function isConditional (req: HeaderMap): boolean {
  return req['if-none-match'] !== undefined || req['if-modified-since'] !== undefined
}

/**
 * The fields a 304 carries (RFC 9110 §15.4.5): those a cache needs to update
 * its copy, plus validators; not the representation's other metadata.
 */
export const NOT_MODIFIED_FIELDS: readonly string[] = ['cache-control', 'content-location', 'date', 'etag', 'expires', 'vary', 'last-modified', 'via']
