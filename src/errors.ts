/**
 * The one catalogue of failures Outrider turns into responses. Every class has a
 * stable `code` (tests and clients match on it, never on wording), the HTTP
 * `status` it becomes and an optional `cause`. `src/http/problem.ts` is the only
 * place that renders them (RFC 9457 application/problem+json).
 */
export abstract class OutriderError extends Error {
  abstract readonly code: string
  abstract readonly status: number
  /** Extra response headers (e.g. `Allow`, `Retry-After`, `WWW-Authenticate`). */
  headers: Record<string, string> | undefined
  /** Extra problem members, merged into the body. */
  extensions: Record<string, unknown> | undefined

  constructor (message: string, options?: { cause?: unknown, headers?: Record<string, string>, extensions?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = new.target.name
    this.headers = options?.headers
    this.extensions = options?.extensions
  }

  /** A short title for the problem body: stable per class. */
  get title (): string { return this.code.toLowerCase().replaceAll('_', ' ') }
}

/** Request framing that could be read two ways (RFC 9112 §6.3, §11.2): never forwarded. */
export class BadFramingError extends OutriderError {
  readonly code = 'BAD_FRAMING'
  readonly status = 400
}

export class BadRequestError extends OutriderError {
  readonly code = 'BAD_REQUEST'
  readonly status = 400
}

export class NoRouteError extends OutriderError {
  readonly code = 'NO_ROUTE'
  readonly status = 404
}

export class MethodNotAllowedError extends OutriderError {
  readonly code = 'METHOD_NOT_ALLOWED'
  readonly status = 405
}

export class PayloadTooLargeError extends OutriderError {
  readonly code = 'PAYLOAD_TOO_LARGE'
  readonly status = 413
}

export class HeadersTooLargeError extends OutriderError {
  readonly code = 'HEADERS_TOO_LARGE'
  readonly status = 431
}

export class RequestTimeoutError extends OutriderError {
  readonly code = 'REQUEST_TIMEOUT'
  readonly status = 408
}

export class UnauthorizedError extends OutriderError {
  readonly code = 'UNAUTHORIZED'
  readonly status = 401
}

/**
 * The token could not be checked: no signing key was ever fetched from the
 * JWKS (the IdP is down or misconfigured). The proxy's failure, not the
 * client's, so a 503 with Retry-After, as Envoy and Kong report a JWKS they
 * cannot fetch: a 401 `invalid_token` would tell the client to discard a
 * token that may be perfectly good (RFC 6750 §3.1).
 */
export class AuthUnavailableError extends OutriderError {
  readonly code = 'AUTH_UNAVAILABLE'
  readonly status = 503
}

export class ForbiddenError extends OutriderError {
  readonly code = 'FORBIDDEN'
  readonly status = 403
}

export class RateLimitedError extends OutriderError {
  readonly code = 'RATE_LIMITED'
  readonly status = 429
}

/** The upstream refused, reset or could not be reached before a response began. */
export class UpstreamConnectError extends OutriderError {
  readonly code = 'UPSTREAM_CONNECT_FAILED'
  readonly status = 502
}

/** The upstream answered with something that is not valid HTTP, or reset mid-request. */
export class UpstreamProtocolError extends OutriderError {
  readonly code = 'UPSTREAM_PROTOCOL_ERROR'
  readonly status = 502
}

export class UpstreamTimeoutError extends OutriderError {
  readonly code = 'UPSTREAM_TIMEOUT'
  readonly status = 504
}

/** The cluster has no endpoint that can take the request. */
export class NoHealthyUpstreamError extends OutriderError {
  readonly code = 'NO_HEALTHY_UPSTREAM'
  readonly status = 503
}

export class CircuitOpenError extends OutriderError {
  readonly code = 'CIRCUIT_OPEN'
  readonly status = 503
}

/**
 * A cluster overload limit refused the request (Envoy's circuit breaking
 * thresholds): fail fast instead of queueing behind a struggling upstream.
 */
export class OverloadedError extends OutriderError {
  readonly code = 'OVERLOADED'
  readonly status = 503
}

export class ShuttingDownError extends OutriderError {
  readonly code = 'SHUTTING_DOWN'
  readonly status = 503
}

/** A plugin failed in a way it did not classify: never a crash, always a 500. */
export class PluginError extends OutriderError {
  readonly code = 'PLUGIN_FAILED'
  readonly status = 500
}

export class InternalError extends OutriderError {
  readonly code = 'INTERNAL'
  readonly status = 500
}

/** One config problem: the file, the path inside it and what was expected there. */
export interface ConfigIssue {
  /** e.g. `routes[0].plugins[2].config.points`; empty string for the document itself. */
  path: string
  /** What was expected, in words (zod's message, or our own). */
  expected: string
  /** 1-based line in the source file, when the parser could tell. */
  line?: number
}

/**
 * A config that cannot be used. Never rendered to a client: the CLI prints it and
 * exits 2, a reload logs it and keeps the old snapshot.
 */
export class ConfigError extends OutriderError {
  readonly code = 'CONFIG_INVALID'
  readonly status = 500
  readonly file: string
  readonly issues: ConfigIssue[]

  constructor (file: string, issues: ConfigIssue[], options?: { cause?: unknown }) {
    super(ConfigError.format(file, issues), options)
    this.file = file
    this.issues = issues
  }

  /** The first issue's path (most callers and tests want one). */
  get path (): string { return this.issues[0]?.path ?? '' }
  get expected (): string { return this.issues[0]?.expected ?? '' }

  static format (file: string, issues: ConfigIssue[]): string {
    const lines = issues.map((i) => {
      const where = i.line === undefined ? file : `${file}:${i.line}`
      return `${where}: ${i.path === '' ? '(document)' : i.path}: ${i.expected}`
    })
    return `invalid config\n  ${lines.join('\n  ')}`
  }
}

/** What a request hook's throw means: its own verdict (401, 403, 429 …), or a plugin failure (500). */
export function pluginError (err: unknown): OutriderError {
  if (err instanceof OutriderError) return err
  return new PluginError('a plugin failed', { cause: err })
}
