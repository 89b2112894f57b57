import type { IncomingMessage } from 'node:http'
import type { HeaderMap } from '../plugin.ts'
import { newRequestId } from './request-id.ts'

// Visible ASCII only, bounded: the id ends up in logs and response headers.
const REQUEST_ID = /^[\x21-\x7e]{1,200}$/

/**
 * The client's address as it really is: a dual-stack listener (`::`) sees
 * IPv4 clients as ::ffff:a.b.c.d, and logs, X-Forwarded-For and plugins
 * should get a.b.c.d.
 */
export function clientAddress (req: IncomingMessage): string {
  const peer = req.socket.remoteAddress ?? ''
  return peer.charCodeAt(0) === 58 /* : */ && peer.startsWith('::ffff:') && peer.includes('.') ? peer.slice(7) : peer
}

/**
 * Adds what the next hop should know about this one, in place, and returns the
 * request id: the client's `x-request-id` if it is one well-formed value, a
 * fresh UUID otherwise. `X-Forwarded-For` and `Via` (RFC 9110 §7.6.3) are
 * appended to; `X-Forwarded-Proto`/`-Host` are ours alone (a client's claim is
 * replaced). The client's `Forwarded` (RFC 7239), `X-Forwarded-Port`,
 * `X-Forwarded-Prefix` and `X-Real-IP` are the same claims in other spellings
 * (Spring, for one, builds absolute URLs from `Forwarded`'s host and proto):
 * dropped. Shared by the HTTP exchange and the WebSocket relay.
 */
export function setForwardingHeaders (headers: HeaderMap, req: IncomingMessage, clientIp: string, scheme: string, authority: string, via: string): string {
  const incomingId = headers['x-request-id']
  const requestId = typeof incomingId === 'string' && REQUEST_ID.test(incomingId) ? incomingId : newRequestId()
  headers['x-request-id'] = requestId
  const xff = headers['x-forwarded-for']
  headers['x-forwarded-for'] = xff === undefined ? clientIp : `${Array.isArray(xff) ? xff.join(', ') : xff}, ${clientIp}`
  headers['x-forwarded-proto'] = scheme
  // An HTTP/1.0 request without Host has no authority to report.
  headers['x-forwarded-host'] = authority === '' ? undefined : authority
  appendVia(headers, req.httpVersion === '1.1' ? via11(via) : `${req.httpVersion} ${via}`)
  // Checked first: nearly every request has none, and a delete costs the object its fast shape.
  if (headers.forwarded !== undefined) delete headers.forwarded
  if (headers['x-forwarded-port'] !== undefined) delete headers['x-forwarded-port']
  if (headers['x-forwarded-prefix'] !== undefined) delete headers['x-forwarded-prefix']
  if (headers['x-real-ip'] !== undefined) delete headers['x-real-ip']
  return requestId
}

let lastName = ''
let lastHop11 = ''
/** `1.1 <name>`, built once per name rather than once per request. */
function via11 (name: string): string {
  if (name !== lastName) { lastName = name; lastHop11 = `1.1 ${name}` }
  return lastHop11
}

/** Appends our hop (`1.1 outrider`, RFC 9110 §7.6.3) to `Via`, in either direction. */
export function appendVia (headers: HeaderMap, hop: string): void {
  const prev = headers.via
  headers.via = prev === undefined ? hop : `${Array.isArray(prev) ? prev.join(', ') : prev}, ${hop}`
}
