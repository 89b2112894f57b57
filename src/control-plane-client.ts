import { EventEmitter } from 'node:events'
import { mkdir, readFile, rename } from 'node:fs/promises'
import path from 'node:path'
import { randomUUID } from 'node:crypto'
import * as grpc from '@grpc/grpc-js'
import { parseConfigOffThread } from './config/off-thread.ts'
import type { Config } from './config/schema.ts'
import { MAX_TIMER_MS } from './config/units.ts'
import { ConfigError, type ConfigIssue } from './errors.ts'
import type { Logger } from './log.ts'
import type { ProxyMetrics } from './metrics.ts'
import { startProxy, type RunningProxy, type StartOptions } from './proxy.ts'
import { installCrashGuards, onStopSignals } from './run.ts'
import { services } from '../control-plane/protos.ts'
import { MAX_PUSH_BYTES, channelCredentials, sendsTokenInClear, tokenMetadata, type ConnectOptions } from '../control-plane/operator-client.ts'
import { writeFileAtomic } from '../control-plane/store.ts'
import type * as pb from '../control-plane/generated/types.ts'

/**
 * The data plane's side of `ConfigDiscovery.Stream` (ARCHITECTURE §4):
 * subscribe with node id, labels and the version already running; apply each
 * pushed document and ACK it, or NACK it with the error and keep the old
 * one; cache the last config that applied on disk so a restart while the
 * control plane is down still serves; reconnect with exponential back-off and
 * jitter.
 */

export interface ControlPlaneClientOptions extends ConnectOptions {
  /** `host:port` of the control plane. */
  address: string
  nodeId: string
  labels?: Record<string, string>
  /** Applies a validated config; throwing NACKs it (the running config stays). */
  apply: (config: Config, version: string) => Promise<unknown>
  log: Logger
  /** Where the last-known-good config is kept; no cache without it. */
  cacheDir?: string
  /** The version (and document hash, and weight hints) already running, e.g. from the cache. */
  running?: { version: string, hash: string, weightHints?: pb.WeightHint[] }
  /** Resolves `${NAME}` references in pushed documents (default: process.env). */
  env?: NodeJS.ProcessEnv
  /** Reconnect back-off: the first delay and the cap (ms). */
  backoff?: { initialMs?: number, maxMs?: number }
  /**
   * Applies one weight hint (undefined clears it) to the running snapshot:
   * `Cluster.setWeightHint`, the path the admin API's weight-hints endpoint
   * takes. False when the cluster or endpoint is not in the snapshot.
   */
  setWeightHint?: (cluster: string, endpoint: string, weight: number | undefined) => boolean
  /** Per-route counters to report every `intervalMs` over Telemetry.Report. */
  telemetry?: { intervalMs: number, read: () => Promise<pb.RouteCounters[]> }
}

/** What the cache file holds: the pushed document as it came, and what identified it. */
export interface CachedConfig {
  version: string
  hash: string
  configJson: string
  /** The control plane's weight hints with it (absent in caches written before hints existed). */
  weightHints?: pb.WeightHint[]
  savedAt: string
}

const CACHE_FILE = 'outrider-config-cache.json'

/**
 * A fresh channel per attempt with a subchannel of its own (see #connect),
 * and keepalive pings, so a control plane that vanished without closing the
 * connection (a partition) is noticed in half a minute.
 */
const CHANNEL_OPTIONS = {
  'grpc.use_local_subchannel_pool': 1,
  'grpc.keepalive_time_ms': 20_000,
  'grpc.keepalive_timeout_ms': 10_000,
} as const

type TelemetryCall = grpc.ClientWritableStream<pb.TelemetryReport>
type DiscoveryStream = grpc.ClientDuplexStream<pb.DiscoveryRequest, pb.DiscoveryResponse>

/** Events: `applied` (version), `rejected` (version, error), `connected`, `disconnected` (grpc status code), `weight-hints` (how many are in force). */
export class ControlPlaneClient extends EventEmitter {
  readonly #options: ControlPlaneClientOptions
  readonly #log: Logger
  readonly #instance = randomUUID()
  /** Numbers this process's telemetry reports, so replicas count each once. */
  #reportSequence = 0
  #client: grpc.Client | undefined
  #stream: DiscoveryStream | undefined
  #version: string
  #hash: string
  #received = false
  #attempt = 0
  #timer: NodeJS.Timeout | undefined
  #closed = false
  #pending: { stream: DiscoveryStream, response: pb.DiscoveryResponse } | undefined
  #draining: Promise<void> | undefined
  #telemetry: { timer: NodeJS.Timeout, call: TelemetryCall | undefined, reading: boolean, writing: TelemetryCall | undefined } | undefined
  #reports = { sent: 0, skipped: 0 }
  /** The control plane's hints in force, `cluster\0endpoint` → weight: the ones it drops are cleared. */
  #hints = new Map<string, number>()

  constructor (options: ControlPlaneClientOptions) {
    super()
    this.#options = options
    this.#log = options.log.child({ controlPlane: options.address })
    this.#version = options.running?.version ?? ''
    this.#hash = options.running?.hash ?? ''
    if (sendsTokenInClear(options.address, options)) this.#log.warn('the control-plane token is sent in plaintext: give --cp-ca (or a client certificate) for TLS')
  }

  /** The version of the config applied last ('' before any). */
  get version (): string { return this.#version }
  /** True once a config pushed by the control plane was applied in this process. */
  get received (): boolean { return this.#received }
  get connected (): boolean { return this.#stream !== undefined }
  /** Telemetry reports written, and skipped because the one before was not sent yet. */
  get reports (): { readonly sent: number, readonly skipped: number } { return { ...this.#reports } }

  /** Opens the stream (and keeps it open until close()). */
  start (): void {
    // Cached hints steer the cached config until the control plane says otherwise.
    if (this.#options.running?.weightHints !== undefined) this.#applyHints(this.#options.running.weightHints)
    this.#connect()
    const t = this.#options.telemetry
    if (t !== undefined) {
      this.#telemetry = { timer: setInterval(() => { void this.#report() }, t.intervalMs), call: undefined, reading: false, writing: undefined }
      this.#telemetry.timer.unref()
    }
  }

  /** Ends the stream and stops reconnecting. */
  close (): void {
    this.#closed = true
    clearTimeout(this.#timer)
    if (this.#telemetry !== undefined) {
      clearInterval(this.#telemetry.timer)
      this.#telemetry.call?.end()
    }
    const stream = this.#stream
    this.#stream = undefined
    stream?.cancel()
    this.#client?.close()
  }

  #connect (): void {
    if (this.#closed) return
    // A fresh channel per attempt, with a subchannel of its own: gRPC's shared
    // subchannels keep their own reconnect back-off (up to 2 minutes), which
    // would delay the resync after the control plane comes back.
    this.#client?.close()
    const Client = services().ConfigDiscovery
    this.#client = new Client(this.#options.address, channelCredentials(this.#options), {
      ...CHANNEL_OPTIONS,
      'grpc.max_receive_message_length': MAX_PUSH_BYTES,
    })
    const stream = (this.#client as unknown as { Stream: (md: grpc.Metadata) => DiscoveryStream }).Stream(tokenMetadata(this.#options.token))
    this.#stream = stream
    let answered = false
    stream.on('data', (response: pb.DiscoveryResponse) => {
      if (this.#stream !== stream) return
      if (!answered) {
        answered = true
        // Back-off starts over once the control plane answers.
        this.#attempt = 0
        this.emit('connected')
      }
      this.#pending = { stream, response }
      this.#draining ??= this.#drain().finally(() => { this.#draining = undefined })
    })
    stream.on('error', (err: grpc.ServiceError) => { this.#lost(stream, err.code, err.details) })
    stream.on('end', () => { this.#lost(stream, grpc.status.UNAVAILABLE, 'stream ended') })
    stream.write(this.#request(''))
  }

  #lost (stream: DiscoveryStream, code: grpc.status, details: string): void {
    if (this.#stream !== stream) return
    this.#stream = undefined
    this.emit('disconnected', code)
    if (this.#closed) return
    const delay = backoffDelay(this.#attempt++, this.#options.backoff)
    const fields = { code: grpc.status[code], details, retryInMs: delay, running: this.#version || null }
    if (code === grpc.status.UNAUTHENTICATED || code === grpc.status.PERMISSION_DENIED) this.#log.error('the control plane refused this data plane\'s token', fields)
    else this.#log.warn('control plane unreachable; serving the current config, retrying', fields)
    this.#timer = setTimeout(() => { this.#connect() }, delay)
    this.#timer.unref()
  }

  /** Applies pushes one at a time; a push that arrives meanwhile replaces any older one still waiting. */
  async #drain (): Promise<void> {
    while (this.#pending !== undefined) {
      const { stream, response } = this.#pending
      this.#pending = undefined
      const answer = await this.#handle(response)
      if (this.#stream === stream) stream.write(answer)
    }
  }

  async #handle (res: pb.DiscoveryResponse): Promise<pb.DiscoveryRequest> {
    if (res.contentHash !== '' && res.contentHash === this.#hash) {
      // The document already runs (a resubscription, or a rollback to it): no rebuild, no lost balancer state.
      this.#version = res.versionInfo
      this.#received = true
      this.#applyHints(res.weightHints)
      await this.#saveCache(res)
      this.#log.info('control plane confirmed the running config', { version: res.versionInfo })
      this.emit('applied', res.versionInfo)
      return this.#request(res.nonce)
    }
    try {
      const config = await parseConfigOffThread(res.configJson, `control-plane@v${res.versionInfo}.json`, this.#options.env)
      // Closed while the document was validated: nothing may start now.
      if (this.#closed) return this.#request(res.nonce)
      await this.#options.apply(config, res.versionInfo)
    } catch (err) {
      const detail = errorDetail(err)
      // Valid, only not in place: the next start runs it (Envoy, too, NACKs a listener change it cannot make live).
      if (err instanceof RestartRequiredError) await this.#saveCache(res)
      this.#log.error('config from the control plane refused; keeping the running config', { version: res.versionInfo, running: this.#version || null, error: detail.message })
      this.emit('rejected', res.versionInfo, err)
      return { ...this.#request(res.nonce), errorDetail: detail }
    }
    this.#version = res.versionInfo
    this.#hash = res.contentHash
    this.#received = true
    // A new snapshot has new balancers: every hint is set again.
    this.#applyHints(res.weightHints)
    await this.#saveCache(res)
    this.#log.info('config from the control plane applied', { version: res.versionInfo })
    this.emit('applied', res.versionInfo)
    return this.#request(res.nonce)
  }

  /** Sets every pushed hint and clears those the control plane no longer sends (hints set through the admin API are left alone). */
  #applyHints (hints: readonly pb.WeightHint[] | undefined): void {
    const set = this.#options.setWeightHint
    if (set === undefined) return
    const next = new Map((hints ?? []).map((h) => [`${h.cluster}\0${h.endpoint}`, h.weight]))
    for (const key of this.#hints.keys()) {
      if (next.has(key)) continue
      const [cluster = '', endpoint = ''] = key.split('\0')
      set(cluster, endpoint, undefined)
    }
    let missing = 0
    for (const [key, weight] of next) {
      const [cluster = '', endpoint = ''] = key.split('\0')
      if (!set(cluster, endpoint, weight)) missing++
    }
    if (missing > 0) this.#log.debug('weight hints for clusters or endpoints this node does not run (or whose balancer takes no hints) ignored', { missing })
    if (next.size > 0 || this.#hints.size > 0) this.emit('weight-hints', next.size)
    this.#hints = next
  }

  #request (nonce: string): pb.DiscoveryRequest {
    return { nodeId: this.#options.nodeId, labels: this.#options.labels ?? {}, versionInfo: this.#version, responseNonce: nonce, errorDetail: null }
  }

  async #saveCache (res: pb.DiscoveryResponse): Promise<void> {
    const dir = this.#options.cacheDir
    if (dir === undefined) return
    const cached: CachedConfig = { version: res.versionInfo, hash: res.contentHash, configJson: res.configJson, weightHints: res.weightHints ?? [], savedAt: new Date().toISOString() }
    try {
      await mkdir(dir, { recursive: true })
      await writeFileAtomic(path.join(dir, CACHE_FILE), JSON.stringify(cached) + '\n')
    } catch (err) {
      // The config is applied either way; only a restart without the control plane is affected.
      this.#log.error('could not cache the config', { dir, err })
    }
  }

  async #report (): Promise<void> {
    const t = this.#telemetry
    const read = this.#options.telemetry?.read
    if (t === undefined || read === undefined || this.#closed || this.#client === undefined) return
    if (t.reading || (t.call !== undefined && t.writing === t.call)) {
      // A control plane that stopped reading (or a network that dropped its
      // packets) must not make reports pile up here: the counters are
      // cumulative, so the next report sent carries this one's counts too.
      this.#reports.skipped++
      this.#log.debug('telemetry report skipped: the previous one is not sent yet', { skipped: this.#reports.skipped })
      return
    }
    let routes: pb.RouteCounters[]
    t.reading = true
    try { routes = await read() } catch (err) { this.#log.warn('reading route counters failed', { err }); return } finally { t.reading = false }
    if (this.#closed) return
    if (t.call === undefined) {
      const Client = services().Telemetry
      const client = new Client(this.#options.address, channelCredentials(this.#options), CHANNEL_OPTIONS)
      const call = (client as unknown as { Report: (md: grpc.Metadata, cb: (err: grpc.ServiceError | null) => void) => TelemetryCall })
        .Report(tokenMetadata(this.#options.token), (err) => {
          // The next tick opens a new stream: cumulative counters lose nothing meanwhile.
          if (t.call === call) t.call = undefined
          client.close()
          if (err !== null && err.code !== grpc.status.CANCELLED) this.#log.debug('telemetry stream closed', { code: grpc.status[err.code] })
        })
      call.on('error', () => {})
      t.call = call
    }
    const call = t.call
    t.writing = call
    call.write({ nodeId: this.#options.nodeId, instance: this.#instance, at: new Date().toISOString(), routes, sequence: ++this.#reportSequence } satisfies pb.TelemetryReport, () => {
      if (t.writing === call) t.writing = undefined
    })
    this.#reports.sent++
  }
}

/**
 * Full-jitter-ish exponential back-off: the cap doubles per attempt up to
 * `maxMs`, and the delay is drawn from its upper half, so a fleet that lost
 * its control plane at one moment does not reconnect at one moment.
 */
export function backoffDelay (attempt: number, options: { initialMs?: number, maxMs?: number } = {}): number {
  const initial = options.initialMs ?? 500
  const max = options.maxMs ?? 30_000
  const cap = Math.min(max, initial * 2 ** Math.min(attempt, 30))
  return Math.round(cap / 2 + Math.random() * cap / 2)
}

/**
 * A pushed config that changes what a running proxy cannot change in place
 * (its listeners, TLS on/off, h2c, the header-size limit, tracing): NACKed,
 * so the fleet view does not show a node "in sync" that still listens as
 * before.
 */
export class RestartRequiredError extends Error {
  readonly issues: ConfigIssue[]

  constructor (issues: ConfigIssue[], then: string) {
    super(`changing ${issues.map((i) => `${i.path} (${i.expected})`).join(', ')} needs a restart; ${then}`)
    this.issues = issues
  }
}

/** Where `next` differs from `running` in a way only a new process applies (proxy.ts builds these once). */
export function restartOnlyChanges (running: Config, next: Config): ConfigIssue[] {
  const fields: Array<[string, (c: Config) => unknown]> = [
    ['listen.host', (c) => c.listen.host],
    ['listen.port', (c) => c.listen.port],
    ['listen.tls', (c) => c.listen.tls === undefined ? 'off' : 'on'],
    ['listen.tls.http2', (c) => c.listen.tls?.http2],
    ['listen.h2c', (c) => c.listen.h2c],
    ['admin.enabled', (c) => c.admin.enabled],
    ['admin.host', (c) => c.admin.host],
    ['admin.port', (c) => c.admin.port],
    ['limits.maxHeaderSize', (c) => c.limits.maxHeaderSize],
    ['tracing', (c) => c.tracing],
  ]
  const issues: ConfigIssue[] = []
  for (const [at, get] of fields) {
    const [was, now] = [JSON.stringify(get(running)) ?? 'unset', JSON.stringify(get(next)) ?? 'unset']
    if (was !== now) issues.push({ path: at, expected: `${was} → ${now}` })
  }
  return issues
}

function errorDetail (err: unknown): pb.ErrorDetail {
  if (err instanceof ConfigError || err instanceof RestartRequiredError) return { message: err.message, issues: err.issues.map((i) => ({ path: i.path, expected: i.expected })) }
  return { message: err instanceof Error ? err.message : String(err), issues: [] }
}

/** The cached config, validated again (this node's environment may have changed); undefined when there is none or it is unusable. */
export async function readCachedConfig (cacheDir: string, log: Logger, env?: NodeJS.ProcessEnv): Promise<{ cached: CachedConfig, config: Config } | undefined> {
  const file = path.join(cacheDir, CACHE_FILE)
  let cached: CachedConfig
  try {
    cached = JSON.parse(await readFile(file, 'utf8')) as CachedConfig
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn('config cache unreadable; ignoring it', { file, err })
    return undefined
  }
  try {
    return { cached, config: await parseConfigOffThread(cached.configJson, `${file}@v${cached.version}.json`, env) }
  } catch (err) {
    log.warn('cached config no longer valid; ignoring it', { file, detail: (err as Error).message })
    return undefined
  }
}

/** Renames the cache file to `<file>.bad` (replacing an older one); the new name, or undefined when it could not be moved. */
async function moveCacheAside (cacheDir: string): Promise<string | undefined> {
  const file = path.join(cacheDir, CACHE_FILE)
  try {
    await rename(file, `${file}.bad`)
    return `${file}.bad`
  } catch {
    return undefined
  }
}

/** Per-route cumulative counters from this process's metrics, for Telemetry.Report. */
export async function readRouteCounters (metrics: ProxyMetrics): Promise<pb.RouteCounters[]> {
  const byRoute = new Map<string, pb.RouteCounters>()
  const entry = (route: string): pb.RouteCounters => {
    let e = byRoute.get(route)
    if (e === undefined) { e = { route, requests: 0, errors: 0, latencyBounds: [], latencyCounts: [] }; byRoute.set(route, e) }
    return e
  }
  for (const v of (await metrics.requests.get()).values) {
    const e = entry(String(v.labels.route))
    e.requests += v.value
    if (v.labels.status_class === '5xx') e.errors += v.value
  }
  for (const v of (await metrics.requestDuration.get()).values) {
    if (v.metricName !== 'outrider_request_duration_seconds_bucket') continue
    const e = entry(String(v.labels.route))
    const le = String((v.labels as Record<string, unknown>).le)
    if (le !== '+Inf') e.latencyBounds.push(Number(le))
    e.latencyCounts.push(v.value)
  }
  return [...byRoute.values()]
}

export interface ManagedProxyOptions extends Omit<ControlPlaneClientOptions, 'apply' | 'running' | 'telemetry'> {
  /** How often route counters are reported (ms); 0 disables reporting. Default 5000. */
  telemetryIntervalMs?: number
  /** Served until the control plane's first config arrives (with /ready false); without it (and without a cache) nothing listens until then. */
  bootstrap?: Config
  /** Passed to startProxy (metrics, admin, …). */
  start?: Partial<Omit<StartOptions, 'config' | 'source' | 'ready' | 'log'>>
}

/** A proxy fed by the control plane. */
export interface ManagedProxy {
  readonly client: ControlPlaneClient
  /** The running proxy; undefined while waiting for the first config. */
  readonly proxy: RunningProxy | undefined
  /** Resolves with the proxy once it runs (at once when it started from the cache or a bootstrap config). */
  readonly started: Promise<RunningProxy>
  /** True when it runs a config from the control plane: received in this process, or cached from an earlier one. */
  ready (): boolean
  /** Closes the stream, then drains and stops the proxy. */
  shutdown (deadlineMs?: number): Promise<void>
}

/**
 * Starts a data plane whose config comes from the control plane. Boot order:
 * the cached last-known-good config if there is one (so a restart while the
 * control plane is down still serves), else a bootstrap config if given
 * (served with /ready false), else nothing listens until the first config
 * arrives: the listener's address is part of that config.
 *
 * @example
 * const dp = await startManagedProxy({ address: '10.0.0.5:50051', nodeId: 'web-1', token, cacheDir: '/var/cache/outrider', log })
 * const proxy = await dp.started
 */
export async function startManagedProxy (options: ManagedProxyOptions): Promise<ManagedProxy> {
  const log = options.log
  let cache = options.cacheDir === undefined ? undefined : await readCachedConfig(options.cacheDir, log, options.env)
  let fromCache = false
  let proxy: RunningProxy | undefined
  let resolveStarted!: (p: RunningProxy) => void
  let rejectStarted!: (err: unknown) => void
  const started = new Promise<RunningProxy>((resolve, reject) => { resolveStarted = resolve; rejectStarted = reject })
  started.catch(() => {})
  let client: ControlPlaneClient | undefined
  const ready = (): boolean => fromCache || client?.received === true
  let waiting: NodeJS.Timeout | undefined
  const start = async (config: Config, source: string): Promise<RunningProxy> => {
    const p = await startProxy({ ...options.start, config, source, log, ready })
    proxy = p
    clearInterval(waiting)
    resolveStarted(p)
    return p
  }

  if (cache !== undefined && options.cacheDir !== undefined) {
    log.info('starting on the cached config from the control plane', { version: cache.cached.version, savedAt: cache.cached.savedAt })
    fromCache = true
    try {
      await start(cache.config, `control-plane v${cache.cached.version} (cache)`)
    } catch (err) {
      // Valid but not buildable here (a TLS file gone): it would fail every
      // start, so it is put aside and this node runs the bootstrap config or
      // waits for the control plane's.
      fromCache = false
      const movedTo = await moveCacheAside(options.cacheDir)
      log.error('the cached config does not start; moved aside, starting without it', { version: cache.cached.version, movedTo: movedTo ?? null, error: errorDetail(err).message })
      cache = undefined
    }
  }
  if (!fromCache && options.bootstrap !== undefined) await start(options.bootstrap, 'bootstrap')
  else if (!fromCache) log.info('waiting for the first config from the control plane', { address: options.address })
  // Until a proxy listens nothing else holds the event loop (the client's
  // timers are unref'd): without this handle the process would exit 0 while
  // the control plane is down, instead of retrying.
  if (proxy === undefined) waiting = setInterval(() => {}, MAX_TIMER_MS)

  // What a restart would run, for the NACK of a config only a restart applies.
  const afterRestart = options.cacheDir !== undefined ? 'cached: the next start runs it'
    : options.bootstrap === undefined ? 'the next start runs it'
      : 'the next start serves the bootstrap config again (no --cache-dir): make its sections agree, or give a cache directory'
  client = new ControlPlaneClient({
    ...options,
    running: cache === undefined ? undefined : { version: cache.cached.version, hash: cache.cached.hash, weightHints: cache.cached.weightHints },
    setWeightHint: (cluster, endpoint, weight) => proxy?.snapshot.clusters.get(cluster)?.setWeightHint(endpoint, weight) ?? false,
    apply: async (config, version) => {
      if (proxy === undefined) { await start(config, `control-plane v${version}`); return }
      const changes = restartOnlyChanges(proxy.snapshot.config, config)
      if (changes.length > 0) throw new RestartRequiredError(changes, afterRestart)
      await proxy.apply(config, `control-plane v${version}`)
    },
    telemetry: options.telemetryIntervalMs === 0 ? undefined : {
      intervalMs: options.telemetryIntervalMs ?? 5_000,
      read: () => proxy === undefined ? Promise.resolve([]) : readRouteCounters(proxy.metrics),
    },
  })
  try {
    client.start()
  } catch (err) {
    // An address gRPC cannot parse: nothing may hold the process now.
    clearInterval(waiting)
    throw err
  }

  let stopping: Promise<void> | undefined
  return {
    client,
    get proxy () { return proxy },
    started,
    ready,
    shutdown (deadlineMs) {
      stopping ??= (async () => {
        clearInterval(waiting)
        client.close()
        if (proxy !== undefined) await proxy.shutdown(deadlineMs)
        else rejectStarted(new Error('shut down before the first config arrived'))
      })()
      return stopping
    },
  }
}

/**
 * `outrider --control-plane …`: a managed proxy with the process wiring of
 * `runSingle` (crash guards, drain on SIGTERM/SIGINT). SIGHUP has nothing to
 * reload: the control plane is the config's only source.
 */
export async function runWithControlPlane (options: ManagedProxyOptions): Promise<ManagedProxy> {
  const log = options.log
  installCrashGuards(log)
  const dp = await startManagedProxy(options)
  process.on('SIGHUP', () => { log.info('SIGHUP ignored: the config comes from the control plane') })
  onStopSignals(log, () => dp.proxy?.snapshot.config.shutdown.drainTimeout, () => dp.shutdown())
  return dp
}

/** `k=v,k2=v2` → labels; throws on a malformed pair. */
export function parseLabels (text: string): Record<string, string> {
  const labels: Record<string, string> = {}
  for (const pair of text.split(',').map((p) => p.trim()).filter((p) => p !== '')) {
    const eq = pair.indexOf('=')
    const key = pair.slice(0, eq)
    if (eq <= 0 || !/^[A-Za-z0-9_.\/-]+$/.test(key)) throw new Error(`--labels: "${pair}" is not key=value (keys of letters, digits, _ . / -)`)
    labels[key] = pair.slice(eq + 1)
  }
  return labels
}
