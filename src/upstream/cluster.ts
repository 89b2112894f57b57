import { Pool } from 'undici'
import type { ClusterConfig } from '../config/schema.ts'
import type { HeaderMap } from '../plugin.ts'
import type { ProxyMetrics } from '../metrics.ts'
import type { Logger } from '../log.ts'
import type { Balancer, BalancedEndpoint } from './balancer.ts'
import { createBalancer } from './balancers/index.ts'
import { createHashKeyExtractor } from './balancers/consistent-hash.ts'
import { EndpointHealth } from './endpoint-health.ts'
import { OutlierDetector, type AttemptOutcome, type EjectionSink } from './outlier-detection.ts'
import { ActiveHealthChecker } from './health-check.ts'
import { CircuitBreaker, type BreakerState } from './circuit-breaker.ts'
import { RetryBudget } from './retry.ts'
import type { UpstreamTlsOptions } from '../tls.ts'

const BREAKER_GAUGE: Record<BreakerState, number> = { closed: 0, 'half-open': 1, open: 2 }

/** One upstream endpoint: its pooled keep-alive connections and live state. */
export class Endpoint implements BalancedEndpoint {
  readonly id: string
  readonly index: number
  readonly url: string
  readonly weight: number
  readonly pool: Pool
  /** Spoken to in HTTP/2 (the cluster's `protocol`). */
  readonly http2: boolean
  /** The cluster's TLS settings for an https:// endpoint (WebSocket relays need them too). */
  readonly tls: UpstreamTlsOptions | undefined
  /** Pool size: more in-flight requests than this are queued (pending). */
  readonly connections: number
  inflight = 0
  healthy = true
  breaker: CircuitBreaker | undefined = undefined

  constructor (index: number, url: string, weight: number, cfg: ClusterConfig, connections: number, tls: UpstreamTlsOptions | undefined) {
    const origin = new URL(url).origin
    this.id = origin
    this.index = index
    this.url = url
    this.weight = weight
    this.connections = connections
    const h2 = cfg.protocol === 'http2'
    this.http2 = h2
    this.tls = tls
    this.pool = new Pool(origin, {
      connections,
      // HTTP/1.1: pipelining would let one slow response stall the ones queued
      // behind it. HTTP/2 multiplexes: undici's own stream limit applies
      // (100, or less if the server says so). `allowH2: false` makes http1
      // mean HTTP/1.1 even where ALPN could offer h2.
      ...(h2 ? { allowH2: true, useH2c: origin.startsWith('http:') } : { allowH2: false, pipelining: 1 }),
      keepAliveTimeout: cfg.timeouts.keepAlive,
      keepAliveMaxTimeout: Math.max(cfg.timeouts.keepAlive, 1000),
      // With http2, offer h2 first in ALPN: undici's default order puts
      // http/1.1 first, and a server honouring the client's order picks it.
      connect: { timeout: cfg.timeouts.connect, ...(h2 ? { preferH2: true } : {}), ...tls },
      headersTimeout: cfg.timeouts.request,
      bodyTimeout: cfg.timeouts.idle,
      strictContentLength: true,
    })
  }
}

export type OverloadLimit = 'max_requests' | 'max_pending_requests' | 'circuit_open'

/**
 * A named set of endpoints, the policy that picks among them and the
 * machinery that keeps bad endpoints out of the pick, layered in this order:
 *
 * - overload limits first: cheap counters, and they must hold even when every
 *   endpoint looks healthy (a slow upstream fills queues before it errors);
 * - the cluster circuit breaker: a cluster-wide outage fails fast;
 * - health (active checks + outlier ejection, with the panic threshold) is
 *   folded into each endpoint's `healthy` flag, which balancers already skip;
 * - per-endpoint breakers are consulted after the balancer's pick, because
 *   their half-open state must hand out exactly one probe; when the pick's is
 *   open (or its queue full), one more pick skips every endpoint in that state.
 *
 * Built by the snapshot that first names it, and kept by later snapshots
 * whose config leaves it exactly as it is (Envoy keeps an unchanged cluster
 * across an update too): a reload must not forget which endpoints are
 * failing, nor reconnect every pool. Each snapshot using it `retain`s it and
 * `retire`s it; the last to retire drains it (pools drained, then closed).
 */
export class Cluster {
  readonly name: string
  readonly config: ClusterConfig
  readonly endpoints: readonly Endpoint[]
  readonly health: EndpointHealth
  readonly retryBudget: RetryBudget
  /** First attempts in flight (the retry budget's and max_requests' base). */
  active = 0
  readonly breaker: CircuitBreaker | undefined
  readonly #balancer: Balancer
  readonly #hashKey: ((headers: HeaderMap, clientIp: string) => string | undefined) | undefined
  readonly #detector: OutlierDetector | undefined
  readonly #checker: ActiveHealthChecker | undefined
  readonly #maxPendingPerEndpoint: number
  readonly #metrics: ProxyMetrics | undefined
  readonly upstreamDuration: { observe (v: number): void }
  /** Snapshots using it; 0 once drained. */
  #users = 1
  /** The metrics its endpoints' series are written to; undefined once it drains (a successor may speak for them). */
  #series: ProxyMetrics | undefined

  constructor (config: ClusterConfig, options: { metrics?: ProxyMetrics, log?: Logger, tls?: UpstreamTlsOptions } = {}) {
    this.name = config.name
    this.config = config
    this.#metrics = options.metrics
    this.#series = options.metrics
    const metrics = options.metrics
    const n = config.endpoints.length
    // max_connections is cluster-wide (Envoy); undici sizes pools per endpoint.
    const perEndpoint = Math.max(1, Math.min(config.connectionsPerEndpoint, Math.floor(config.overload.maxConnections / n)))
    this.#maxPendingPerEndpoint = Math.ceil(config.overload.maxPendingRequests / n)
    this.endpoints = config.endpoints.map((e, i) => new Endpoint(i, e.url, e.weight, config, perEndpoint, options.tls))
    if (metrics !== undefined) for (const id of this.#seriesIds()) metrics.endpointSeries.hold(config.name, id)
    this.#balancer = createBalancer(config.loadBalancer, this.endpoints)
    this.#hashKey = config.loadBalancer.policy === 'consistent_hash' ? createHashKeyExtractor(config.loadBalancer.hashOn) : undefined
    this.upstreamDuration = metrics?.upstreamDuration.labels(config.name) ?? { observe () {} }

    this.health = new EndpointHealth(this.endpoints, {
      panicThreshold: config.panicThreshold,
      logger: options.log,
      onChange: (i, healthy, reason) => {
        const e = this.endpoints[i] as Endpoint
        this.#series?.endpointHealthy.labels(config.name, e.id).set(healthy ? 1 : 0)
        options.log?.warn(healthy ? 'endpoint healthy' : 'endpoint unhealthy', { cluster: config.name, endpoint: e.id, reason })
      },
      onPanic: (panic) => { options.log?.warn(panic ? 'cluster in panic mode: balancing over all endpoints' : 'cluster left panic mode', { cluster: config.name }) },
    })
    for (const e of this.endpoints) metrics?.endpointHealthy.labels(config.name, e.id).set(1)
    if (config.outlierDetection.enabled) {
      // Ejections are counted here, where they happen: the health callback
      // only hears of verdict changes, and an endpoint already failing its
      // active checks changes no verdict when it is ejected too.
      const health = this.health
      const ejections: EjectionSink = {
        size: health.size,
        eject: (i, untilMs, reason) => {
          this.#series?.outlierEjections.labels(config.name, (this.endpoints[i] as Endpoint).id).inc()
          health.eject(i, untilMs, reason)
        },
        readmit: (i, reason) => { health.readmit(i, reason) },
      }
      this.#detector = new OutlierDetector(config.outlierDetection, ejections)
    }
    if (config.healthCheck !== undefined) {
      this.#checker = new ActiveHealthChecker(this.endpoints, config.healthCheck, this.health, { logger: options.log, tls: options.tls })
      this.#checker.start()
    }
    const cb = config.circuitBreaker
    if (cb !== undefined) {
      const onChange = (endpoint: string) => (state: BreakerState): void => {
        this.#series?.circuitState.labels(config.name, endpoint).set(BREAKER_GAUGE[state])
        this.#series?.circuitTransitions.labels(config.name, endpoint, state).inc()
        options.log?.warn('circuit breaker state changed', { cluster: config.name, endpoint: endpoint === '' ? undefined : endpoint, state })
      }
      this.breaker = new CircuitBreaker(cb, { onChange: onChange('') })
      metrics?.circuitState.labels(config.name, '').set(0)
      for (const e of this.endpoints) {
        e.breaker = new CircuitBreaker(cb, { onChange: onChange(e.id) })
        metrics?.circuitState.labels(config.name, e.id).set(0)
      }
    }
    const budget = config.retryBudget
    this.retryBudget = new RetryBudget(budget.percent, budget.minRetriesPerSecond)
  }

  /**
   * Which overload limit refuses a new request now, if any. Checked before a
   * first attempt (retries are limited by the budget and maxRetries instead).
   * Past the open period the cluster breaker lets exactly one request through
   * as its half-open probe: the caller MUST then report an attempt's outcome
   * (`record`) or give the probe back (`breaker.release()`).
   */
  overloaded (): OverloadLimit | undefined {
    if (this.active >= this.config.overload.maxRequests) return this.#refuse('max_requests')
    if (this.breaker !== undefined && !this.breaker.allow()) return this.#refuse('circuit_open')
    return undefined
  }

  /**
   * The headers of a 503 for `limit`: which limit, and for an open circuit a
   * Retry-After (RFC 9110 §10.2.3) saying when the first endpoint (or the
   * cluster) half-opens; at least a second, as a probe may already be out.
   */
  overloadHeaders (limit: OverloadLimit): Record<string, string> {
    if (limit !== 'circuit_open') return { 'x-outrider-overloaded': limit }
    let ms = this.breaker?.openForMs() ?? 0
    if (ms === 0) {
      ms = Infinity
      for (const e of this.endpoints) if (e.healthy && e.breaker !== undefined) ms = Math.min(ms, e.breaker.openForMs())
      if (ms === Infinity) ms = 0
    }
    return { 'x-outrider-overloaded': limit, 'retry-after': String(Math.max(1, Math.ceil(ms / 1000))) }
  }

  #refuse (limit: OverloadLimit): OverloadLimit {
    this.#metrics?.overloaded.labels(this.name, limit).inc()
    return limit
  }

  /**
   * The endpoint for this attempt, or a reason there is none: no healthy
   * endpoint, or every candidate's circuit is open, or its queue is full.
   * `avoid` is an endpoint that just failed (retries go elsewhere if they can).
   */
  choose (headers: HeaderMap, clientIp: string, avoid?: Endpoint): Endpoint | 'none' | OverloadLimit {
    const key = this.#hashKey === undefined ? undefined : this.#hashKey(headers, clientIp)
    let e = this.#balancer.pick(key) as Endpoint | undefined
    if (e === undefined) return 'none'
    if (avoid !== undefined && e === avoid && this.endpoints.length > 1) e = this.#elsewhere(key, avoid)
    const refused = this.#refusal(e)
    if (refused === undefined) return e
    // Asking the policy again would mostly give the same answer: P2C prefers
    // an open endpoint (nothing in flight), a hash ring maps the key to it
    // again. One pick among the endpoints that can take the request now
    // passes over the others as if ejected (a ring moves their keys along).
    const other = this.#balancer.pick(key, this.#usable) as Endpoint | undefined
    if (other !== undefined && (other.breaker === undefined || other.breaker.allow())) return other
    return this.#refuse(refused)
  }

  /** Why `e` cannot take a request now; claims a half-open breaker's probe slot if it can. */
  #refusal (e: Endpoint): OverloadLimit | undefined {
    if (e.inflight - e.connections >= this.#maxPendingPerEndpoint) return 'max_pending_requests'
    if (e.breaker !== undefined && !e.breaker.allow()) return 'circuit_open'
    return undefined
  }

  /** Room in its queue and a circuit that would let a request through; built once, not per pick. */
  readonly #usable = (b: BalancedEndpoint): boolean => {
    const e = b as Endpoint
    return e.inflight - e.connections < this.#maxPendingPerEndpoint && (e.breaker === undefined || e.breaker.wouldAllow())
  }

  /**
   * A retry's endpoint other than `avoid` (Envoy's `previous_hosts` retry
   * predicate): one more pick keeps the policy's spread; when it lands on
   * `avoid` again (random draws, hash rings), the next healthy endpoint after
   * it. Only `avoid` itself when it is the one healthy endpoint left.
   */
  #elsewhere (key: string | undefined, avoid: Endpoint): Endpoint {
    const again = this.#balancer.pick(key) as Endpoint | undefined
    if (again !== undefined && again !== avoid) return again
    const n = this.endpoints.length
    for (let step = 1; step < n; step++) {
      const e = this.endpoints[(avoid.index + step) % n] as Endpoint
      if (e.healthy) return e
    }
    return avoid
  }

  /**
   * The endpoint for a request, or undefined: `choose` without the reasons,
   * for callers that never report an outcome (WebSocket upgrades). A
   * half-open endpoint breaker's probe slot is handed back at once, else it
   * would wait forever for a verdict and keep the endpoint shut.
   */
  pick (headers: HeaderMap, clientIp: string): Endpoint | undefined {
    const e = this.choose(headers, clientIp)
    if (typeof e === 'string') return undefined
    e.breaker?.release()
    return e
  }

  /**
   * Whether `choose` handed out `e` just now as its breaker's half-open
   * probe (it hands out a half-open endpoint only so). Asked right after
   * `choose`; the answer goes with the attempt to `record`.
   */
  isProbe (e: Endpoint): boolean {
    return e.breaker !== undefined && e.breaker.state === 'half-open'
  }

  /**
   * Feeds one finished attempt to passive health, the breakers and
   * latency-aware balancers. `outcome` is undefined when the attempt ended
   * without a verdict (cancelled: the client left, or a hedge lost). `probe`
   * is `isProbe` of the attempt's endpoint when it was sent, `clusterProbe`
   * whether its request was let through the half-open cluster circuit as
   * its probe; a caller that does not track them passes nothing and every
   * attempt counts as the probe.
   */
  record (e: Endpoint, outcome: AttemptOutcome | undefined, latencyMs: number, orca: string | undefined, probe = true, clusterProbe = true): void {
    // An attempt sent before a circuit opened (a long stream, a hedge) says
    // nothing about its probe: its end must neither free the probe's slot,
    // letting a second probe through, nor decide the half-open circuit.
    const breaker = probe || e.breaker?.state !== 'half-open' ? e.breaker : undefined
    const clusterBreaker = clusterProbe || this.breaker?.state !== 'half-open' ? this.breaker : undefined
    if (outcome === undefined) {
      breaker?.release()
      return
    }
    this.#detector?.record(e.index, outcome)
    if (outcome === 'success') {
      breaker?.success()
      clusterBreaker?.success()
    } else {
      breaker?.failure()
      clusterBreaker?.failure()
    }
    this.#balancer.observe?.(e, { latencyMs, failed: outcome !== 'success', orca, now: performance.now() })
  }

  /** An external weight hint for latency-aware policies (e.g. from the control plane). */
  setWeightHint (endpointId: string, weight: number | undefined): boolean {
    if (this.#balancer.setWeightHint === undefined || !this.endpoints.some((e) => e.id === endpointId)) return false
    this.#balancer.setWeightHint(endpointId, weight)
    return true
  }

  state (): Record<string, unknown> {
    return {
      name: this.name,
      loadBalancer: this.config.loadBalancer,
      panic: this.health.panic,
      active: this.active,
      retriesInFlight: this.retryBudget.retriesInFlight,
      circuit: this.breaker?.describe(),
      endpoints: this.endpoints.map((e) => {
        const s = e.pool.stats
        return {
          url: e.url,
          weight: e.weight,
          healthy: e.healthy,
          inflight: e.inflight,
          health: this.health.describe(e.index),
          activeCheck: this.#checker?.describe(e.index),
          circuit: e.breaker?.describe(),
          score: this.#balancer.describe?.(e),
          pool: { connected: s.connected, free: s.free, pending: s.pending, running: s.running, size: s.size },
        }
      }),
    }
  }

  /** The `endpoint` label values of its series: its endpoints, and "" for the cluster-wide breaker. */
  #seriesIds (): string[] {
    return ['', ...this.endpoints.map((e) => e.id)]
  }

  /** One more snapshot uses the cluster as it is; false once it is drained (build a new one then). */
  retain (): boolean {
    if (this.#users === 0) return false
    this.#users++
    return true
  }

  /**
   * A snapshot using the cluster retired (its own requests are done): the
   * last one drains it. The constructor counts as the first `retain`.
   */
  async retire (deadlineMs: number): Promise<void> {
    if (this.#users === 0 || --this.#users > 0) return
    await this.drain(deadlineMs)
  }

  /**
   * Lets requests already dispatched finish (undici's `close` waits for them),
   * then closes the pools; after `deadlineMs` whatever is left is destroyed.
   * Final, whoever else retained the cluster. Its endpoints' series are
   * let go of: from here on, its verdicts are not the proxy's.
   */
  async drain (deadlineMs: number): Promise<void> {
    this.#users = 0
    const series = this.#series
    this.#series = undefined
    if (series !== undefined) for (const id of this.#seriesIds()) series.endpointSeries.release(this.name, id)
    this.#detector?.close()
    const stopping = this.#checker?.stop()
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), deadlineMs) })
    timer?.unref()
    await Promise.all(this.endpoints.map(async (e) => {
      const result = await Promise.race([e.pool.close().then(() => 'ok' as const), deadline])
      if (result === 'late') await e.pool.destroy()
    }))
    clearTimeout(timer)
    await stopping
  }
}
