import type { Value } from '../normalize.ts'
import { found, type Part, type RequestFacts, type RequestRule, type ValueRule } from '../rule.ts'

/**
 * Protocol anomalies: requests no conforming client sends, or that the
 * proxy and the application could read differently — NUL and control bytes,
 * overlong UTF-8, broken or multiple percent-encoding, CRLF in a value,
 * conflicting framing headers, overlong or too many headers, bodies that do
 * not parse as declared. node's parser and the listener already refuse most
 * bad framing; these rules keep the WAF's verdict self-contained (and count
 * what an attacker tried) whatever sits in front of it.
 */

const CONTROL = /[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]/
const LINE_BREAK = /[\r\n]/
const INVALID_PERCENT = /%(?![0-9a-fA-F]{2}|[uU][0-9a-fA-F]{4})/
/** `%25` followed by the encoding of a character that matters to an attack. */
const DOUBLE_ENCODED = /%25(?:2[25ef7]|3[bcde]|5c|00|0[ad]|60|7c|2[89]|c[01]|e0)/i
/** Response headers a splitting attack sets, and a status line (`HTTP/1.1`). */
const INJECTED = String.raw`(?:set-cookie|location|content-(?:type|length|disposition)|refresh|transfer-encoding|x-xss-protection|access-control-allow-[a-z]{1,20}|http\/\d)\s{0,4}[:/]`
const HEADER_INJECTION = new RegExp(String.raw`[\r\n]\s{0,4}` + INJECTED)
/**
 * In a body, text has lines of its own ("Location: Berlin", "Content-Type:
 * fragile goods"): there a line counts when no prose starts so, or when its
 * value has the header's own shape (a URL, a delay, a media type, a disposition).
 */
const BODY_INJECTED = String.raw`(?:set-cookie|content-length|transfer-encoding|x-xss-protection|access-control-allow-[a-z]{1,20})\s{0,4}:|http\/\d(?:\.\d)?\s\d{3}\b|location\s{0,4}:\s{0,4}(?:[a-z][a-z0-9+.-]{0,20}:\/\/|\/|(?:javascript|data|vbscript):)|refresh\s{0,4}:\s{0,4}\d{1,9}\s{0,4}[;,]|content-type\s{0,4}:\s{0,4}[a-z]{1,20}\/[\w.+-]{1,80}|content-disposition\s{0,4}:\s{0,4}(?:attachment|inline)\b`
const BODY_HEADER_INJECTION = new RegExp(String.raw`[\r\n]\s{0,4}(?:` + BODY_INJECTED + ')')
const ANY_HEADER_LINE = /[\r\n][a-z0-9-]{2,40}\s{0,4}:/
/**
 * What follows a line break that splits a message: a header an attacker sets,
 * a request line or Host (request splitting), a status line (response splitting).
 */
const SPLIT_AT_START = new RegExp('^(?:' + INJECTED + String.raw`|host\s{0,4}:|(?:get|post|put|delete|head|options|patch|connect|trace)\s\S{1,2048}\shttp\/\d|http\/\d(?:\.\d)?\s\d{3}\b)`)
const NOT_LATIN1 = /[^\x00-\xff]/
const BAD_CHARSET = /charset\s{0,4}=\s{0,4}["']?(?:utf-?7|utf-?16|utf-?32|ucs-?2|ucs-?4|ibm\d{2,4}|cp0?37|cp500|cp875|cp1026|cp1140|ebcdic|x-mac-)/
const PATH_CHARS = /[^a-zA-Z0-9\-._~!$&'()*+,;=:@%/]/
const NUMERIC_HOST = /^(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?$|^\[[0-9a-f:.]+\](?::\d{1,5})?$/i

function nul (v: Value, part: Part): string | undefined {
  if (part.location === 'header' || part.file === 'content') return undefined
  const i = v.decoded.indexOf('\0')
  return i === -1 ? undefined : excerptAround(v.decoded, i)
}

function excerptAround (s: string, i: number): string {
  return s.slice(Math.max(0, i - 16), i + 16)
}

function overlong (v: Value, part: Part): string | undefined {
  return part.urlEncoded && v.overlongEncoding ? v.raw.slice(0, 64) : undefined
}

function invalidPercent (v: Value, part: Part): string | undefined {
  return part.urlEncoded ? found(INVALID_PERCENT, v.raw) : undefined
}

function doubleEncoded (v: Value, part: Part): string | undefined {
  return part.urlEncoded && v.decodeRounds >= 2 ? found(DOUBLE_ENCODED, v.raw) : undefined
}

function multipleEncoding (v: Value, part: Part): string | undefined {
  return part.urlEncoded && v.decodeRounds >= 2 ? v.raw.slice(0, 64) : undefined
}

function control (v: Value, part: Part): string | undefined {
  if (part.file === 'content') return undefined
  return found(CONTROL, v.decoded)
}

function crlf (v: Value, part: Part): string | undefined {
  const s = v.text
  if (s.indexOf('\n') !== -1 || s.indexOf('\r') !== -1) {
    const r = part.location === 'body' ? found(BODY_HEADER_INJECTION, s) : found(HEADER_INJECTION, s) ?? found(ANY_HEADER_LINE, s)
    if (r !== undefined) return r
  }
  const d = v.decoded
  return NOT_LATIN1.test(d) ? wideLineBreak(d) : undefined
}

/**
 * A CR LF whose LF is a wide character with low byte LF (嘍嘊 is U+560D
 * U+560A), then what splits a message. A client that writes a string as
 * latin1, one byte per UTF-16 unit (Node's http before 10, CVE-2018-12116),
 * puts a real line break on the wire, and writes what follows by low bytes
 * too. Only the pair, and only what splits: 上 (U+4E0A) and 不 (U+4E0D) are
 * among the commonest Chinese characters ("赶不上10:30" is a missed train),
 * and a real LF after 對 or č (low byte CR) is an ordinary line break.
 */
function wideLineBreak (d: string): string | undefined {
  for (let i = 0; i + 1 < d.length; i++) {
    if ((d.charCodeAt(i) & 0xff) !== 0x0d) continue
    const lf = d.charCodeAt(i + 1)
    if ((lf & 0xff) !== 0x0a || lf <= 0xff) continue
    if (SPLIT_AT_START.test(lowBytes(d.slice(i + 2, i + 2100)).toLowerCase())) return d.slice(i, i + 64)
  }
  return undefined
}

/** `s` as a latin1 writer puts it on the wire: each character by its low byte. */
function lowBytes (s: string): string {
  if (!NOT_LATIN1.test(s)) return s
  let out = ''
  for (let i = 0; i < s.length; i++) out += String.fromCharCode(s.charCodeAt(i) & 0xff)
  return out
}

function framing (r: RequestFacts): string | undefined {
  let cl = 0
  let te = 0
  let host = 0
  for (const [name, value] of r.headers) {
    if (name === 'content-length') {
      if (!/^\d{1,15}$/.test(value.trim())) return `Content-Length: ${value}`
      cl++
    } else if (name === 'transfer-encoding') {
      te++
      if (value.trim().toLowerCase() !== 'chunked') return `Transfer-Encoding: ${value}`
    } else if (name === 'host') {
      host++
    }
  }
  if (cl > 0 && te > 0) return 'Content-Length and Transfer-Encoding'
  if (cl > 1) return 'repeated Content-Length'
  if (te > 1) return 'repeated Transfer-Encoding'
  if (host > 1) return 'repeated Host'
  return undefined
}

function headerLength (r: RequestFacts): string | undefined {
  for (const [name, value] of r.headers) if (value.length > r.limits.headerLength) return `${name}: ${value.length} characters`
  return undefined
}

function headerCount (r: RequestFacts): string | undefined {
  return r.headers.length > r.limits.headerCount ? `${r.headers.length} headers` : undefined
}

function argCount (r: RequestFacts): string | undefined {
  return r.argCount > r.limits.args ? `${r.argCount} parameters` : undefined
}

function method (r: RequestFacts): string | undefined {
  return r.method === 'TRACE' || r.method === 'TRACK' || r.method === 'DEBUG' ? r.method : undefined
}

function numericHost (r: RequestFacts): string | undefined {
  for (const [name, value] of r.headers) if (name === 'host') return NUMERIC_HOST.test(value) ? value : undefined
  return undefined
}

function noContentType (r: RequestFacts): string | undefined {
  return r.hasBody && r.contentType === undefined ? 'body without Content-Type' : undefined
}

function rangeAbuse (v: Value): string | undefined {
  const s = v.raw
  let commas = 0
  for (let i = s.indexOf(','); i !== -1; i = s.indexOf(',', i + 1)) if (++commas >= 10) return s.slice(0, 64)
  return undefined
}

const ARGS = ['path', 'query', 'body', 'cookie'] as const

export const protocolRules: ReadonlyArray<ValueRule | RequestRule> = [
  { kind: 'value', id: 1001, family: 'protocol', severity: 'critical', paranoia: 1, where: ARGS, description: 'NUL byte in the path or a parameter', match: nul },
  { kind: 'value', id: 1002, family: 'protocol', severity: 'critical', paranoia: 1, where: ARGS, description: 'Overlong UTF-8 or %u encoding (evasion)', match: overlong },
  { kind: 'value', id: 1003, family: 'protocol', severity: 'warning', paranoia: 1, where: ['path', 'query', 'body'], description: 'Invalid percent-encoding', match: invalidPercent },
  { kind: 'value', id: 1004, family: 'protocol', severity: 'warning', paranoia: 1, where: ['path', 'query', 'body'], description: 'Double-encoded special character (%25XX)', match: doubleEncoded },
  { kind: 'value', id: 1005, family: 'protocol', severity: 'critical', paranoia: 1, where: ['path', 'query', 'cookie', 'header', 'body'], headers: 'all', description: 'CRLF injection: a header line inside a value (response splitting)', match: crlf },
  { kind: 'value', id: 1009, family: 'protocol', severity: 'critical', paranoia: 1, where: ['path'], description: 'Line break (CR or LF) in the path: no resource is named so; it splits whatever the path is written into', match: (v) => found(LINE_BREAK, v.decoded) },
  { kind: 'value', id: 1006, family: 'protocol', severity: 'error', paranoia: 1, where: ['path'], description: 'Control character in the path', match: control },
  { kind: 'value', id: 1007, family: 'protocol', severity: 'critical', paranoia: 1, where: ['header'], headers: ['content-type'], description: 'Content-Type charset that hides content from inspection (UTF-7, UTF-16, EBCDIC …)', match: (v) => found(BAD_CHARSET, v.text) },
  { kind: 'value', id: 1008, family: 'protocol', severity: 'critical', paranoia: 1, where: ['header'], headers: ['range', 'request-range'], description: 'Range header with many ranges', match: rangeAbuse },
  { kind: 'request', id: 1010, family: 'protocol', severity: 'critical', paranoia: 1, target: 'request', description: 'Conflicting, repeated or invalid framing headers (Content-Length, Transfer-Encoding, Host)', check: framing },
  { kind: 'request', id: 1011, family: 'protocol', severity: 'critical', paranoia: 1, target: 'request', description: 'Header value longer than limits.headerLength', check: headerLength },
  { kind: 'request', id: 1012, family: 'protocol', severity: 'critical', paranoia: 1, target: 'request', description: 'More headers than limits.headerCount', check: headerCount },
  { kind: 'request', id: 1013, afterBody: true, family: 'protocol', severity: 'critical', paranoia: 1, target: 'request', description: 'More parameters than limits.args', check: argCount },
  { kind: 'request', id: 1014, family: 'protocol', severity: 'critical', paranoia: 1, target: 'request', description: 'TRACE, TRACK or DEBUG method', check: method },
  { kind: 'request', id: 1015, afterBody: true, family: 'protocol', severity: 'critical', paranoia: 1, target: 'body', description: 'Body larger than maxBodySize (onOversizedBody: block)', check: (r) => r.bodyOversized ? 'body larger than maxBodySize' : undefined },
  { kind: 'request', id: 1016, afterBody: true, family: 'protocol', severity: 'critical', paranoia: 1, target: 'body', description: 'multipart/form-data body that does not parse strictly', check: (r) => r.bodyProblems.includes('multipart') ? 'malformed multipart body' : undefined },
  { kind: 'request', id: 1017, afterBody: true, family: 'protocol', severity: 'critical', paranoia: 1, target: 'body', description: 'JSON body nested deeper than maxJsonDepth', check: (r) => r.bodyProblems.includes('depth') ? 'JSON nested too deep' : undefined },
  { kind: 'value', id: 1020, family: 'protocol', severity: 'critical', paranoia: 2, where: ['query', 'body', 'cookie'], description: 'Control character in a parameter', match: control },
  { kind: 'value', id: 1021, family: 'protocol', severity: 'warning', paranoia: 2, where: ['path', 'query', 'body'], description: 'Multiple percent-encoding', match: multipleEncoding },
  { kind: 'request', id: 1022, afterBody: true, family: 'protocol', severity: 'warning', paranoia: 2, target: 'body', description: 'JSON body that does not parse', check: (r) => r.bodyProblems.includes('json') ? 'malformed JSON body' : undefined },
  { kind: 'request', id: 1023, family: 'protocol', severity: 'notice', paranoia: 2, target: 'header:host', description: 'Host is an IP address', check: numericHost },
  { kind: 'request', id: 1024, afterBody: true, family: 'protocol', severity: 'notice', paranoia: 2, target: 'header:content-type', description: 'Body without Content-Type', check: noContentType },
  { kind: 'value', id: 1025, family: 'protocol', severity: 'warning', paranoia: 2, where: ['path'], description: 'Path character that should have been percent-encoded', match: (v) => found(PATH_CHARS, v.raw) },
]
