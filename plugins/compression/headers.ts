import type { HeaderMap } from '../../src/plugin.ts'
import { appendVary } from '../../src/http/vary.ts'

/** One string for a field that may have been repeated. */
function joined (v: string | string[]): string {
  return typeof v === 'string' ? v : v.join(', ')
}

/**
 * Adds `Accept-Encoding` to `Vary` once: kept as it is when already listed
 * (field names compare case-insensitively) or when `Vary: *` already varies
 * on everything (RFC 9110 §12.5.5). The upstream's list is extended, not replaced.
 *
 * @example
 * const h = { vary: 'Origin' }
 * varyOnAcceptEncoding(h) // h.vary === 'Origin, Accept-Encoding'
 */
export function varyOnAcceptEncoding (h: HeaderMap): void {
  appendVary(h, 'Accept-Encoding')
}

/**
 * A coded body is not the bytes the upstream's strong validator names
 * (RFC 9110 §8.8.1), so its ETag becomes weak: `"x"` → `W/"x"`, as nginx does.
 * If-None-Match uses weak comparison (§13.1.2), so a revalidation still gets
 * a 304 from an upstream that only knows `"x"`. An ETag that is not a valid
 * entity-tag is dropped: no validator is better than a wrong one.
 */
export function weakenEtag (h: HeaderMap): void {
  const etag = h.etag
  if (etag === undefined) return
  if (typeof etag !== 'string') { delete h.etag; return }
  if (etag.startsWith('W/')) return
  if (etag.length >= 2 && etag.charCodeAt(0) === 34 && etag.charCodeAt(etag.length - 1) === 34) h.etag = `W/${etag}`
  else delete h.etag
}

/**
 * Does If-None-Match name the weak form of the strong `etag`? Then the
 * client (or a cache) holds the coded variant we weakened, and a 304 for it
 * MUST say `W/"x"` too, or the stored response it refreshes would not be
 * identified (RFC 9111 §4.3.4). An entity-tag cannot contain `"`, so a
 * substring test cannot match across two tags.
 */
export function namesWeakForm (ifNoneMatch: string | string[] | undefined, etag: string | string[] | undefined): boolean {
  if (ifNoneMatch === undefined || typeof etag !== 'string' || etag.startsWith('W/') || etag.charCodeAt(0) !== 34) return false
  return joined(ifNoneMatch).includes(`W/${etag}`)
}

/**
 * `Cache-Control: no-transform` (RFC 9111 §5.2.2.6): a proxy MUST NOT
 * transform the content (RFC 9110 §7.7), and a content coding is a transformation.
 */
export function noTransform (cacheControl: string | string[] | undefined): boolean {
  if (cacheControl === undefined) return false
  const v = joined(cacheControl)
  // Cheap rejection first: nearly every Cache-Control lacks the substring.
  if (!v.toLowerCase().includes('no-transform')) return false
  let start = 0
  while (start < v.length) {
    let end = v.indexOf(',', start)
    if (end === -1) end = v.length
    const eq = v.indexOf('=', start)
    const name = v.slice(start, eq !== -1 && eq < end ? eq : end).trim().toLowerCase()
    if (name === 'no-transform') return true
    start = end + 1
  }
  return false
}

/** The declared Content-Length, or -1 when absent or unusable. */
export function contentLength (h: HeaderMap): number {
  const v = h['content-length']
  if (typeof v !== 'string' || v === '') return -1
  const n = Number(v)
  return Number.isSafeInteger(n) && n >= 0 ? n : -1
}

/**
 * `Content-Encoding` says the body is coded already (identity is not a
 * content coding, RFC 9110 §8.4.1, but some servers send it anyway).
 */
export function isEncoded (contentEncoding: string | string[] | undefined): boolean {
  if (contentEncoding === undefined) return false
  const v = joined(contentEncoding).trim()
  return v !== '' && v.toLowerCase() !== 'identity'
}
