import {
  OutriderError, UpstreamConnectError, UpstreamProtocolError, UpstreamTimeoutError,
  BadRequestError, RequestTimeoutError,
} from '../errors.ts'

const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ECONNABORTED'])

/**
 * Classifies an undici failure. Connect failures (nothing was sent) are kept
 * apart from resets and protocol errors (the upstream may have seen the
 * request): the retry policy of issue #3 depends on that distinction.
 */
export function toUpstreamError (err: Error): OutriderError {
  if (err instanceof OutriderError) return err
  const code = (err as { code?: string }).code ?? ''
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return new UpstreamTimeoutError('timed out connecting to the upstream', { cause: err, extensions: { phase: 'connect' } })
    case 'UND_ERR_HEADERS_TIMEOUT':
      return new UpstreamTimeoutError('the upstream did not answer in time', { cause: err, extensions: { phase: 'headers' } })
    case 'UND_ERR_BODY_TIMEOUT':
      return new UpstreamTimeoutError('the upstream stalled while sending the body', { cause: err, extensions: { phase: 'body' } })
    case 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH':
      return new BadRequestError('the request body did not match its Content-Length', { cause: err })
    case 'UND_ERR_ABORTED':
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_SOCKET':
      return new UpstreamProtocolError('the upstream connection was reset', { cause: err, extensions: { phase: 'reset' } })
  }
  if (CONNECT_FAILURES.has(code)) return new UpstreamConnectError('could not connect to the upstream', { cause: err, extensions: { phase: 'connect' } })
  // A failed TLS handshake (untrusted or mismatched certificate, protocol
  // error) also means nothing was sent: a connect failure, safe to retry.
  if (code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') || code.startsWith('CERT_') || code.startsWith('UNABLE_TO_') ||
    code === 'DEPTH_ZERO_SELF_SIGNED_CERT' || code === 'SELF_SIGNED_CERT_IN_CHAIN') {
    return new UpstreamConnectError('TLS handshake with the upstream failed', { cause: err, extensions: { phase: 'connect', tls: code } })
  }
  if (code.startsWith('HPE_') || code === 'UND_ERR_INFO' || code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' || code === 'UND_ERR_HEADERS_OVERFLOW') {
    return new UpstreamProtocolError('the upstream sent an invalid response', { cause: err, extensions: { phase: 'response' } })
  }
  if (code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ECONNRESET' || (err as { name?: string }).name === 'AbortError') {
    return new RequestTimeoutError('the client went away', { cause: err })
  }
  return new UpstreamProtocolError('the upstream request failed', { cause: err })
}
