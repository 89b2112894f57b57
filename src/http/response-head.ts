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
 * An upstream response head as the flat `[name, value, …]` list node's
 * `writeHead` takes, in the upstream's order: hop-by-hop fields dropped, our
 * hop appended to `Via` (RFC 9110 §7.6.3), `x-request-id` added when the
 * upstream did not echo one, and `x-outrider-attempts` (ours alone) when
 * given. Used when no onResponse hook needs a mutable map: one pass, no
 * intermediate object.
 */
export function responseFields (headers: HeaderMap, status: number, via: string, requestId: string, attempts: string | undefined): Array<string | string[]> {
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
    out.push(name, v)
  }
  if (!sawVia) out.push('via', via)
  if (!sawId) out.push('x-request-id', requestId)
  if (attempts !== undefined) out.push('x-outrider-attempts', attempts)
  return out
}
