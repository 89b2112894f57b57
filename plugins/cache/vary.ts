import type { HeaderMap } from '../../src/plugin.ts'
import { negotiate, type Coding } from '../../src/http/accept-encoding.ts'

/** Stands for "the request did not have this field", which never equals any value it can have. */
const ABSENT = '\u0000'

const CODINGS: readonly Coding[] = ['br', 'zstd', 'gzip', 'identity']

/** The lower-case field names of a `Vary` header; `['*']` for `Vary: *`. */
export function varyNames (vary: string | string[] | undefined): string[] {
  if (vary === undefined) return []
  const raw = typeof vary === 'string' ? vary : vary.join(',')
  const names: string[] = []
  for (const part of raw.split(',')) {
    const name = part.trim().toLowerCase()
    if (name === '*') return ['*']
    if (name !== '' && !names.includes(name)) names.push(name)
  }
  // Sorted: `Vary: a, b` and `Vary: b, a` select the same way.
  return names.sort()
}

/**
 * A request field's value normalised for matching (RFC 9111 §4.1): list
 * members trimmed and joined with ", " (so `a,b` and `a, b` match), and
 * Accept-Language in lower case. With
 * `acceptEncoding` on, Accept-Encoding is reduced to the coding a
 * compressor would choose, so every client that would get the same bytes
 * shares one variant instead of one per spelling of the header.
 */
export function varyValue (headers: HeaderMap, name: string, normaliseAcceptEncoding: boolean): string {
  const v = headers[name]
  if (v === undefined) return ABSENT
  if (name === 'accept-encoding' && normaliseAcceptEncoding) return negotiate(v, CODINGS) ?? 'identity'
  let raw = typeof v === 'string' ? v : v.join(',')
  // Language tags are case-insensitive (RFC 5646 §2.1.1): `en-GB` and `en-gb`
  // ask the same question. Their order is left alone: some origins read it
  // as priority among equal q-values (RFC 9110 §12.5.4).
  if (name === 'accept-language') raw = raw.toLowerCase()
  if (raw.indexOf(',') === -1) return raw.trim()
  return raw.split(',').map((s) => s.trim()).join(', ')
}

export function varyValues (headers: HeaderMap, names: readonly string[], normaliseAcceptEncoding: boolean): string[] {
  const out = new Array<string>(names.length)
  for (let i = 0; i < names.length; i++) out[i] = varyValue(headers, names[i] as string, normaliseAcceptEncoding)
  return out
}

/** Does the stored variant match this request's fields? */
export function varyMatches (names: readonly string[], values: readonly string[], headers: HeaderMap, normaliseAcceptEncoding: boolean): boolean {
  for (let i = 0; i < names.length; i++) {
    if (varyValue(headers, names[i] as string, normaliseAcceptEncoding) !== values[i]) return false
  }
  return true
}
