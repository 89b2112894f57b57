import cluster, { type Worker } from 'node:cluster'
import type { Config } from './config/schema.ts'
import { deepFreeze } from './config/path.ts'
import { createMetrics, metricsJson, WorkerMetrics, type MetricJson } from './metrics.ts'
import { createAdminServer } from './admin.ts'
import { createReloader, watchConfigFile } from './reload.ts'
import { installCrashGuards } from './run.ts'
import { flushAccessLogs, reopenAccessLogs } from './access-log.ts'
import { startProxy, type RunningProxy } from './proxy.ts'
import { configVersion } from './snapshot.ts'
import { redactConfig } from './config/redact.ts'
import type { Level, Logger } from './log.ts'
import type { PurgeSelector } from './plugin.ts'

/**
 * Multi-core mode: a primary process that owns the config, the admin listener
 * and the workers' lifecycle, and N workers that each bind the proxy port with
 * SO_REUSEPORT (the kernel spreads connections; the primary never touches
 * proxied traffic). The config is loaded and validated once, in the primary,
 * and the parsed document is sent to every worker over IPC: a worker never
 * reads the file, so one started after a refused edit (a crashed worker's
 * replacement) serves the primary's last good config.
 */

/** What the primary asks and waits for: the reply carries the request's id. */
type Request =
  | { type: 'apply', config: Config }
  | { type: 'state' }
  | { type: 'purge', selector: PurgeSelector, route: string | undefined }
  | { type: 'metrics' }

type Reply =
  | { type: 'applied', id: number, ok: boolean, version?: string, error?: string }
  | { type: 'state', id: number, body: unknown }
  | { type: 'purged', id: number, count: number }
  | { type: 'metrics', id: number, metrics: MetricJson[] }

type ToWorker =
  | (Request & { id: number })
  | { type: 'start', config: Config }
  | { type: 'weight-hint', cluster: string, endpoint: string, weight: number | undefined }
  | { type: 'log-level', level: Level }
  | { type: 'reopen-logs' }
  | { type: 'shutdown' }

type FromWorker =
  | Reply
  | { type: 'hello' }
  | { type: 'ready', version: string }

const RESTART_MIN_MS = 500
const RESTART_MAX_MS = 30_000
/**
 * How long a scrape waits for each worker. One starting, stopped or stuck is
 * in that scrape with its last answer: Prometheus gets every series, not a 500.
 */
const METRICS_WAIT_MS = 2000
/** A worker that has not applied a config by then counts as having refused it. */
const APPLY_WAIT_MS = 30_000

export async function runPrimary (file: string, initial: Config, count: number, log: Logger): Promise<void> {
  /** The committed config: every ready worker applied it. New workers start on it. */
  let config = initial
  let shuttingDown = false
  let reloading = false
  const ready = new Set<number>()
  /** Worker id → the version it serves, as it last said. */
  const versions = new Map<number, string>()
  let restartDelay = RESTART_MIN_MS
  let lastCrash = 0
  let requestSeq = 0
  const pending = new Map<number, { worker: number, done: (reply: Reply | undefined) => void }>()
  const metrics = new WorkerMetrics()
  // The primary loaded it (cli.ts): the one load it counts for the workers' starts.
  metrics.configReloads.labels('success').inc()

  const send = (w: Worker, msg: ToWorker): void => { if (w.isConnected()) w.send(msg) }
  const workers = (): Worker[] => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined)
  /** Asks one worker: its reply, or undefined when it exits or has not answered within `timeoutMs`. */
  const ask = (w: Worker, request: Request, timeoutMs: number): Promise<Reply | undefined> => new Promise((resolve) => {
    if (!w.isConnected()) { resolve(undefined); return }
    const id = ++requestSeq
    const done = (reply: Reply | undefined): void => { clearTimeout(timer); pending.delete(id); resolve(reply) }
    const timer = setTimeout(() => { done(undefined) }, timeoutMs)
    pending.set(id, { worker: w.id, done })
    send(w, { ...request, id })
  })
  /** Brings a worker to the committed config (one that started during a reload, or took a refused one). */
  const sync = (w: Worker): void => {
    if (ready.has(w.id) && versions.get(w.id) !== configVersion(config)) void ask(w, { type: 'apply', config }, APPLY_WAIT_MS)
  }

  const fork = (): void => {
    const w = cluster.fork({ OUTRIDER_WORKER_REUSEPORT: '1' })
    w.on('message', (msg: FromWorker) => {
      switch (msg.type) {
        // Asked for, not sent with the fork: a message that arrives before the
        // worker listens is lost.
        // Draining already: a worker that comes up now only has to go.
        case 'hello': send(w, shuttingDown ? { type: 'shutdown' } : { type: 'start', config }); break
        case 'ready':
          ready.add(w.id)
          versions.set(w.id, msg.version)
          sync(w)
          break
        case 'applied':
          if (!msg.ok) log.error('worker failed to apply config', { worker: w.id, error: msg.error })
          else if (msg.version !== undefined) versions.set(w.id, msg.version)
          pending.get(msg.id)?.done(msg)
          // One that answered after its reload gave up on it.
          if (msg.ok && !reloading) sync(w)
          break
        case 'metrics':
          // Kept even when it comes too late for its scrape: the next one may
          // need it. Empty is a failed collection (a registry lists its
          // metrics even before they have values): the last answer stands.
          if (msg.metrics.length > 0 && !w.isDead()) metrics.answered(w.id, msg.metrics)
          pending.get(msg.id)?.done(msg)
          break
        case 'state':
        case 'purged': pending.get(msg.id)?.done(msg); break
      }
    })
  }

  cluster.on('exit', (w, code, signal) => {
    ready.delete(w.id)
    versions.delete(w.id)
    metrics.exited(w.id)
    for (const p of pending.values()) if (p.worker === w.id) p.done(undefined)
    if (shuttingDown) return
    // Crash loop protection: back off when workers die in quick succession.
    const now = Date.now()
    restartDelay = now - lastCrash < RESTART_MAX_MS ? Math.min(restartDelay * 2, RESTART_MAX_MS) : RESTART_MIN_MS
    lastCrash = now
    log.error('worker exited; restarting', { worker: w.id, code, signal, inMs: restartDelay })
    setTimeout(() => { if (!shuttingDown) fork() }, restartDelay).unref()
  })

  for (let i = 0; i < count; i++) fork()

  // Committed once every ready worker applied it, and at least one did: the
  // primary only checks the schema, so a config no worker built (none ready:
  // all restarting, or still starting) is never taken, nor one a worker died
  // applying. When one refuses, those that took it go back to the committed
  // config: all workers serve one version.
  const applyEverywhere = async (next: Config): Promise<void> => {
    reloading = true
    try {
      const targets = workers().filter((w) => ready.has(w.id))
      if (targets.length === 0) throw new Error('no worker is ready to build it (keeping the running config; reload again once workers are up)')
      const replies = await Promise.all(targets.map((w) => ask(w, { type: 'apply', config: next }, APPLY_WAIT_MS)))
      const refused = targets.flatMap((w, i) => {
        const r = replies[i]
        if (r?.type === 'applied' && r.ok) return []
        return [r?.type === 'applied' ? r.error : w.isConnected() ? 'no answer' : 'the worker exited while applying it']
      })
      if (refused.length === 0) config = next
      for (const w of workers()) sync(w)
      if (refused.length > 0) throw new Error(`${refused.length} of ${targets.length} workers could not apply it: ${refused[0]}`)
    } finally {
      reloading = false
    }
  }
  // Counted once here: each worker's own count is left out of /metrics.
  const countedApply = async (next: Config): Promise<void> => {
    try {
      await applyEverywhere(next)
    } catch (err) {
      metrics.configReloads.labels('failure').inc()
      throw err
    }
    metrics.configReloads.labels('success').inc()
  }
  const reload = createReloader(file, countedApply, log, () => { metrics.configReloads.labels('failure').inc() })
  const stopWatching = watchConfigFile(file, () => { void reload() })
  process.on('SIGHUP', () => { void reload() })
  // Log rotation: the access-log files are the workers'. Relayed as a message,
  // not as the signal: a worker with no file open has no SIGUSR2 handler.
  process.on('SIGUSR2', () => { for (const w of workers()) send(w, { type: 'reopen-logs' }) })
  installCrashGuards(log)

  const admin = createAdminServer({
    version: () => configVersion(config),
    config: () => ({ version: configVersion(config), source: file, workers: count, config: redactConfig(config) }),
    // Endpoint state is per process: ask one ready worker.
    clusters: async () => {
      const w = workers().find((x) => ready.has(x.id))
      if (w === undefined) throw new Error('no ready worker')
      const reply = await ask(w, { type: 'state' }, 2000)
      if (reply?.type !== 'state') throw new Error('worker did not answer')
      return reply.body
    },
    // Every worker balances on its own: the hint goes to all of them.
    setWeightHint: (clusterName, endpoint, weight) => {
      if (!config.clusters.some((c) => c.name === clusterName && c.loadBalancer.policy === 'peak_ewma' && c.endpoints.some((e) => new URL(e.url).origin === endpoint))) return false
      for (const w of workers()) send(w, { type: 'weight-hint', cluster: clusterName, endpoint, weight })
      return true
    },
    // Each worker has its own L1: all of them purge, and the counts add up.
    purge: async (selector, route) => {
      const replies = await Promise.all(workers().filter((x) => ready.has(x.id)).map((w) => ask(w, { type: 'purge', selector, route }, 5000)))
      return replies.reduce((n, r) => n + (r?.type === 'purged' ? r.count : 0), 0)
    },
    setLogLevel: (level) => {
      log.setLevel(level)
      for (const w of workers()) send(w, { type: 'log-level', level })
    },
    ready: () => ready.size === count,
    draining: () => shuttingDown,
    // Each worker's registry, merged by each metric's aggregator (prom-client's
    // cluster protocol, with a wait per worker instead of one for all).
    metrics: async () => {
      const targets = workers().filter((w) => w.isConnected())
      const replies = await Promise.all(targets.map((w) => ask(w, { type: 'metrics' }, METRICS_WAIT_MS)))
      const answered = replies.filter((r) => r?.type === 'metrics' && r.metrics.length > 0).length
      // None answering is a failed scrape (500), not one Prometheus would take as up.
      if (answered === 0) throw new Error(`no worker answered in time (${targets.length} asked)`)
      if (answered < targets.length) log.warn('metrics: workers that did not answer in time are in this scrape with their last answer', { answered, workers: targets.length })
      const registry = await metrics.merge(targets.map((w) => w.id), targets.length - answered)
      return { contentType: registry.contentType, body: await registry.metrics() }
    },
  }, log)
  if (config.admin.enabled) admin.listen(config.admin.port, config.admin.host)
  log.info('primary started', { workers: count, admin: config.admin.enabled ? `${config.admin.host}:${config.admin.port}` : null })

  const stop = (signal: string): void => {
    if (shuttingDown) return
    shuttingDown = true
    stopWatching()
    log.info(`${signal}: draining workers`)
    for (const w of workers()) send(w, { type: 'shutdown' })
    const deadline = setTimeout(() => {
      for (const w of workers()) w.process.kill('SIGKILL')
    }, config.shutdown.drainTimeout + 5000)
    deadline.unref()
    const check = setInterval(() => {
      if (workers().length === 0) {
        clearInterval(check)
        admin.close()
        process.exit(0)
      }
    }, 50)
  }
  process.on('SIGTERM', () => { stop('SIGTERM') })
  process.on('SIGINT', () => { stop('SIGINT') })
}

export async function runWorker (file: string, log: Logger): Promise<void> {
  const send = (msg: FromWorker): void => { if (process.connected) process.send?.(msg) }
  // Until it serves, a worker has nothing to drain: the primary gone, it goes.
  const orphaned = (): void => { process.exit(0) }
  process.on('disconnect', orphaned)
  // Answered from the first moment, starting or not.
  const metrics = createMetrics()
  process.on('message', (msg: ToWorker) => {
    if (msg.type !== 'metrics') return
    metricsJson(metrics.registry).then((m) => { send({ type: 'metrics', id: msg.id, metrics: m }) }, (err: unknown) => {
      log.error('metrics collection failed', { err })
      send({ type: 'metrics', id: msg.id, metrics: [] })
    })
  })
  const config = await new Promise<Config>((resolve) => {
    const onStart = (msg: ToWorker): void => {
      if (msg.type === 'shutdown') process.exit(0)
      if (msg.type !== 'start') return
      process.off('message', onStart)
      resolve(deepFreeze(msg.config))
    }
    process.on('message', onStart)
    send({ type: 'hello' })
  })
  let proxy: RunningProxy
  // A shutdown asked for while the proxy starts (a slow Redis, say) is kept
  // for when it is up, not dropped: the worker would serve on into the drain.
  let shutdownAsked = false
  const early = (msg: ToWorker): void => { if (msg.type === 'shutdown') shutdownAsked = true }
  process.on('message', early)
  try {
    proxy = await startProxy({ config, source: file, log, metrics, admin: false, reusePort: true })
  } catch (err) {
    // Exit, so the primary restarts it with back-off: the IPC channel would
    // keep a worker that serves nothing alive for ever.
    log.error('worker failed to start', { err })
    flushAccessLogs()
    process.exit(1)
  }
  process.off('disconnect', orphaned)
  process.off('message', early)
  installCrashGuards(log)
  send({ type: 'ready', version: proxy.snapshot.version })
  let stopping = false
  const stop = (): void => {
    if (stopping) return
    stopping = true
    proxy.shutdown().finally(() => { flushAccessLogs(); process.exit(0) })
  }
  process.on('message', (msg: ToWorker) => {
    switch (msg.type) {
      case 'apply':
        proxy.apply(deepFreeze(msg.config), file).then(
          (s) => { send({ type: 'applied', id: msg.id, ok: true, version: s.version }) },
          (err: unknown) => { send({ type: 'applied', id: msg.id, ok: false, error: err instanceof Error ? err.message : String(err) }) },
        )
        break
      case 'state':
        send({ type: 'state', id: msg.id, body: { version: proxy.snapshot.version, worker: process.pid, clusters: [...proxy.snapshot.clusters.values()].map((c) => c.state()) } })
        break
      case 'weight-hint': proxy.snapshot.clusters.get(msg.cluster)?.setWeightHint(msg.endpoint, msg.weight); break
      case 'log-level': log.setLevel(msg.level); break
      case 'purge':
        proxy.snapshot.purge(msg.selector, msg.route).then((count) => { send({ type: 'purged', id: msg.id, count }) }, (err: unknown) => {
          log.error('cache purge failed', { err })
          send({ type: 'purged', id: msg.id, count: 0 })
        })
        break
      case 'reopen-logs': reopenAccessLogs(); break
      case 'shutdown': stop(); break
    }
  })
  // The primary relays signals; a terminal's Ctrl-C reaches the whole group.
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  process.on('SIGHUP', () => {})
  // Relayed as 'reopen-logs'; one sent to the whole process group must not
  // end a worker that has no access-log file (and so no handler of its own).
  process.on('SIGUSR2', () => {})
  process.on('disconnect', stop)
  if (shutdownAsked) stop()
}
