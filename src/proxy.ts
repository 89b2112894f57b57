import type http from 'node:http'
import type { AddressInfo } from 'node:net'
import { once } from 'node:events'
import type { Config } from './config/schema.ts'
import { Snapshot } from './snapshot.ts'
import { ProxyListener } from './listener.ts'
import { createAdminServer, registryMetrics, snapshotSource, type AdminSource } from './admin.ts'
import { createMetrics, type ProxyMetrics } from './metrics.ts'
import { createLogger, type Logger } from './log.ts'
import { loadListenTls } from './tls.ts'
import type { Tracing } from './tracing.ts'

export interface StartOptions {
  config: Config
  /** Where the config came from (file path, `control-plane`, …): shown on /config. */
  source?: string
  log?: Logger
  metrics?: ProxyMetrics
  /** Serve the admin listener here (a multi-worker primary serves it instead). */
  admin?: boolean
  /** Bind with SO_REUSEPORT so several workers share the port (node:cluster). */
  reusePort?: boolean
  /** Overrides the metrics the admin endpoint serves (cluster-wide aggregation). */
  adminMetrics?: AdminSource['metrics']
  /** Extra condition for /ready (e.g. config heard from the control plane); always ready without it. */
  ready?: () => boolean
}

/** A running data plane: one listener, its admin endpoints and the active snapshot. */
export interface RunningProxy {
  readonly port: number
  readonly adminPort: number | undefined
  readonly snapshot: Snapshot
  readonly metrics: ProxyMetrics
  readonly log: Logger
  /**
   * Builds a snapshot from `config` and swaps it in. On failure the old snapshot
   * keeps serving and the error is rethrown (and counted).
   */
  apply (config: Config, source?: string): Promise<Snapshot>
  /** Stops accepting, lets in-flight requests finish (up to the deadline), closes everything. */
  shutdown (deadlineMs?: number): Promise<void>
}

export async function startProxy (options: StartOptions): Promise<RunningProxy> {
  const log = options.log ?? createLogger()
  const metrics = options.metrics ?? createMetrics()
  const config = options.config
  let snapshot: Snapshot
  try {
    snapshot = await Snapshot.build(config, { source: options.source ?? 'inline', metrics, log })
  } catch (err) {
    metrics.configReloads.labels('failure').inc()
    throw err
  }
  metrics.configReloads.labels('success').inc()
  metrics.configVersion.labels(snapshot.version).set(1)

  // A start-up that fails after the build (TLS files, a port in use) retires
  // the snapshot: its pools and health checks must not outlive the throw
  // (managed mode falls back and starts again in the same process).
  const abandon = async (err: unknown, tracing?: Tracing): Promise<never> => {
    await tracing?.shutdown(0)
    await snapshot.retire(0)
    throw err
  }
  const tls = config.listen.tls === undefined ? undefined : await loadListenTls(config.listen.tls, options.source ?? 'inline').catch((err: unknown) => abandon(err))
  // One tracer provider per process, for its whole life (a reload keeps it).
  // Loaded only when configured: without tracing the OpenTelemetry SDK is
  // never even imported.
  const tracing: Tracing | undefined = config.tracing?.enabled === true
    ? (await import('./tracing.ts')).Tracing.create(config.tracing, log, metrics.registry)
    : undefined
  const listener = new ProxyListener(snapshot, { metrics, log, tls, http2: config.listen.tls?.http2, h2c: config.listen.h2c, tracer: tracing })
  let draining = false
  let admin: http.Server | undefined
  listener.server.listen({ host: config.listen.host, port: config.listen.port, reusePort: options.reusePort === true, exclusive: options.reusePort === true })
  await once(listener.server, 'listening').catch((err: unknown) => abandon(err, tracing))
  const port = (listener.server.address() as AddressInfo).port

  let adminPort: number | undefined
  if ((options.admin ?? true) && config.admin.enabled) {
    admin = createAdminServer(snapshotSource(() => listener.current, {
      ready: options.ready ?? (() => true),
      draining: () => draining,
      metrics: options.adminMetrics ?? registryMetrics(metrics.registry),
    }), log)
    admin.listen(config.admin.port, config.admin.host)
    try {
      await once(admin, 'listening')
    } catch (err) {
      listener.server.close()
      await abandon(err, tracing)
    }
    adminPort = (admin.address() as AddressInfo).port
  }
  log.info('proxy listening', { address: `${config.listen.host}:${port}`, admin: adminPort === undefined ? null : `${config.admin.host}:${adminPort}`, version: snapshot.version })

  // Snapshots a reload replaced, until their requests are done: a shutdown
  // drains them too.
  const retiring = new Set<Snapshot>()
  const retire = (snap: Snapshot, deadlineMs: number): Promise<void> => {
    retiring.add(snap)
    return snap.retire(deadlineMs).finally(() => { retiring.delete(snap) })
  }
  /** Requests in flight on every snapshot still serving any. */
  const inflight = (): number => {
    let n = listener.current.inflight
    for (const snap of retiring) n += snap.inflight
    return n
  }

  // Reloads are serialised: two quick edits must not race to swap.
  let applying: Promise<unknown> = Promise.resolve()
  const apply = (next: Config, source?: string): Promise<Snapshot> => {
    const run = applying.then(async () => {
      let built: Snapshot
      let nextTls: Awaited<ReturnType<typeof loadListenTls>> | undefined
      try {
        // Certificates are re-read on every reload (renewals need no restart).
        if (next.listen.tls !== undefined && tls !== undefined) nextTls = await loadListenTls(next.listen.tls, source ?? listener.current.source)
        built = await Snapshot.build(next, { source: source ?? listener.current.source, metrics, log, previous: listener.current })
      } catch (err) {
        metrics.configReloads.labels('failure').inc()
        throw err
      }
      const old = listener.current
      listener.current = built
      listener.applyLimits(next)
      if (nextTls !== undefined) listener.setTls(nextTls)
      metrics.configReloads.labels('success').inc()
      metrics.configVersion.reset()
      metrics.configVersion.labels(built.version).set(1)
      if (next.listen.port !== old.config.listen.port || next.listen.host !== old.config.listen.host ||
        (next.listen.tls === undefined) !== (tls === undefined) || next.listen.h2c !== old.config.listen.h2c ||
        next.limits.maxHeaderSize !== old.config.limits.maxHeaderSize) {
        log.warn('listen address, TLS on/off, h2c and maxHeaderSize changes take effect on restart', { version: built.version })
      }
      if (JSON.stringify(next.tracing) !== JSON.stringify(config.tracing)) {
        log.warn('tracing changes take effect on restart (the tracer provider is made once per process)', { version: built.version })
      }
      log.info('config applied', { version: built.version, previous: old.version })
      retire(old, old.config.shutdown.drainTimeout).catch((err: unknown) => { log.error('retiring the old snapshot failed', { err }) })
      return built
    })
    applying = run.catch(() => {})
    return run
  }

  let shuttingDown: Promise<void> | undefined
  const shutdown = (deadlineMs?: number): Promise<void> => {
    shuttingDown ??= (async () => {
      draining = true
      const snap = listener.current
      const deadline = deadlineMs ?? snap.config.shutdown.drainTimeout
      listener.beginDrain()
      const t0 = Date.now()
      while (inflight() > 0 && Date.now() - t0 < deadline) await new Promise((resolve) => setTimeout(resolve, 25))
      if (inflight() > 0) log.warn('drain deadline reached, closing remaining connections', { inflight: inflight() })
      listener.destroyTunnels()
      listener.closeAll()
      await snap.retire(Math.max(0, deadline - (Date.now() - t0)))
      if (admin !== undefined) { admin.closeAllConnections(); admin.close() }
      // Spans of the last requests are still queued: export them before exit.
      await tracing?.shutdown()
      log.info('proxy stopped')
    })()
    return shuttingDown
  }

  return {
    port,
    adminPort,
    get snapshot () { return listener.current },
    metrics,
    log,
    apply,
    shutdown,
  }
}
