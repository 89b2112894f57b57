import type { HeaderMap } from '../plugin.ts'
import { HOP_BY_HOP } from './hop-by-hop.ts'

/**
 * The extra field names a `Connection` value lists (RFC 9110 §7.6.1), lower
 * case: they are hop-by-hop for this message only. Never the framing fields
 * (a peer must not strip how the message we relay is delimited), never names
 * that are hop-by-hop anyway. undefined for the usual `keep-alive`/`close`,
 * without splitting anything.
 */
export function connectionListed (value: string | string[] | undefined): string[] | undefined {
  if (value === undefined || value === 'keep-alive' || value === 'close') return undefined
  let listed: string[] | undefined
  for (const token of String(value).toLowerCase().split(',')) {
    const t = token.trim()
    if (t === '' || t === 'close' || t === 'content-length' || t === 'transfer-encoding' || HOP_BY_HOP.has(t)) continue
    if (listed === undefined) listed = [t]
    else listed.push(t)
  }
  return listed
}

/**
 * `headers` without hop-by-hop fields, as a new object. The source is never
 * `delete`d from: V8 turns an object that loses properties into a slow
 * dictionary, and every later pass over it (node's writeHead among them) pays.
 */
export function endToEnd (headers: HeaderMap): HeaderMap {
  const listed = connectionListed(headers.connection)
  const out: HeaderMap = {}
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || (listed !== undefined && listed.includes(name))) continue
    const v = headers[name]
    if (v !== undefined) out[name] = v
  }
  return out
}

/**
 * The fields node's HTTP/2 layer holds to one value (`kSingleValueFields` in
 * its lib/internal/http2/util.js, node 24): handed two, its writeHead and
 * sendTrailers throw ERR_HTTP2_HEADER_SINGLE_VALUE instead of sending.
 */
const H2_SINGLE_VALUE: ReadonlySet<string> = new Set([
  'access-control-allow-credentials', 'access-control-max-age', 'access-control-request-method',
  'age', 'authorization', 'content-encoding', 'content-language', 'content-length', 'content-location',
  'content-md5', 'content-range', 'content-type', 'date', 'dnt', 'etag', 'expires', 'from', 'host',
  'if-match', 'if-modified-since', 'if-none-match', 'if-range', 'if-unmodified-since', 'last-modified',
  'location', 'max-forwards', 'proxy-authorization', 'range', 'referer', 'retry-after', 'tk',
  'upgrade-insecure-requests', 'user-agent', 'x-content-type-options',
])

/**
 * The value an HTTP/2 client gets for `name`: the first of repeated values
 * of a single-value field, else `v` as is. An upstream may repeat
 * Content-Type or ETag (undici hands them over as an array); HTTP/1.1
 * clients get every line, as from nginx or Envoy, and read the first, as
 * node's own parsers do. Joining them with ", " (RFC 9110 §5.3) would make
 * one field of a grammar that allows no list (`text/plain, text/html`).
 */
function h2Value (name: string, v: string | string[]): string | string[] {
  return typeof v === 'string' || !H2_SINGLE_VALUE.has(name) ? v : v[0] ?? ''
}

/**
 * A head or trailers map an HTTP/2 client can be sent, in place (see
 * h2Value). A value is replaced, never deleted (see endToEnd). Allocates
 * nothing when no value is an array.
 */
export function singleValued (headers: HeaderMap): HeaderMap {
  for (const name in headers) {
    const v = headers[name]
    if (v !== undefined && typeof v !== 'string') headers[name] = h2Value(name, v)
  }
  return headers
}

/**
 * An upstream response head as the flat `[name, value, …]` list node's
 * `writeHead` takes, in the upstream's order: hop-by-hop fields dropped, our
 * hop appended to `Via` (RFC 9110 §7.6.3), `x-request-id` added when the
 * upstream did not echo one, and `x-outrider-attempts` (ours alone) when
 * given; for an HTTP/2 client (`h2`), repeated single-value fields folded
 * (see h2Value). Used when no onResponse hook needs a mutable map: one pass,
 * no intermediate object.
 */
export function responseFields (headers: HeaderMap, status: number, via: string, requestId: string, attempts: string | undefined, h2: boolean): Array<string | string[]> {
  const listed = connectionListed(headers.connection)
  const out: Array<string | string[]> = []
  let sawVia = false
  let sawId = false
  for (const name in headers) {
    const v = headers[name]
    if (v === undefined || HOP_BY_HOP.has(name) || (listed !== undefined && listed.includes(name))) continue
    if (name === 'via') {
      sawVia = true
      out.push(name, `${typeof v === 'string' ? v : v.join(', ')}, ${via}`)
      continue
    }
    // RFC 9110 §8.6: a 204 MUST NOT carry Content-Length. undici already read
    // no body; a client trusting a stray length would eat the next response.
    if (status === 204 && name === 'content-length') continue
    if (name === 'x-request-id') sawId = true
    else if (attempts !== undefined && name === 'x-outrider-attempts') continue
    out.push(name, h2 && typeof v !== 'string' ? h2Value(name, v) : v)
  }
  if (!sawVia) out.push('via', via)
  if (!sawId) out.push('x-request-id', requestId)
  if (attempts !== undefined) out.push('x-outrider-attempts', attempts)
  return out
}
