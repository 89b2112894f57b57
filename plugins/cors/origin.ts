/**
 * Origin allow-lists (Fetch §3.2.5), compiled once per snapshot into a Set of
 * exact origins and a few prefix/suffix pairs, so matching is a hash lookup and
 * a couple of string comparisons: no regex per request.
 *
 * Browsers send an origin's ASCII serialization (HTML §7.1.1.5: lower-case
 * scheme and punycode host, no default port, no path), so the config is
 * normalized to that form and the request's value is compared as it comes.
 */

/** A `scheme://*.domain[:port]` entry: `*` stands for one or more DNS labels. */
interface Pattern {
  /** `https://` */
  readonly prefix: string
  /** `.example.com` or `.example.com:8443` */
  readonly suffix: string
}

/** What an `allowOrigins` list compiles to. */
export interface OriginMatcher {
  /** `*` was configured: every origin is allowed. */
  readonly any: boolean
  /** True when `origin` (the request's `Origin` value) is allowed. */
  allows (origin: string): boolean
}

/**
 * Normalizes one config entry to an origin's serialization, or returns a
 * message saying what was expected. `*` and patterns are kept as patterns.
 *
 * @example
 * normalizeOrigin('HTTPS://App.Example.com:443') // 'https://app.example.com'
 * normalizeOrigin('https://*.Example.com')       // 'https://*.example.com'
 * normalizeOrigin('https://example.com/app')     // an error message
 */
export function normalizeOrigin (entry: string): { origin: string } | { error: string } {
  if (entry === '*') return { origin: '*' }
  // Sandboxed documents, file: pages and redirects all send `Origin: null`
  // (Fetch §3.1): allowing it would allow them all.
  if (entry === 'null') return { error: 'a real origin: "null" is sent by every sandboxed or opaque document and identifies nobody' }
  const star = entry.indexOf('*')
  const wildcard = star !== -1
  if (wildcard) {
    const sep = entry.indexOf('://')
    if (sep === -1 || star !== sep + 3 || entry[star + 1] !== '.' || entry.indexOf('*', star + 1) !== -1) {
      return { error: 'a wildcard only as the whole leftmost label, as in https://*.example.com' }
    }
  }
  // Stand a label in for `*` so the URL parser validates and normalizes the rest.
  let url: URL
  try {
    url = new URL(wildcard ? entry.replace('*', 'x') : entry)
  } catch {
    return { error: 'an origin such as https://app.example.com (scheme://host[:port])' }
  }
  if (url.origin === 'null' || url.username !== '' || url.password !== '') {
    return { error: 'an http(s) origin such as https://app.example.com' }
  }
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '' || entry.endsWith('/')) {
    return { error: 'an origin without a path, query or trailing slash (browsers send https://app.example.com)' }
  }
  if (!wildcard) return { origin: url.origin }
  // `*.com` would allow every site in a TLD: demand at least a registrable-looking domain.
  if (url.hostname.split('.').length < 3) {
    return { error: 'a wildcard over a domain with at least two labels, as in https://*.example.com' }
  }
  return { origin: `${url.protocol}//*${url.origin.slice(url.protocol.length + 3)}` }
}

/**
 * Compiles normalized entries (the schema's output).
 *
 * @example
 * const m = compileOrigins(['https://app.example.com', 'https://*.example.org'])
 * m.allows('https://a.b.example.org') // true
 * m.allows('https://example.org')     // false: `*` needs at least one label
 */
export function compileOrigins (entries: readonly string[]): OriginMatcher {
  if (entries.includes('*')) return { any: true, allows: () => true }
  const exact = new Set<string>()
  const patterns: Pattern[] = []
  for (const e of entries) {
    const star = e.indexOf('*')
    if (star === -1) exact.add(e)
    else patterns.push({ prefix: e.slice(0, star), suffix: e.slice(star + 1) })
  }
  return {
    any: false,
    allows (origin: string): boolean {
      if (exact.has(origin)) return true
      for (let i = 0; i < patterns.length; i++) {
        const { prefix, suffix } = patterns[i] as Pattern
        if (origin.length > prefix.length + suffix.length &&
          origin.startsWith(prefix) && origin.endsWith(suffix) &&
          isLabels(origin, prefix.length, origin.length - suffix.length)) return true
      }
      return false
    },
  }
}

/**
 * True when `s[from, to)` is one or more dot-separated LDH labels (lower-case,
 * as browsers serialize hosts). Rules out anything that could smuggle a
 * different host or a port into the wildcard: `/`, `@`, `:`, `#`, empty labels.
 */
function isLabels (s: string, from: number, to: number): boolean {
  let labelStart = from
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i)
    if (c === 0x2e) { // '.'
      if (i === labelStart) return false
      labelStart = i + 1
    } else if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d)) {
      return false
    }
  }
  return to > labelStart
}
