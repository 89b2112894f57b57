import { readFile } from 'node:fs/promises'
import * as grpc from '@grpc/grpc-js'
import { createLogger, type Logger } from '../src/log.ts'
import type { TokenTable } from './auth.ts'
import { DesiredConfig } from './desired-config.ts'
import { Fleet } from './fleet.ts'
import { FileStore, type StateStore } from './store.ts'
import { TrafficTotals } from './traffic.ts'
import * as configDiscovery from './services/config-discovery.ts'
import * as operator from './services/operator.ts'
import * as telemetry from './services/telemetry.ts'

export interface ControlPlaneOptions {
  /** host:port to listen on; port 0 picks a free one. */
  listen: string
  /** The embedded file store, or any StateStore. */
  store: string | StateStore
  /** Bearer tokens and roles; undefined disables auth (every caller is admin: development only). */
  tokens: TokenTable | undefined
  /** PEM files; without them the port speaks plaintext gRPC. */
  tls?: { cert: string, key: string, clientCa?: string }
  log?: Logger
  historyLimit?: number
  auditLimit?: number
}

export interface RunningControlPlane {
  readonly port: number
  /** `host:port` as clients dial it. */
  readonly address: string
  readonly desired: DesiredConfig
  readonly fleet: Fleet
  readonly traffic: TrafficTotals
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
  const store = typeof options.store === 'string' ? new FileStore(options.store) : options.store
  const desired = await DesiredConfig.open(store, { historyLimit: options.historyLimit, auditLimit: options.auditLimit })
  const fleet = new Fleet()
  const traffic = new TrafficTotals()
  const tokens = options.tokens

  const server = new grpc.Server({
    // Data planes hold their stream for days: let dead peers be noticed.
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 5_000,
  })
  const discovery = configDiscovery.register(server, { desired, fleet, tokens, log })
  operator.register(server, { desired, fleet, traffic, tokens, log })
  const reports = telemetry.register(server, { traffic, tokens, log })

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
  log.info('control plane listening', { address, tls: options.tls !== undefined, auth: tokens !== undefined, version: desired.current?.version ?? 0 })
  if (tokens === undefined) log.warn('authentication is off (--no-auth): anyone who reaches the port can change the config')

  let closing: Promise<void> | undefined
  return {
    port,
    address,
    desired,
    fleet,
    traffic,
    close () {
      closing ??= new Promise<void>((resolve) => {
        discovery.endAll()
        reports.endAll()
        const timer = setTimeout(() => { server.forceShutdown(); resolve() }, 5_000)
        server.tryShutdown(() => { clearTimeout(timer); resolve() })
      }).then(() => { log.info('control plane stopped') })
      return closing
    },
    kill () {
      server.forceShutdown()
    },
  }
}
