import type pino from 'pino'
import type { Config } from './config/schema.ts'

type Pino = typeof pino
type Destination = ReturnType<Pino['destination']>

/**
 * Structured access logs: one JSON line per exchange, written by pino through
 * an asynchronous SonicBoom destination (the hot path only builds the record;
 * the write is buffered and flushed off the request's critical path).
 * Destinations are per process, not per snapshot, so a reload never reopens
 * the file; SIGUSR2 reopens every file destination (after logrotate moved it).
 */
const destinations = new Map<string, { dest: Destination, logger: pino.Logger }>()
let reopenInstalled = false
/** pino is loaded when a config first asks for an access log: most sidecars never do. */
let loading: Promise<Pino> | undefined

function destinationFor (pino: Pino, target: string): { dest: Destination, logger: pino.Logger } {
  let d = destinations.get(target)
  if (d === undefined) {
    // maxLength: a destination that cannot keep up (or cannot be written at
    // all) drops lines past 16 MiB of backlog instead of growing the heap.
    const dest = pino.destination({ dest: target === 'stdout' ? 1 : target === 'stderr' ? 2 : target, sync: false, mkdir: true, minLength: 4096, maxLength: 16 * 1024 * 1024 })
    // A write error (EPIPE on a closed stdout, a full disk) must not become an
    // uncaught exception on every flush: said once, then lines are dropped or
    // retried with the next flush.
    let warned = false
    dest.on('error', (err: Error) => {
      if (warned) return
      warned = true
      process.emitWarning(`access log ${target}: ${err.message}; its lines may be lost until it can be written again`)
    })
    // Lines past the backlog are dropped, not queued: say so, at most once a
    // minute, with how many went since the last time it was said.
    let dropped = 0
    let saidAt = -Infinity
    dest.on('drop', () => {
      dropped++
      const now = performance.now()
      if (now - saidAt < 60_000) return
      process.emitWarning(`access log ${target}: ${dropped} line(s) dropped, the destination is not keeping up (16 MiB behind)`)
      saidAt = now
      dropped = 0
    })
    const logger = pino({
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      // No levels in an access log; a type tag instead, so access lines can
      // share stdout with operational logs and still be told apart.
      formatters: { level: () => ({ log: 'access' }) },
    }, dest)
    d = { dest, logger }
    destinations.set(target, d)
  }
  if (!reopenInstalled) {
    reopenInstalled = true
    process.on('SIGUSR2', reopenAccessLogs)
  }
  return d
}

/** Reopens file destinations (log rotation). */
export function reopenAccessLogs (): void {
  for (const [target, d] of destinations) if (target !== 'stdout' && target !== 'stderr') d.dest.reopen()
}

/** Writes what is buffered (before exit). */
export function flushAccessLogs (): void {
  for (const d of destinations.values()) {
    try { d.dest.flushSync() } catch { /* not ready yet: nothing buffered */ }
  }
}

/** One exchange, as the access log records it. */
export interface AccessRecord {
  requestId: string
  traceId: string | undefined
  route: string
  cluster: string | undefined
  endpoint: string | undefined
  method: string
  path: string
  query: string
  status: number
  bytesIn: number
  bytesOut: number
  durationMs: number
  upstreamMs: number | undefined
  attempts: number
  clientIp: string
  error: string | undefined
  annotations: Record<string, unknown> | undefined
}

/** A route's access log: sampling and query redaction decided once per snapshot. */
export class AccessLog {
  readonly #logger: pino.Logger
  readonly #sampleRate: number
  readonly #includeQuery: boolean

  private constructor (pino: Pino, config: NonNullable<Config['accessLog']>) {
    this.#logger = destinationFor(pino, config.destination).logger
    this.#sampleRate = config.sampleRate
    this.#includeQuery = config.includeQuery
  }

  static async open (config: NonNullable<Config['accessLog']>): Promise<AccessLog> {
    loading ??= import('pino').then((m) => m.default)
    return new AccessLog(await loading, config)
  }

  write (r: AccessRecord): void {
    // Errors are always logged: sampling is for the happy path.
    if (this.#sampleRate < 1 && r.status < 500 && Math.random() >= this.#sampleRate) return
    this.#logger.info({
      // Plugin decisions first: a plugin that names one `status` or `route`
      // must never overwrite the exchange's own fields, which come after.
      ...decisions(r.annotations),
      requestId: r.requestId,
      traceId: r.traceId,
      route: r.route,
      cluster: r.cluster,
      endpoint: r.endpoint,
      method: r.method,
      // Query strings carry tokens and personal data: left out unless asked
      // for, and then credentials still are (see loggedQuery).
      path: this.#includeQuery && r.query !== '' ? `${r.path}?${loggedQuery(r.query)}` : r.path,
      status: r.status,
      bytesIn: r.bytesIn,
      bytesOut: r.bytesOut,
      durationMs: round(r.durationMs),
      upstreamMs: r.upstreamMs === undefined ? undefined : round(r.upstreamMs),
      attempts: r.attempts,
      clientIp: r.clientIp,
      error: r.error,
    })
  }
}

/**
 * The annotations without `time` and `log`: pino writes those keys itself
 * (the timestamp, the `access` tag) and a second copy in the same line is
 * one that parsers may well take instead.
 */
function decisions (annotations: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (annotations === undefined || !('time' in annotations || 'log' in annotations)) return annotations
  const { time: _time, log: _log, ...rest } = annotations
  return rest
}

/**
 * Parameter names that carry credentials in the wild: API keys (`api_key`,
 * Google's `key`, `access_key`, `consumer_key`), OAuth's tokens, code and
 * client assertions (RFC 6749, RFC 6750 §2.3, RFC 7523), GitLab's
 * `private_token`, a bare `jwt` or `authorization`, signed URLs' signatures
 * (S3, GCS, Azure SAS `sig`), passwords and secrets. Matched on the name
 * without a trailing `[]` (`token[]`, PHP and Rails arrays).
 */
const CREDENTIAL_PARAM = /^(?:api[-_]?key|apikey|key|x-api-key|(?:access|consumer|secret|private)[-_]?key|(?:access|id|refresh|auth|session|private|bearer)?[-_]?token|jwt|authorization|code|client[-_]?(?:secret|assertion)|secret|password|passwd|pwd|sig|signature|x-amz-(?:signature|security-token|credential)|x-goog-(?:signature|credential))(?:\[\])?$/i

/**
 * Credential parameters the running config names itself (api-key's
 * `keyFrom.name`), lower-cased, each with the number of plugin instances
 * naming it. Per process, like the destinations: a name stays while any
 * snapshot that names it serves, the old one's too.
 */
const configuredParams = new Map<string, number>()

/**
 * Redacts query parameter `name` (compared as the decoded name, case-insensitively)
 * in this process's access logs until the returned function is called. A
 * plugin that reads a credential from the query calls it in create() and the
 * release in close().
 *
 * @example
 * const release = redactQueryParam('k') // ?k=secret is logged as k=[redacted]
 */
export function redactQueryParam (name: string): () => void {
  const key = name.toLowerCase()
  configuredParams.set(key, (configuredParams.get(key) ?? 0) + 1)
  let released = false
  return () => {
    if (released) return
    released = true
    const n = (configuredParams.get(key) ?? 1) - 1
    if (n > 0) configuredParams.set(key, n)
    else configuredParams.delete(key)
  }
}

function isCredential (name: string): boolean {
  return CREDENTIAL_PARAM.test(name) || (configuredParams.size > 0 && configuredParams.has(name.toLowerCase()))
}

/** The query with the values of credential parameters replaced by `[redacted]`. */
export function loggedQuery (query: string): string {
  if (query.indexOf('=') === -1) return query
  let out = ''
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=')
    let name = eq === -1 ? pair : pair.slice(0, eq)
    try { name = decodeURIComponent(name) } catch { /* kept as sent */ }
    out += (out === '' ? '' : '&') + (eq !== -1 && isCredential(name) ? `${pair.slice(0, eq)}=[redacted]` : pair)
  }
  return out
}

function round (ms: number): number {
  return Math.round(ms * 1000) / 1000
}
