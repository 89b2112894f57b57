import { Client } from 'undici'
import type { HealthCheckConfig } from '../config/schema.ts'
import type { UpstreamTlsOptions } from '../tls.ts'
import type { Logger } from '../log.ts'

/**
 * Active health checks (issue #3): every endpoint is probed with an HTTP GET of
 * `path`, as Envoy's HTTP health checker does.
 *
 * Initial state: an endpoint is healthy until proven otherwise. Envoy instead
 * marks new hosts failed until their first check passes, but it also holds the
 * cluster "warming" (no traffic) until that first round is done. We have no
 * warming phase, so starting unhealthy would turn every snapshot reload into
 * up to one interval of 503s. What we keep from Envoy's startup rule: until an
 * endpoint's first verdict, a single passing probe is enough to report it
 * healthy, while failing it still takes `unhealthyThreshold` failures.
 */

/** Where verdicts go; EndpointHealth implements it. */
export interface ActiveVerdictSink {
  setActive (index: number, ok: boolean, reason?: string): void
}

/** An endpoint to probe: only its origin is used. */
export interface ProbeTarget {
  readonly url: string
  /** Probed over HTTP/2, as the cluster's traffic is (`protocol: http2`). */
  readonly http2?: boolean
}

export interface ActiveHealthCheckerOptions {
  logger?: Logger
  /** The cluster's TLS settings for https:// endpoints (CA bundle, client certificate): probes need them as traffic does. */
  tls?: UpstreamTlsOptions
  /** Random source for jitter, in [0, 1). Default Math.random. */
  random?: () => number
  /**
   * Called after every probe (for metrics): `detail` is the status code, or
   * the error code of a failed probe (`timeout`, `ECONNREFUSED`, …).
   */
  onProbe?: (index: number, ok: boolean, detail: string) => void
}

export interface ProbeState {
  state: 'unchecked' | 'healthy' | 'unhealthy'
  consecutivePasses: number
  consecutiveFailures: number
  /** Status code or error code of the last probe. */
  last?: string
  lastProbeAt?: string
}

const USER_AGENT = 'outrider-health-check'
/** The first probe of an endpoint waits a random part of this (or of the interval, if shorter). */
const FIRST_PROBE_SPREAD = 1_000
/** Health endpoints answer little; a bigger body is cut (and its connection closed) rather than read. */
const PROBE_BODY_LIMIT = 64 * 1024

class ProbeTimeoutError extends Error {
  readonly code = 'timeout'
}

interface Target {
  readonly index: number
  readonly origin: string
  /** Dedicated to probes, so they never count as (or queue behind) traffic. */
  readonly client: Client
  readonly run: () => void
  timer: NodeJS.Timeout | undefined
  inflight: AbortController | undefined
  state: ProbeState['state']
  passes: number
  failures: number
  last: string | undefined
  lastAt: number
}

/**
 * Probes the endpoints of one cluster and reports verdict changes to a sink.
 * One probe per endpoint at a time: the next is scheduled `interval` (±
 * `jitter`) after the previous finished, so a slow endpoint is never probed
 * by overlapping requests.
 *
 * Built per snapshot; `stop()` is final.
 *
 * @example
 * const health = new EndpointHealth(cluster.endpoints, { panicThreshold: cfg.panicThreshold })
 * const checker = new ActiveHealthChecker(cluster.endpoints, cfg.healthCheck, health, { logger })
 * checker.start()
 * // when the snapshot is retired:
 * await checker.stop()
 */
export class ActiveHealthChecker {
  readonly #config: HealthCheckConfig
  readonly #sink: ActiveVerdictSink
  readonly #log: Logger | undefined
  readonly #random: () => number
  readonly #onProbe: ActiveHealthCheckerOptions['onProbe']
  readonly #headers: Record<string, string>
  readonly #targets: Target[]
  #running = false
  #stopped = false

  constructor (endpoints: readonly ProbeTarget[], config: HealthCheckConfig, sink: ActiveVerdictSink, options: ActiveHealthCheckerOptions = {}) {
    this.#config = config
    this.#sink = sink
    this.#log = options.logger
    this.#random = options.random ?? Math.random
    this.#onProbe = options.onProbe
    this.#headers = { 'user-agent': USER_AGENT }
    if (config.host !== undefined) this.#headers.host = config.host
    this.#targets = endpoints.map((e, index) => {
      const origin = new URL(e.url).origin
      const target: Target = {
        index,
        origin,
        client: new Client(origin, {
          ...(e.http2 === true ? { allowH2: true, useH2c: origin.startsWith('http:') } : { allowH2: false, pipelining: 1 }),
          connect: { ...(e.http2 === true ? { preferH2: true } : {}), ...options.tls },
          connectTimeout: config.timeout,
          headersTimeout: config.timeout,
          bodyTimeout: config.timeout,
          // Envoy reuses the probe connection by default; keep it for a bit
          // more than one interval so a steady checker holds one socket.
          keepAliveTimeout: Math.max(config.interval * 2, 1_000),
        }),
        run: () => { this.#probe(target).catch((err: unknown) => { this.#log?.error('health check probe failed unexpectedly', { endpoint: origin, err }) }) },
        timer: undefined,
        inflight: undefined,
        state: 'unchecked',
        passes: 0,
        failures: 0,
        last: undefined,
        lastAt: 0,
      }
      return target
    })
  }

  /** Starts probing; the first probe of each endpoint follows after a random short delay. */
  start (): void {
    if (this.#running || this.#stopped) return
    this.#running = true
    const spread = Math.min(this.#config.interval, FIRST_PROBE_SPREAD)
    for (const t of this.#targets) this.#schedule(t, this.#random() * spread)
  }

  /** Cancels every timer and probe and closes the probe connections. Final. */
  async stop (): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    this.#running = false
    for (const t of this.#targets) {
      clearTimeout(t.timer)
      t.timer = undefined
      t.inflight?.abort()
    }
    await Promise.all(this.#targets.map((t) => t.client.destroy().catch(() => {})))
  }

  /** What the admin endpoint shows of one endpoint's probes. */
  describe (index: number): ProbeState | undefined {
    const t = this.#targets[index]
    if (t === undefined) return undefined
    const out: ProbeState = { state: t.state, consecutivePasses: t.passes, consecutiveFailures: t.failures }
    if (t.last !== undefined) out.last = t.last
    if (t.lastAt !== 0) out.lastProbeAt = new Date(t.lastAt).toISOString()
    return out
  }

  #schedule (t: Target, delay: number): void {
    if (!this.#running) return
    t.timer = setTimeout(t.run, Math.max(0, delay))
    t.timer.unref()
  }

  /** interval ± jitter × interval, so probes from many sidecars drift apart. */
  #nextDelay (): number {
    const { interval, jitter } = this.#config
    return Math.max(1, interval * (1 + jitter * (2 * this.#random() - 1)))
  }

  async #probe (t: Target): Promise<void> {
    t.timer = undefined
    if (!this.#running) return
    const ac = new AbortController()
    t.inflight = ac
    // One deadline for the whole probe, body included; undici's own timeouts
    // only bound each phase.
    // A timeout of 0 means none, as for undici's own timeouts.
    const deadline = this.#config.timeout > 0
      ? setTimeout(() => { ac.abort(new ProbeTimeoutError('health check timed out')) }, this.#config.timeout).unref()
      : undefined
    let ok = false
    let detail: string
    try {
      const res = await t.client.request({ method: 'GET', path: this.#config.path, headers: this.#headers, signal: ac.signal })
      detail = String(res.statusCode)
      // Read the body so the connection can be reused; a huge body is cut.
      await res.body.dump({ limit: PROBE_BODY_LIMIT })
      ok = this.#config.expectedStatuses.includes(res.statusCode)
    } catch (err) {
      detail = errorCode(ac.signal.aborted && ac.signal.reason instanceof ProbeTimeoutError ? ac.signal.reason : err)
    } finally {
      clearTimeout(deadline)
      t.inflight = undefined
    }
    if (!this.#running) return
    t.last = detail
    t.lastAt = Date.now()
    try {
      this.#onProbe?.(t.index, ok, detail)
      this.#count(t, ok, detail)
    } finally {
      this.#schedule(t, this.#nextDelay())
    }
  }

  #count (t: Target, ok: boolean, detail: string): void {
    if (ok) {
      t.failures = 0
      t.passes++
      if (t.state === 'healthy') return
      if (t.state === 'unchecked' || t.passes >= this.#config.healthyThreshold) {
        const was = t.state
        t.state = 'healthy'
        if (was === 'unhealthy') this.#log?.info('endpoint passes health checks again', { endpoint: t.origin, passes: t.passes })
        this.#sink.setActive(t.index, true, 'active-check-passed')
      }
      return
    }
    t.passes = 0
    t.failures++
    if (t.state !== 'unhealthy' && t.failures >= this.#config.unhealthyThreshold) {
      t.state = 'unhealthy'
      this.#log?.warn('endpoint fails health checks', { endpoint: t.origin, failures: t.failures, last: detail })
      this.#sink.setActive(t.index, false, 'active-check-failed')
    }
  }
}

function errorCode (err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string') return code
  return (err as { name?: string } | null)?.name ?? 'error'
}
