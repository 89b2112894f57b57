import { readFile } from 'node:fs/promises'
import * as grpc from '@grpc/grpc-js'
import { createLogger, type Logger } from '../src/log.ts'
import type { TokenTable } from './auth.ts'
import { DesiredConfig } from './desired-config.ts'
import { Fleet } from './fleet.ts'
import { FileStore, type StateStore } from './store.ts'
import { RedisStore } from './redis-store.ts'
import { TrafficTotals } from './traffic.ts'
import { Analytics, type AnalyticsOptions } from './analytics.ts'
import { RouteForecasts } from './route-forecast.ts'
import { RuleEngine } from './rule-engine.ts'
import type { WebhookSenderOptions } from './webhook.ts'
import { FleetTelemetry } from './fleet-telemetry.ts'
import * as configDiscovery from './services/config-discovery.ts'
import * as operator from './services/operator.ts'
import * as telemetry from './services/telemetry.ts'

export interface ControlPlaneOptions {
  /** host:port to listen on; port 0 picks a free one. */
  listen: string
  /** A file path (the embedded store), a redis:// or rediss:// URL (shared by replicas), or any StateStore (closed by its owner). */
  store: string | StateStore
  /** Bearer tokens and roles; undefined disables auth (every caller is admin: development only). */
  tokens: TokenTable | undefined
  /** PEM files; without them the port speaks plaintext gRPC. */
  tls?: { cert: string, key: string, clientCa?: string }
  log?: Logger
  historyLimit?: number
  auditLimit?: number
  /** Analytics tiers and route bound. */
  analytics?: Omit<AnalyticsOptions, 'now'>
  /** The clock (ms) for analytics, forecasts and rules; tests replace it. */
  now?: () => number
  /** How often rules are evaluated (ms); 0 stops the timer (call rules.tick()). Default 10 s. */
  ruleIntervalMs?: number
  /** Rule webhooks: first back-off (ms) and deliveries in flight at most. */
  webhooks?: Omit<WebhookSenderOptions, 'log'>
}

export interface RunningControlPlane {
  readonly port: number
  /** `host:port` as clients dial it. */
  readonly address: string
  readonly desired: DesiredConfig
  readonly fleet: Fleet
  readonly traffic: TrafficTotals
  readonly analytics: Analytics
  /** Reports counted here and relayed between replicas. */
  readonly telemetry: FleetTelemetry
  readonly forecasts: RouteForecasts
  readonly rules: RuleEngine
  /** Ends every config stream (data planes reconnect elsewhere or later), then stops. */
  close (): Promise<void>
  /** Drops every connection at once, as a crash would. */
  kill (): void
}

/**
 * The control plane (ARCHITECTURE §4): the three gRPC services over one
 * desired config, one fleet view and the traffic totals.
 *
 * @example
 * const cp = await startControlPlane({ listen: '127.0.0.1:50051', store: './cp-store.json', tokens: await loadTokenFile('tokens.yaml') })
 */
export async function startControlPlane (options: ControlPlaneOptions): Promise<RunningControlPlane> {
  const log = options.log ?? createLogger()
  const owned = typeof options.store === 'string'
  const store: StateStore = typeof options.store !== 'string' ? options.store
    : /^rediss?:\/\//.test(options.store) ? new RedisStore(options.store) : new FileStore(options.store)
  const fleet = new Fleet()
  const desired = await DesiredConfig.open(store, { historyLimit: options.historyLimit, auditLimit: options.auditLimit, labelSets: () => fleet.labelSets() })
  const traffic = new TrafficTotals()
  const analytics = new Analytics({ ...options.analytics, now: options.now })
  const forecasts = new RouteForecasts(analytics)
  // With a shared store every replica counts every data plane's reports: analytics and rules are fleet-wide.
  const fleetTelemetry = new FleetTelemetry({ traffic, analytics, ...(store.relay === undefined ? {} : { relay: store.relay }), log })
  await fleetTelemetry.start()
  const ruleIntervalMs = options.ruleIntervalMs ?? 10_000
  const lease = store.lease?.bind(store)
  const rules = new RuleEngine({
    desired,
    analytics,
    forecasts,
    log,
    intervalMs: ruleIntervalMs,
    ...(options.webhooks === undefined ? {} : { webhooks: options.webhooks }),
    now: options.now,
    // Several replicas: one runs the rules at a time (its lease outlives a few missed evaluations).
    ...(lease === undefined ? {} : { mayRun: () => lease(Math.max(30_000, 3 * ruleIntervalMs)) }),
  })
  const tokens = options.tokens

  const server = new grpc.Server({
    // Data planes hold their stream for days: let dead peers be noticed.
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 5_000,
  })
  const discovery = configDiscovery.register(server, { desired, fleet, tokens, log })
  operator.register(server, { desired, fleet, traffic, analytics, forecasts, rules, tokens, log })
  const reports = telemetry.register(server, { telemetry: fleetTelemetry, tokens, log })

  const credentials = options.tls === undefined
    ? grpc.ServerCredentials.createInsecure()
    : grpc.ServerCredentials.createSsl(
      options.tls.clientCa === undefined ? null : await readFile(options.tls.clientCa),
      [{ cert_chain: await readFile(options.tls.cert), private_key: await readFile(options.tls.key) }],
      options.tls.clientCa !== undefined,
    )
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(options.listen, credentials, (err, p) => { if (err === null) resolve(p); else reject(err) })
  })
  const host = options.listen.slice(0, options.listen.lastIndexOf(':'))
  const address = `${host}:${port}`
  rules.start()
  log.info('control plane listening', { address, tls: options.tls !== undefined, auth: tokens !== undefined, version: desired.current?.version ?? 0 })
  if (tokens === undefined) log.warn('authentication is off (--no-auth): anyone who reaches the port can change the config')

  let closing: Promise<void> | undefined
  return {
    port,
    address,
    desired,
    fleet,
    traffic,
    analytics,
    telemetry: fleetTelemetry,
    forecasts,
    rules,
    close () {
      closing ??= new Promise<void>((resolve) => {
        rules.stop()
        fleetTelemetry.close()
        discovery.endAll()
        reports.endAll()
        const timer = setTimeout(() => { server.forceShutdown(); resolve() }, 5_000)
        server.tryShutdown(() => { clearTimeout(timer); resolve() })
      }).then(async () => {
        desired.close()
        if (owned) await store.close?.()
        log.info('control plane stopped')
      })
      return closing
    },
    kill () {
      rules.stop()
      fleetTelemetry.close()
      desired.close()
      server.forceShutdown()
      if (owned) void store.close?.()
    },
  }
}
