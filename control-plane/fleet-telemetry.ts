import type { Logger } from '../src/log.ts'
import { latencyBoundsProblem, type Analytics, type RouteDelta } from './analytics.ts'
import type { Relay } from './store.ts'
import type { RouteCounts, TrafficTotals } from './traffic.ts'

/** One report as a data plane sends it (TelemetryReport without the gRPC types). */
export interface NodeReport {
  nodeId: string
  instance: string
  /** 0: unnumbered. */
  sequence: number
  routes: readonly RouteCounts[]
}

/**
 * What a replica relays per report: the node's cumulative counters (so a
 * lost relay loses nothing: the next one covers it) and, per route, the
 * increases the receiving replica counted (for a replica that has no
 * earlier report of the node to subtract). `t` is the time (s) the
 * receiving replica placed the report at, so every replica files it in the
 * same interval.
 */
interface Relayed {
  v: 1
  t: number
  node: string
  instance: string
  seq: number
  routes: RouteCounts[]
  /** Per route, in the same order: [requests, errors, per-bucket increases]. */
  inc: Array<[number, number, number[]]>
}

export interface FleetTelemetryStats {
  /** Reports from data planes connected to this replica. */
  local: number
  /** Reports relayed by other replicas and counted here. */
  received: number
  /** Reports dropped as already counted (or older than one that was). */
  duplicates: number
  /** Relays that could not be sent (the store was unreachable) or were dropped (too many pending). */
  relayFailures: number
  /** Relayed messages that could not be read. */
  malformed: number
}

export interface FleetTelemetryOptions {
  traffic: TrafficTotals
  analytics: Analytics
  /** The shared store's channel; absent: this replica is alone and sees only its own data planes. */
  relay?: Relay
  log: Logger
  /** Relays in flight at most; more are dropped (counted) rather than queued without bound. Default 1000. */
  maxPending?: number
}

/**
 * Makes every replica's traffic totals and analytics fleet-wide: a report
 * from a data plane connected here is counted and relayed to the other
 * replicas, which count it too. Each replica runs the same (node, instance,
 * sequence) de-duplication over the reports, direct or relayed
 * (traffic.ts), so a report is counted once wherever it arrived, and rules
 * on the lease holder see the whole fleet.
 *
 * @example
 * const fleetTelemetry = new FleetTelemetry({ traffic, analytics, relay: store.relay, log })
 * await fleetTelemetry.start()
 * fleetTelemetry.local({ nodeId: 'web-1', instance, sequence: 7, routes })
 */
export class FleetTelemetry {
  readonly #o: FleetTelemetryOptions
  readonly #maxPending: number
  #pending = 0
  #failing = false
  #subscription: { ready: Promise<void>, close (): void } | undefined
  readonly stats: FleetTelemetryStats = { local: 0, received: 0, duplicates: 0, relayFailures: 0, malformed: 0 }

  constructor (options: FleetTelemetryOptions) {
    this.#o = options
    this.#maxPending = options.maxPending ?? 1000
  }

  /** Starts taking relayed reports; resolves when the subscription is in place (or failed: it retries by itself). */
  async start (): Promise<void> {
    if (this.#o.relay === undefined || this.#subscription !== undefined) return
    this.#subscription = this.#o.relay.subscribe((message) => { this.#received(message) })
    await this.#subscription.ready.catch((err: unknown) => { this.#o.log.warn('telemetry relay: could not subscribe yet', { err }) })
  }

  close (): void {
    this.#subscription?.close()
    this.#subscription = undefined
  }

  /** A report from a data plane connected here: counted, then relayed. False when it was already counted. */
  local (report: NodeReport): boolean {
    const t = this.#o.analytics.now()
    const deltas = this.#count(report, t)
    if (deltas === undefined) return false
    this.stats.local++
    this.#relay(report, deltas, t)
    return true
  }

  #count (report: NodeReport, t: number, known?: readonly RouteDelta[]): RouteDelta[] | undefined {
    const deltas = this.#o.traffic.report(report.nodeId, report.instance, report.routes, { sequence: report.sequence, ...(known === undefined ? {} : { known }) })
    if (deltas === undefined) {
      this.stats.duplicates++
      return undefined
    }
    this.#o.analytics.record(report.nodeId, deltas, t)
    return deltas
  }

  #relay (report: NodeReport, deltas: readonly RouteDelta[], t: number): void {
    const relay = this.#o.relay
    if (relay === undefined) return
    if (this.#pending >= this.#maxPending) {
      this.stats.relayFailures++
      return
    }
    const message: Relayed = {
      v: 1,
      t,
      node: report.nodeId,
      instance: report.instance,
      seq: report.sequence,
      routes: [...report.routes],
      inc: deltas.map((d) => [d.requests, d.errors, [...d.buckets]]),
    }
    this.#pending++
    // Never awaited by the report stream: a slow or absent Redis costs the other replicas' view, not ingestion.
    relay.publish(JSON.stringify(message)).then(() => {
      if (this.#failing) this.#o.log.info('telemetry relay: publishing again')
      this.#failing = false
    }, (err: unknown) => {
      this.stats.relayFailures++
      // One warning per outage, not one per report.
      if (!this.#failing) this.#o.log.warn('telemetry relay: could not publish (other replicas miss this node\'s traffic until it works again)', { err })
      this.#failing = true
    }).finally(() => { this.#pending-- })
  }

  #received (text: string): void {
    let m: Relayed
    try {
      m = JSON.parse(text) as Relayed
      if (m.v !== 1 || typeof m.node !== 'string' || !Array.isArray(m.routes) || !Array.isArray(m.inc)) throw new Error('not a version 1 relay')
      const problem = reportProblem(m)
      if (problem !== undefined) throw new Error(problem)
    } catch (err) {
      this.stats.malformed++
      this.#o.log.debug('telemetry relay: unreadable message', { err })
      return
    }
    const known: RouteDelta[] = m.routes.map((r, i) => {
      const [requests, errors, buckets] = m.inc[i] ?? [0, 0, []]
      return { route: r.route, requests, errors, bounds: r.latencyBounds, buckets }
    })
    if (this.#count({ nodeId: m.node, instance: m.instance, sequence: m.seq, routes: m.routes }, m.t, known) !== undefined) this.stats.received++
  }
}

/** Why a report is refused (the first route whose bounds latencyBoundsProblem refuses), or undefined. */
export function reportProblem (report: { routes: readonly RouteCounts[] }): string | undefined {
  for (const r of report.routes) {
    const problem = latencyBoundsProblem(r.latencyBounds)
    if (problem !== undefined) return `route "${r.route}": ${problem}`
  }
  return undefined
}
