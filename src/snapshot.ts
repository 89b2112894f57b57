import { createHash } from 'node:crypto'
import type { ClusterConfig, Config, RouteConfig } from './config/schema.ts'
import { Router } from './router.ts'
import { Cluster } from './upstream/cluster.ts'
import { Pipeline, buildPipeline } from './pipeline.ts'
import { RouteMetrics, type ProxyMetrics } from './metrics.ts'
import type { Logger } from './log.ts'
import { RetryPolicy } from './upstream/retry.ts'
import { loadCockatiel } from './upstream/cockatiel.ts'
import { LatencyWindow } from './upstream/latency-window.ts'
import { loadUpstreamTls, type UpstreamTlsOptions } from './tls.ts'
import { AccessLog } from './access-log.ts'
import { redactConfig } from './config/redact.ts'
import { upstreamClient } from './upstream/subrequest.ts'
import type { PurgeSelector } from './plugin.ts'
import type { HedgeConfig } from './config/schema.ts'

/** A route with everything the hot path needs resolved in advance. */
export class CompiledRoute {
  readonly name: string
  readonly config: RouteConfig
  readonly cluster: Cluster
  readonly pipeline: Pipeline
  readonly metrics: RouteMetrics
  /** 0 = unlimited. */
  readonly maxBodySize: number
  /** Prefix to cut from the path and what to put instead (rewrite.pathPrefix). */
  readonly stripPrefix: string | undefined
  readonly newPrefix: string | undefined
  readonly headersTimeout: number | undefined
  readonly bodyTimeout: number | undefined
  /** The route's retry policy, else its cluster's; undefined: one attempt. */
  readonly retry: RetryPolicy | undefined
  readonly hedge: HedgeConfig | undefined
  /** Deadline for the response head over all attempts (ms), if set. */
  readonly overallTimeout: number | undefined
  /** The route's own limits.streamIdleTimeout (ms; 0 = none), if set. */
  readonly streamIdleTimeout: number | undefined
  /** Where this route's exchanges are logged, if anywhere. */
  readonly accessLog: AccessLog | undefined
  /** Recent upstream latencies (for `hedge.delay: p95`). */
  readonly latencies: LatencyWindow | undefined

  constructor (config: RouteConfig, cluster: Cluster, pipeline: Pipeline, metrics: RouteMetrics, defaultMaxBody: number, accessLog: AccessLog | undefined) {
    this.name = config.name
    this.config = config
    this.cluster = cluster
    this.pipeline = pipeline
    this.metrics = metrics
    this.maxBodySize = config.maxBodySize ?? defaultMaxBody
    this.stripPrefix = config.rewrite === undefined ? undefined : config.match.pathPrefix
    this.newPrefix = config.rewrite?.pathPrefix
    this.headersTimeout = config.timeouts?.request
    this.bodyTimeout = config.timeouts?.idle
    const retry = config.retry ?? cluster.config.retry
    this.retry = retry === undefined || retry.maxAttempts <= 1 ? undefined : new RetryPolicy(retry)
    this.hedge = config.hedge
    this.overallTimeout = config.timeouts?.overall
    this.streamIdleTimeout = config.timeouts?.streamIdle
    this.latencies = config.hedge?.delay === 'p95' ? new LatencyWindow() : undefined
    this.accessLog = config.accessLog ? accessLog : undefined
  }
}

/**
 * Everything compiled from one config: immutable once built. The listener reads
 * `holder.current` once per request, so a swap never affects a request that has
 * started; the old snapshot is retired when its in-flight count drains.
 */
export class Snapshot {
  readonly version: string
  readonly config: Config
  readonly source: string
  readonly loadedAt: Date
  readonly router: Router<CompiledRoute>
  readonly clusters: ReadonlyMap<string, Cluster>
  readonly routes: readonly CompiledRoute[]
  /** The snapshot's access log (routes hold it too, unless they opted out). */
  readonly accessLog: AccessLog | undefined
  /** The pseudo-route unmatched requests are counted under. */
  readonly unmatched: RouteMetrics
  inflight = 0
  #retired = false
  /** What each cluster was built from (`clusterKey`): a later snapshot reuses a cluster whose key is unchanged. */
  readonly #clusterKeys: ReadonlyMap<string, string>

  private constructor (config: Config, source: string, version: string, clusters: Map<string, Cluster>, clusterKeys: Map<string, string>, routes: CompiledRoute[], unmatched: RouteMetrics, accessLog: AccessLog | undefined) {
    this.accessLog = accessLog
    this.#clusterKeys = clusterKeys
    this.config = config
    this.source = source
    this.version = version
    this.loadedAt = new Date()
    this.clusters = clusters
    this.routes = routes
    this.router = new Router(routes.map((r) => ({ match: r.config.match, value: r, answersPreflight: r.config.plugins.some((p) => p.name === 'cors') })))
    this.unmatched = unmatched
  }

  /**
   * Builds a snapshot off the hot path. On failure everything opened so far is
   * closed and the error is rethrown; the caller keeps its current snapshot.
   * A cluster of `previous` whose config (and TLS files' contents) is
   * unchanged is taken over as it is: its endpoints' health, ejections,
   * breakers, balancer state and open connections carry on.
   */
  static async build (config: Config, options: { source: string, metrics: ProxyMetrics, log: Logger, previous?: Snapshot }): Promise<Snapshot> {
    const version = configVersion(config)
    const clusters = new Map<string, Cluster>()
    const clusterKeys = new Map<string, string>()
    const routes: CompiledRoute[] = []
    const accessLog = config.accessLog?.enabled === true ? await AccessLog.open(config.accessLog) : undefined
    if (usesCockatiel(config)) await loadCockatiel()
    const previous = options.previous
    const previousKeys = previous === undefined ? undefined : previous.#clusterKeys
    try {
      for (const [i, c] of config.clusters.entries()) {
        const tls = c.tls === undefined ? undefined : await loadUpstreamTls(c.tls, options.source, i)
        const key = clusterKey(c, tls)
        const old = previous?.clusters.get(c.name)
        const reuse = old !== undefined && previousKeys?.get(c.name) === key && old.retain()
        clusters.set(c.name, reuse ? old : new Cluster(c, { metrics: options.metrics, log: options.log, tls }))
        clusterKeys.set(c.name, key)
      }
      for (const r of config.routes) {
        const cluster = clusters.get(r.cluster)
        if (cluster === undefined) throw new Error(`route "${r.name}" names an unknown cluster "${r.cluster}"`)
        const upstream = upstreamClient(cluster, { headers: r.timeouts?.request, body: r.timeouts?.idle })
        const pipeline = await buildPipeline(r, { metrics: options.metrics.registry, log: options.log, upstream })
        routes.push(new CompiledRoute(r, cluster, pipeline, new RouteMetrics(options.metrics, r.name), config.limits.maxBodySize, accessLog))
      }
    } catch (err) {
      // Clusters taken over from `previous` are only let go of, not drained.
      await Promise.allSettled([...routes.map((r) => r.pipeline.close()), ...[...clusters.values()].map((c) => c.retire(0))])
      throw err
    }
    return new Snapshot(config, options.source, version, clusters, clusterKeys, routes, new RouteMetrics(options.metrics, '__unmatched__'), accessLog)
  }

  /** Admin purge across every route's caches (or one route's); how many entries went. */
  async purge (selector: PurgeSelector, route?: string): Promise<number> {
    let n = 0
    for (const r of this.routes) if (route === undefined || r.name === route) n += await r.pipeline.purge(selector)
    return n
  }

  /** What the admin `/config` endpoint shows. */
  describe (): Record<string, unknown> {
    return { version: this.version, source: this.source, loadedAt: this.loadedAt.toISOString(), config: redactConfig(this.config) }
  }

  /**
   * Called once a newer snapshot serves: waits (up to `deadlineMs`) for this
   * one's in-flight requests, then closes its plugins and the pools of the
   * clusters no newer snapshot took over.
   */
  async retire (deadlineMs: number): Promise<void> {
    if (this.#retired) return
    this.#retired = true
    // Requests still in their request phase (a plugin awaiting Redis or a key
    // set) have not dispatched yet: closing the pools or the plugins now would
    // fail them. They are waited for first, within the same deadline.
    const until = performance.now() + deadlineMs
    while (this.inflight > 0 && performance.now() < until) await new Promise((resolve) => setTimeout(resolve, 25))
    const left = Math.max(0, until - performance.now())
    await Promise.all([...this.clusters.values()].map((c) => c.retire(left)))
    await Promise.allSettled(this.routes.map((r) => r.pipeline.close()))
  }
}

/** A short content hash: the same document always has the same version. */
export function configVersion (config: Config): string {
  return createHash('sha256').update(JSON.stringify(config)).digest('hex').slice(0, 12)
}

/**
 * Everything a Cluster is built from: its config and the TLS material read
 * for it (a renewed certificate under the same file name needs new pools).
 */
function clusterKey (config: ClusterConfig, tls: UpstreamTlsOptions | undefined): string {
  const hash = createHash('sha256').update(JSON.stringify(config))
  if (tls !== undefined) {
    hash.update(JSON.stringify({ servername: tls.servername, rejectUnauthorized: tls.rejectUnauthorized }))
    for (const pem of [tls.ca, tls.cert, tls.key]) hash.update(`\0${pem?.length ?? -1}\0`).update(pem ?? '')
  }
  return hash.digest('hex')
}

/** Retry policies and circuit breakers are built on cockatiel. */
function usesCockatiel (config: Config): boolean {
  return config.routes.some((r) => r.retry !== undefined) || config.clusters.some((c) => c.retry !== undefined || c.circuitBreaker !== undefined)
}
