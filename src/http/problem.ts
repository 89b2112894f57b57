import type { ServerResponse } from 'node:http'
import { InternalError, OutriderError } from '../errors.ts'

/**
 * The one place an error becomes a response: RFC 9457 application/problem+json
 * with our stable `code` as an extension member, and the request id as
 * `instance`-like correlation. Counting is the caller's (it knows the route).
 */
export function toOutriderError (err: unknown): OutriderError {
  if (err instanceof OutriderError) return err
  return new InternalError('internal error', { cause: err })
}

export function problemBody (err: OutriderError, requestId: string | undefined): string {
  const body: Record<string, unknown> = {
    type: `https://outrider.dev/problems/${err.code.toLowerCase().replaceAll('_', '-')}`,
    title: err.title,
    status: err.status,
    code: err.code,
  }
  if (exposable(err)) body.detail = err.message
  if (requestId !== undefined) body.requestId = requestId
  if (err.extensions !== undefined) Object.assign(body, err.extensions)
  return JSON.stringify(body)
}

/** 5xx detail may come from an internal cause: keep it generic. */
function exposable (err: OutriderError): boolean {
  return err.status < 500 || err.code.startsWith('UPSTREAM') || err.code === 'NO_HEALTHY_UPSTREAM'
}

/** A problem as a response the exchange can still pass through onResponse hooks. */
export function problemResponse (err: OutriderError, requestId: string | undefined, close: boolean): { status: number, headers: Record<string, string>, body: string } {
  const body = problemBody(err, requestId)
  const headers: Record<string, string> = {
    'content-type': 'application/problem+json',
    'content-length': String(Buffer.byteLength(body)),
    'cache-control': 'no-store',
  }
  if (requestId !== undefined) headers['x-request-id'] = requestId
  if (err.headers !== undefined) Object.assign(headers, err.headers)
  if (close) headers.connection = 'close'
  return { status: err.status, headers, body }
}

/**
 * Writes `err` to `res` if nothing was sent yet; otherwise the response is cut
 * (the client must see a truncated message, never a well-formed wrong one).
 */
export function sendProblem (res: ServerResponse, err: OutriderError, requestId: string | undefined, close = false): void {
  if (res.headersSent) { res.destroy(err); return }
  const p = problemResponse(err, requestId, close)
  res.writeHead(p.status, p.headers)
  res.end(res.req?.method === 'HEAD' ? undefined : p.body)
}

/**
 * The gRPC status code (grpc/doc/statuscodes.md) a gRPC client gets for an
 * error Outrider answers itself. Envoy's mapping for its local replies (the
 * inverse of grpc/doc/http-grpc-status-mapping.md), except for:
 * - 413 and 429: RESOURCE_EXHAUSTED, what gRPC says of a message over a size
 *   limit or of a spent quota. Envoy answers a 429 UNAVAILABLE unless told
 *   otherwise (`rate_limited_as_resource_exhausted`), but UNAVAILABLE is the
 *   code gRPC clients retry, at once: a rate limit would draw more calls.
 * - 504: DEADLINE_EXCEEDED, as Envoy's router says of an upstream timeout.
 */
export function grpcCode (status: number): number {
  switch (status) {
    case 400: return 13 // INTERNAL: the gRPC library framed a bad request.
    case 401: return 16 // UNAUTHENTICATED
    case 403: return 7 // PERMISSION_DENIED
    case 404: return 12 // UNIMPLEMENTED: no route for the method.
    case 413:
    case 429: return 8 // RESOURCE_EXHAUSTED
    case 500: return 13 // INTERNAL
    case 502:
    case 503: return 14 // UNAVAILABLE
    case 504: return 4 // DEADLINE_EXCEEDED
    default: return 2 // UNKNOWN
  }
}

/**
 * `grpc-message` as gRPC over HTTP/2 ("Responses") encodes it: the UTF-8
 * bytes outside %x20-%x7E, and "%" itself, as "%XX".
 */
export function grpcMessage (message: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(message)) return message
  let out = ''
  for (const b of Buffer.from(message, 'utf8')) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b < 16 ? '0' : ''}${b.toString(16).toUpperCase()}`
  }
  return out
}

/**
 * A problem for a gRPC (or gRPC-Web) client, which reads no problem body and
 * would see a bare HTTP status as UNAVAILABLE, whatever it was: a
 * trailers-only answer, HTTP 200 with `grpc-status` and `grpc-message` in a
 * head with no body (gRPC-Web reads them there too). `contentType` is the
 * request's. The problem's headers (Retry-After, WWW-Authenticate, …) go
 * along as metadata.
 *
 * @example
 * grpcProblemResponse(new UpstreamTimeoutError('no upstream answered before the route deadline'), id, 'application/grpc', false)
 * // { status: 200, headers: { 'content-type': 'application/grpc', 'grpc-status': '4', 'grpc-message': 'no upstream answered before the route deadline', … } }
 */
export function grpcProblemResponse (err: OutriderError, requestId: string | undefined, contentType: string, close: boolean): { status: number, headers: Record<string, string>, body: undefined } {
  const headers: Record<string, string> = {
    'content-type': contentType,
    'grpc-status': String(grpcCode(err.status)),
    'grpc-message': grpcMessage(exposable(err) ? err.message : err.title),
    'content-length': '0',
  }
  if (requestId !== undefined) headers['x-request-id'] = requestId
  if (err.headers !== undefined) Object.assign(headers, err.headers)
  if (close) headers.connection = 'close'
  return { status: 200, headers, body: undefined }
}
