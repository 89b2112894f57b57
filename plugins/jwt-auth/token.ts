import type { HeaderMap } from '../../src/plugin.ts'

/** No credentials for us: no error code in the challenge (RFC 6750 §3.1). */
export const MISSING: unique symbol = Symbol('missing')
/** Credentials that cannot be read unambiguously: 400 invalid_request (RFC 6750 §3.1). */
export const INVALID_REQUEST: unique symbol = Symbol('invalid_request')

export type Extracted = string | typeof MISSING | typeof INVALID_REQUEST

/** RFC 6750 §2.1 `b64token`: a JWS compact serialization is base64url and dots. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/

/** True when `s` starts with `lower` (ASCII letters) in any case, without allocating. */
function startsWithLower (s: string, lower: string): boolean {
  if (s.length < lower.length) return false
  for (let i = 0; i < lower.length; i++) {
    if ((s.charCodeAt(i) | 0x20) !== lower.charCodeAt(i)) return false
  }
  return true
}

/**
 * The token of an `Authorization: Bearer <token>` field (RFC 6750 §2.1). The
 * scheme is case-insensitive (RFC 9110 §11.1); another scheme (Basic …) is not
 * an error, just no bearer credentials. A repeated Authorization field, or a
 * Bearer credential that is not a b64token, is a malformed request.
 */
export function fromBearer (value: string | string[] | undefined): Extracted {
  if (value === undefined) return MISSING
  // Authorization is a singleton field (RFC 9110 §11.6.2): two are ambiguous.
  if (typeof value !== 'string') return INVALID_REQUEST
  if (!startsWithLower(value, 'bearer')) return MISSING
  if (value.length === 6) return INVALID_REQUEST
  if (value.charCodeAt(6) !== 0x20) return MISSING // e.g. "Bearerish …": another scheme
  let from = 7
  while (from < value.length && value.charCodeAt(from) === 0x20) from++
  const token = from === 7 ? value.slice(7) : value.slice(from)
  return B64TOKEN.test(token) ? token : INVALID_REQUEST
}

/** The token of a header that carries it bare. */
export function fromHeader (value: string | string[] | undefined): Extracted {
  if (value === undefined) return MISSING
  if (typeof value !== 'string') return INVALID_REQUEST
  const token = value.trim()
  return token === '' ? MISSING : token
}

/**
 * Where cookie `name` is in `header`: the start of its `name=` and the end of
 * its value, or undefined. Cookie pairs are separated by `;` and optional
 * whitespace (RFC 6265 §4.2.1); the first pair of that name wins (§5.4 orders
 * the most specific path first).
 */
function findCookie (header: string, name: string): { start: number, valueStart: number, end: number } | undefined {
  let i = 0
  while (i < header.length) {
    while (i < header.length && (header.charCodeAt(i) === 0x20 || header.charCodeAt(i) === 0x09)) i++
    let end = header.indexOf(';', i)
    if (end === -1) end = header.length
    if (header.startsWith(name, i) && header.charCodeAt(i + name.length) === 0x3d /* = */) {
      return { start: i, valueStart: i + name.length + 1, end }
    }
    i = end + 1
  }
  return undefined
}

/** The token in cookie `name` (a quoted cookie-value loses its DQUOTEs, §4.1.1). */
export function fromCookie (value: string | string[] | undefined, name: string): Extracted {
  if (value === undefined) return MISSING
  const lines = typeof value === 'string' ? [value] : value
  for (const line of lines) {
    const at = findCookie(line, name)
    if (at === undefined) continue
    let token = line.slice(at.valueStart, at.end).trim()
    if (token.length >= 2 && token.startsWith('"') && token.endsWith('"')) token = token.slice(1, -1)
    return token === '' ? MISSING : token
  }
  return MISSING
}

/** Removes every pair named `name` from the Cookie field(s) of `headers`, keeping the rest as sent. */
export function removeCookie (headers: HeaderMap, name: string): void {
  const value = headers.cookie
  if (value === undefined) return
  const prefix = `${name}=`
  const lines: string[] = []
  for (const line of typeof value === 'string' ? [value] : value) {
    if (findCookie(line, name) === undefined) { lines.push(line); continue }
    const kept = line.split(';').map((p) => p.trim()).filter((p) => p !== '' && !p.startsWith(prefix))
    // RFC 6265 §4.2.1: pairs are joined by "; ".
    if (kept.length > 0) lines.push(kept.join('; '))
  }
  if (lines.length === 0) delete headers.cookie
  else headers.cookie = lines.length === 1 ? lines[0] : lines
}
