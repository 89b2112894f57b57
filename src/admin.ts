import http from 'node:http'
import type { Registry } from 'prom-client'
import type { Snapshot } from './snapshot.ts'
import type { PurgeSelector } from './plugin.ts'
import { LEVELS, type Level, type Logger } from './log.ts'

/** What the admin listener needs to know about the running proxy. */
export interface AdminSource {
  /** The active config's version, or undefined before one is loaded. */
  version (): string | undefined
  /** `/config`: the active source config and its version. */
  config (): unknown
  /** `/clusters`: endpoints and their state. */
  clusters (): unknown
  /** Extra readiness condition (e.g. control plane heard from); true if none. */
  ready (): boolean
  draining (): boolean
  metrics (): Promise<{ contentType: string, body: string }>
  /**
   * Sets (or, with undefined, clears) an external weight hint for a
   * latency-aware balancer. Returns false when the cluster, endpoint or policy
   * cannot take one.
   */
  setWeightHint? (cluster: string, endpoint: string, weight: number | undefined): boolean | Promise<boolean>
  /** Drops matching cached responses (every worker's, and the shared L2); how many. */
  purge? (selector: PurgeSelector, route: string | undefined): Promise<number>
  /** Changes the log level at runtime (every worker, in multi-worker mode). */
  setLogLevel? (level: Level): void
}

/** An AdminSource over one process's active snapshot. */
export function snapshotSource (current: () => Snapshot, rest: Pick<AdminSource, 'ready' | 'draining' | 'metrics'>): AdminSource {
  return {
    ...rest,
    version: () => current().version,
    config: () => current().describe(),
    clusters: () => ({ version: current().version, clusters: [...current().clusters.values()].map((c) => c.state()) }),
    setWeightHint: (cluster, endpoint, weight) => current().clusters.get(cluster)?.setWeightHint(endpoint, weight) ?? false,
    purge: (selector, route) => current().purge(selector, route),
  }
}

/**
 * The admin endpoints (ARCHITECTURE §1), on their own listener (loopback by
 * default) so they are never reachable through a route.
 */
export function createAdminServer (source: AdminSource, log: Logger): http.Server {
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/'
    const path = url.split('?', 1)[0] as string
    const hint = /^\/clusters\/([^/]+)\/weight-hints$/.exec(path)
    if (hint !== null && req.method === 'POST') {
      const cluster = decodeSegment(hint[1] as string)
      // A throw here would leave the request unanswered (the crash guard catches it).
      if (cluster === undefined) { json(res, 400, { error: 'the cluster name in the path is not valid percent-encoding' }); return }
      weightHint(req, res, source, cluster, log)
      return
    }
    if (path === '/log-level' && req.method === 'POST') { logLevel(req, res, source, log); return }
    if (path === '/cache/purge' && req.method === 'POST') { purge(req, res, source, log); return }
    if (req.method !== 'GET' && req.method !== 'HEAD') { json(res, 405, { error: 'only GET and HEAD' }, { allow: 'GET, HEAD' }); return }
    switch (path) {
      case '/live':
        json(res, 200, { status: 'live' }); return
      case '/ready': {
        const version = source.version()
        const ready = version !== undefined && source.ready() && !source.draining()
        json(res, ready ? 200 : 503, { status: ready ? 'ready' : (source.draining() ? 'draining' : 'not ready'), version: version ?? null })
        return
      }
      case '/config':
      case '/clusters': {
        if (source.version() === undefined) { json(res, 503, { error: 'no config loaded yet' }); return }
        Promise.resolve(path === '/config' ? source.config() : source.clusters()).then((body) => { json(res, 200, body) }, (err: unknown) => {
          log.error('admin endpoint failed', { path, err })
          json(res, 500, { error: 'failed' })
        })
        return
      }
      case '/metrics':
        source.metrics().then(({ contentType, body }) => {
          res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) })
          res.end(body)
        }, (err: unknown) => {
          log.error('metrics collection failed', { err })
          json(res, 500, { error: 'metrics collection failed' })
        })
        return
      default:
        json(res, 404, { error: 'not found', endpoints: ['/live', '/ready', '/config', '/clusters', '/metrics'] })
    }
  })
  return server
}

/** A percent-encoded path segment, or undefined when its escapes are malformed (`%E0%A4%A`). */
function decodeSegment (segment: string): string | undefined {
  try { return decodeURIComponent(segment) } catch { return undefined }
}

/** Metrics of this process's registry. */
export function registryMetrics (registry: Registry): () => Promise<{ contentType: string, body: string }> {
  return async () => ({ contentType: registry.contentType, body: await registry.metrics() })
}

/**
 * `POST /clusters/{name}/weight-hints` with `{ "endpoint": "http://10.0.0.1:8080", "weight": 3 }`
 * (`"weight": null` clears it): how an operator or the control plane steers a
 * peak_ewma cluster. Hints last until the next config reload.
 */
function weightHint (req: http.IncomingMessage, res: http.ServerResponse, source: AdminSource, cluster: string, log: Logger): void {
  let raw = ''
  req.setEncoding('utf8')
  req.on('data', (c: string) => { if (raw.length < 4096) raw += c })
  req.on('end', () => {
    const body = jsonObject(raw)
    if (body === undefined) { json(res, 400, { error: 'a JSON body { endpoint, weight }' }); return }
    const weight = body.weight === null ? undefined : body.weight
    if (typeof body.endpoint !== 'string' || (weight !== undefined && (typeof weight !== 'number' || !(weight > 0) || !Number.isFinite(weight)))) {
      json(res, 400, { error: 'endpoint must be a string (the endpoint URL) and weight a positive number or null' }); return
    }
    let endpoint: string
    try { endpoint = new URL(body.endpoint).origin } catch { json(res, 400, { error: 'endpoint must be a URL' }); return }
    Promise.resolve(source.setWeightHint?.(cluster, endpoint, weight) ?? false).then((ok) => {
      if (ok) json(res, 200, { cluster, endpoint, weight: weight ?? null })
      else json(res, 404, { error: `no cluster "${cluster}" with a latency-aware policy (peak_ewma), or no endpoint ${endpoint} in it` })
    }, (err: unknown) => { log.error('weight hint failed', { err }); json(res, 500, { error: 'failed' }) })
  })
}

/**
 * `POST /cache/purge` with one of `{ "url": "api.example.com/users/42?x=1" }`
 * (every variant of that URL), `{ "prefix": "api.example.com/users/" }` or
 * `{ "tag": "user-42" }`, and optionally `"route": "name"`. Answers with how
 * many stored responses went from this process (the shared L2 is purged too).
 */
function purge (req: http.IncomingMessage, res: http.ServerResponse, source: AdminSource, log: Logger): void {
  let raw = ''
  req.setEncoding('utf8')
  req.on('data', (c: string) => { if (raw.length < 16384) raw += c })
  req.on('end', () => {
    const body = jsonObject(raw) ?? {}
    const kinds = (['url', 'prefix', 'tag'] as const).filter((k) => body[k] !== undefined)
    const kind = kinds[0]
    const value = kind === undefined ? undefined : body[kind]
    const route = body.route
    if (kinds.length !== 1 || typeof value !== 'string' || value === '' || (route !== undefined && typeof route !== 'string')) {
      json(res, 400, { error: 'a JSON body with exactly one of "url", "prefix" or "tag" (a non-empty string), and optionally "route"' }); return
    }
    if (source.purge === undefined) { json(res, 404, { error: 'no cache to purge' }); return }
    const selector = { [kind as string]: value } as PurgeSelector
    source.purge(selector, route).then((purged) => { json(res, 200, { purged, [kind as string]: value }) }, (err: unknown) => {
      log.error('cache purge failed', { err })
      json(res, 500, { error: 'purge failed' })
    })
  })
}

/** `POST /log-level` with `{ "level": "debug" }`: more detail while debugging, no restart. */
function logLevel (req: http.IncomingMessage, res: http.ServerResponse, source: AdminSource, log: Logger): void {
  let raw = ''
  req.setEncoding('utf8')
  req.on('data', (c: string) => { if (raw.length < 1024) raw += c })
  req.on('end', () => {
    const level = jsonObject(raw)?.level
    if (typeof level !== 'string' || !LEVELS.includes(level as Level)) { json(res, 400, { error: `a JSON body { "level": ${LEVELS.map((l) => `"${l}"`).join(' | ')} }` }); return }
    if (source.setLogLevel !== undefined) source.setLogLevel(level as Level)
    else log.setLevel(level as Level)
    // Not `level`: that is the record's own (warn).
    log.warn('log level changed', { to: level })
    json(res, 200, { level })
  })
}

/**
 * A request body that is a JSON object, or undefined (not JSON, or `null`,
 * a number, an array…): a handler reading fields off `null` would throw and
 * leave the request unanswered.
 */
function jsonObject (raw: string): Record<string, unknown> | undefined {
  let v: unknown
  try { v = JSON.parse(raw) } catch { return undefined }
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Record<string, unknown> : undefined
}

function json (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body, null, 2) + '\n'
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...headers })
  res.end(res.req.method === 'HEAD' ? undefined : text)
}
