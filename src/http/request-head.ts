import type { IncomingMessage } from 'node:http'
import type { HeaderMap } from '../plugin.ts'
import { BadFramingError, BadRequestError, HeadersTooLargeError, MethodNotAllowedError, type OutriderError } from '../errors.ts'
import { HOP_BY_HOP } from './hop-by-hop.ts'

/**
 * What one pass over the client's raw request head yields: the headers to send
 * upstream (hop-by-hop removed, lower-case names, repeats as arrays) and the
 * facts the listener needs. node's parser (llhttp, strict mode) already rejects
 * most malformed framing — CL+TE together, duplicate Content-Length, bare LF,
 * obs-fold, invalid octets; this pass refuses what it lets through but a proxy
 * must not forward (RFC 9112 §6.1, §6.3, §7.6.1, §9.6; RFC 9110 §7.6.1).
 */
export interface RequestHead {
  headers: HeaderMap
  /** The authority the request is for (Host, or the absolute-form target's). */
  authority: string
  /** Path as sent, without the query. */
  path: string
  /** Query without '?', '' when absent. */
  query: string
  /** The client sent a body (Content-Length > 0 or chunked). */
  hasBody: boolean
  /** Declared Content-Length, or -1 (chunked or absent). */
  contentLength: number
  /**
   * The client's `TE` accepts `trailers` (RFC 9110 §10.1.4). TE is about one
   * connection, so it is not forwarded as such; an HTTP/2 upstream is told
   * `te: trailers` on the client's behalf, which gRPC servers require.
   */
  teTrailers: boolean
  /**
   * An HTTP/1.1 or HTTP/2 `Expect: 100-continue` (node answers any other
   * expectation with 417, and RFC 9110 §10.1.1 says to ignore it in
   * HTTP/1.0): the client may hold the body back until it sees `100 Continue`.
   */
  expectContinue: boolean
  /**
   * An OPTIONS or TRACE whose `Max-Forwards` is 0: the proxy is its final
   * recipient (RFC 9110 §7.6.2) and must answer it instead of forwarding it.
   */
  lastHop: boolean
  /**
   * `Connection: upgrade` with an `Upgrade` this request is served despite
   * (h2c, anything on HTTP/1.0 or with a body): llhttp stops reading the
   * connection at such a request, so nothing after it may be served.
   */
  upgradeRefused: boolean
}

// Framing headers a client may not nominate as hop-by-hop: removing them would
// change how the upstream delimits the message.
const PROTECTED = new Set(['host', 'content-length', 'transfer-encoding'])

// `uri-host [ ":" port ]` (RFC 9112 §3.2, RFC 3986 §3.2.2): an IP literal or a
// reg-name, never userinfo (RFC 9110 §4.2.4), whitespace, a path or a second
// host. Never empty, with or without a port: an http(s) URI with an empty host
// is invalid and MUST be rejected (RFC 9110 §4.2.1). The sub-delims RFC 3986
// allows in a reg-name (`!$&'()*+,;=`) are refused too: no DNS name has them,
// and `a.test,b.test` reads as two hosts to some parsers and one to others.
const AUTHORITY = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%]+)(?::[0-9]*)?$/
const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)(.*)$/i
/**
 * The last Host value AUTHORITY accepted. Nearly every request on a
 * connection (and on a sidecar, every request) names the same host: comparing
 * strings is cheaper than running the pattern again.
 */
let lastValidHost = ''

/** CONNECT is never tunnelled; a 405 MUST list what is allowed (RFC 9110 §15.5.6). */
export function connectNotAllowed (): MethodNotAllowedError {
  return new MethodNotAllowedError('CONNECT is not supported', { headers: { allow: 'GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS' } })
}

/**
 * Reads `req`'s head. Returns an OutriderError for a request that must not be
 * forwarded; the listener answers it and closes the connection.
 */
export function readRequestHead (req: IncomingMessage): RequestHead | OutriderError {
  const method = req.method as string
  // llhttp also reads `HTTP/0.9`-style lines and `HTTP/2.0`; neither is HTTP/1.x
  // framing we can relay (RFC 9112 §2.3).
  if (req.httpVersionMajor !== 1) return new BadRequestError('unsupported HTTP version')
  if (method === 'CONNECT') return connectNotAllowed()

  const raw = req.rawHeaders
  const headers: HeaderMap = {}
  let host: string | undefined
  let hostCount = 0
  let contentLength = -1
  let transferEncoding: string | undefined
  let connection: string | undefined
  let upgrade: string | undefined
  let expect = false
  let teTrailers = false
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase()
    const value = raw[i + 1] as string
    switch (name) {
      case 'host': hostCount++; host = value; break
      case 'content-length':
        if (contentLength !== -1) return new BadFramingError('repeated Content-Length')
        contentLength = Number(value)
        break
      case 'transfer-encoding':
        if (transferEncoding !== undefined) return new BadFramingError('repeated Transfer-Encoding')
        transferEncoding = value
        continue
      case 'connection': connection = connection === undefined ? value : `${connection}, ${value}`; continue
      case 'upgrade': upgrade = value; continue
      // Answered on our hop (the listener sends 100 when the request is about
      // to be forwarded); undici sends the body without waiting.
      case 'expect': expect = true; continue
      case 'te': if (!teTrailers) teTrailers = acceptsTrailers(value); continue
      // undici cannot send request trailers, so announcing them would be a lie.
      case 'trailer': continue
    }
    if (HOP_BY_HOP.has(name)) continue
    // CGI-style backends read `_` and `-` alike, so `Transfer_Encoding` or
    // `X_Forwarded_For` would arrive as the real thing: dropped, as nginx does
    // by default (underscores_in_headers off).
    if (name.indexOf('_') !== -1) continue
    const prev = headers[name]
    if (prev === undefined) headers[name] = value
    else if (typeof prev === 'string') headers[name] = [prev, value]
    else prev.push(value)
  }

  // RFC 9112 §3.2: exactly one Host in HTTP/1.1, and a valid one: a server
  // MUST answer 400 otherwise. Checked here rather than by node
  // (requireHostHeader), so that a WebSocket handshake is held to it too and
  // the 400 closes the connection before anything pipelined behind it runs.
  if (hostCount > 1) return new BadRequestError('repeated Host header')
  const http11 = req.httpVersionMinor >= 1
  if (host === undefined && http11) return new BadRequestError('missing Host header')
  // HTTP/1.0 may send an empty Host; it is treated as none.
  if (host === '' && !http11) host = undefined
  if (host !== undefined && host !== lastValidHost) {
    if (!AUTHORITY.test(host)) return new BadRequestError('invalid Host header')
    lastValidHost = host
  }

  if (transferEncoding !== undefined) {
    // §6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing.
    if (req.httpVersionMinor === 0 && req.httpVersionMajor === 1) return new BadFramingError('Transfer-Encoding in an HTTP/1.0 request')
    if (contentLength !== -1) return new BadFramingError('both Content-Length and Transfer-Encoding')
    // We only relay chunked: any other coding is one the upstream might read
    // differently (§6.1: "chunked" must be final and appear once).
    if (transferEncoding.trim().toLowerCase() !== 'chunked') return new BadFramingError(`unsupported Transfer-Encoding "${transferEncoding}"`)
  }

  let upgradeAsked = false
  // Most clients send exactly `keep-alive` or `close`: nothing to split.
  if (connection !== undefined && connection !== 'keep-alive' && connection !== 'close' && connection !== 'Keep-Alive') {
    const tokens = connection.toLowerCase().split(',')
    for (let t of tokens) {
      t = t.trim()
      if (t === '' || t === 'close' || t === 'keep-alive') continue
      if (t === 'upgrade') { upgradeAsked = upgrade !== undefined; continue }
      if (PROTECTED.has(t)) return new BadFramingError(`Connection names the framing header "${t}"`)
      if (t in headers) delete headers[t]
    }
  }
  // `Upgrade` without `Connection: upgrade` is meaningless, and `h2c` (or
  // anything but websocket) is never relayed: it would let a client open a
  // tunnel past the proxy's routing and plugins. Both are simply dropped.

  let url = req.url as string
  let authority = host ?? ''
  if (url.charCodeAt(0) !== 47 /* / */) {
    if (url === '*' && method === 'OPTIONS') {
      url = '*'
    } else {
      // Absolute-form (RFC 9112 §3.2.2): the target's authority wins over Host.
      // An empty host is invalid for http(s) (RFC 9110 §4.2.1).
      const m = ABSOLUTE_FORM.exec(url)
      if (m === null || m[1] === '' || !AUTHORITY.test(m[1] as string)) return new BadRequestError('malformed request target')
      authority = m[1] as string
      // An empty path is `/` (RFC 9112 §3.2.1), also before a query: `http://h?q=1`.
      url = m[2] === '' ? '/' : (m[2] as string).charCodeAt(0) === 63 /* ? */ ? `/${m[2] as string}` : m[2] as string
    }
  }
  if (url.includes('#')) return new BadRequestError('a fragment in the request target')
  // An HTTP/1.0 request may come without Host: let the upstream get its own
  // authority rather than an empty one.
  if (authority !== '') headers.host = authority
  else if (host !== undefined) delete headers.host

  const q = url.indexOf('?')
  return {
    headers,
    authority,
    path: q === -1 ? url : url.slice(0, q),
    query: q === -1 ? '' : url.slice(q + 1),
    hasBody: transferEncoding !== undefined || contentLength > 0,
    contentLength: transferEncoding !== undefined ? -1 : contentLength,
    expectContinue: expect && req.httpVersionMinor === 1,
    lastHop: (method === 'OPTIONS' || method === 'TRACE') && maxForwards(headers),
    upgradeRefused: upgradeAsked,
    teTrailers,
  }
}

/**
 * The HTTP/2 counterpart of readRequestHead. node's HTTP/2 layer already
 * refuses what RFC 9113 §8.2.2 calls malformed (connection-specific fields,
 * upper-case names, TE other than "trailers", a Content-Length that does not
 * match the DATA frames); what is left is turning the stream's fields into an
 * HTTP/1.1 request for the upstream.
 *
 * node lets a field block past the SETTINGS_MAX_HEADER_LIST_SIZE it announced
 * through until the client has acknowledged the SETTINGS (a session's first
 * requests): `maxHeaderSize` is held here, as node's parser holds HTTP/1.1
 * heads to it. Sizes count as RFC 9113 §6.5.2 does: name + value + 32 octets
 * a field, pseudo-fields included.
 */
export function readH2RequestHead (req: IncomingMessage, maxHeaderSize: number): RequestHead | OutriderError {
  const method = req.method as string
  if (method === 'CONNECT') return connectNotAllowed()
  const raw = req.rawHeaders
  let listSize = 0
  // node builds field strings one octet a character: lengths are octets.
  for (let i = 0; i < raw.length; i++) listSize += (raw[i] as string).length
  if (listSize + 32 * (raw.length / 2) > maxHeaderSize) return new HeadersTooLargeError('request head too large')
  const headers: HeaderMap = {}
  let authority: string | undefined
  let host: string | undefined
  let contentLength = -1
  let cookies: string | undefined
  let teTrailers = false
  let expect = false
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    const value = raw[i + 1] as string
    if (name.charCodeAt(0) === 58 /* : */) {
      if (name === ':authority') authority = value
      continue
    }
    switch (name) {
      case 'host': host = value; continue
      case 'content-length': contentLength = Number(value); break
      // RFC 9113 §8.2.3: a client may split Cookie into several fields; an
      // HTTP/1.1 upstream expects one, joined with "; ".
      case 'cookie': cookies = cookies === undefined ? value : `${cookies}; ${value}`; continue
      // As on HTTP/1.1: answered on our hop. node has answered any other
      // expectation than `100-continue` with 417 before the request gets here.
      case 'expect': expect = true; continue
      // RFC 9113 §8.2.2: in HTTP/2, TE may only say "trailers".
      case 'te': teTrailers = acceptsTrailers(value); continue
    }
    if (HOP_BY_HOP.has(name) || name.indexOf('_') !== -1) continue
    const prev = headers[name]
    if (prev === undefined) headers[name] = value
    else if (typeof prev === 'string') headers[name] = [prev, value]
    else prev.push(value)
  }
  if (cookies !== undefined) headers.cookie = cookies
  // §8.3.1: :authority wins over Host.
  const target = authority ?? host ?? ''
  if (target === '' || !AUTHORITY.test(target)) return new BadRequestError('missing or invalid :authority')
  headers.host = target
  const url = req.url as string
  if (url.charCodeAt(0) !== 47 /* / */ && !(url === '*' && method === 'OPTIONS')) return new BadRequestError('malformed :path')
  if (url.includes('#')) return new BadRequestError('a fragment in the request target')
  const q = url.indexOf('?')
  const stream = (req as IncomingMessage & { stream?: { endAfterHeaders?: boolean } }).stream
  return {
    headers,
    authority: target,
    path: q === -1 ? url : url.slice(0, q),
    query: q === -1 ? '' : url.slice(q + 1),
    hasBody: stream?.endAfterHeaders !== true,
    contentLength,
    expectContinue: expect,
    lastHop: (method === 'OPTIONS' || method === 'TRACE') && maxForwards(headers),
    upgradeRefused: false,
    teTrailers,
  }
}

/** Does a TE value list `trailers` (RFC 9110 §10.1.4: t-codings, "trailers" among them)? */
function acceptsTrailers (value: string): boolean {
  for (const part of value.toLowerCase().split(',')) {
    const semi = part.indexOf(';')
    if ((semi === -1 ? part : part.slice(0, semi)).trim() === 'trailers') return true
  }
  return false
}

/**
 * RFC 9110 §7.6.2 for OPTIONS and TRACE: a valid Max-Forwards is decremented
 * in `headers` before forwarding; true when it is 0 (do not forward).
 */
const DIGITS = /^\d{1,10}$/

function maxForwards (headers: HeaderMap): boolean {
  const v = headers['max-forwards']
  if (typeof v !== 'string' || !DIGITS.test(v)) return false
  const n = Number(v)
  if (n === 0) return true
  headers['max-forwards'] = String(n - 1)
  return false
}
