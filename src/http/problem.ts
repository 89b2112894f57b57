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
  // 5xx detail may come from an internal cause: keep it generic.
  if (err.status < 500 || err.code.startsWith('UPSTREAM') || err.code === 'NO_HEALTHY_UPSTREAM') body.detail = err.message
  if (requestId !== undefined) body.requestId = requestId
  if (err.extensions !== undefined) Object.assign(body, err.extensions)
  return JSON.stringify(body)
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
