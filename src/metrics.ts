import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/**
 * The process-wide metric set. Label values are bounded: route and cluster names
 * come from config, methods from a fixed list, status as a class. Never a raw
 * path or anything else a client chose.
 */
export interface ProxyMetrics {
  readonly registry: Registry
  readonly requests: Counter<'route' | 'method' | 'status_class'>
  readonly requestDuration: Histogram<'route'>
  readonly upstreamDuration: Histogram<'cluster'>
  readonly inFlight: Gauge
  /** Requests being served now: a plain counter the gauge reads at scrape time. */
  readonly live: { inFlight: number }
  readonly configReloads: Counter<'result'>
  readonly localReplies: Counter<'route' | 'code'>
  readonly upstreamErrors: Counter<'cluster' | 'code'>
  readonly configVersion: Gauge<'version'>
  readonly retries: Counter<'route' | 'reason'>
  readonly retryBudgetExhausted: Counter<'cluster'>
  readonly hedges: Counter<'route' | 'outcome'>
  readonly circuitState: Gauge<'cluster' | 'endpoint'>
  readonly circuitTransitions: Counter<'cluster' | 'endpoint' | 'to'>
  readonly endpointHealthy: Gauge<'cluster' | 'endpoint'>
  readonly outlierEjections: Counter<'cluster' | 'endpoint'>
  readonly overloaded: Counter<'cluster' | 'limit'>
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

export function createMetrics (options: { defaultMetrics?: boolean } = {}): ProxyMetrics {
  const registry = new Registry()
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'outrider_' })
  const registers = [registry]
  // Read at scrape time: two prom-client calls per request saved on the hot path.
  const live = { inFlight: 0 }
  return {
    live,
    registry,
    requests: new Counter({ name: 'outrider_requests_total', help: 'Requests answered, by route, method and status class.', labelNames: ['route', 'method', 'status_class'], registers }),
    requestDuration: new Histogram({ name: 'outrider_request_duration_seconds', help: 'Time from request head to the last response byte, by route.', labelNames: ['route'], buckets: LATENCY_BUCKETS, registers }),
    upstreamDuration: new Histogram({ name: 'outrider_upstream_duration_seconds', help: 'Time from dispatch to the upstream response head, by cluster.', labelNames: ['cluster'], buckets: LATENCY_BUCKETS, registers }),
    inFlight: new Gauge({ name: 'outrider_requests_in_flight', help: 'Requests being served now.', registers, collect () { this.set(live.inFlight) } }),
    configReloads: new Counter({ name: 'outrider_config_reloads_total', help: 'Config loads and reloads, by result (success, failure).', labelNames: ['result'], registers }),
    localReplies: new Counter({ name: 'outrider_local_replies_total', help: 'Error responses made by the proxy itself, by route and error code.', labelNames: ['route', 'code'], registers }),
    upstreamErrors: new Counter({ name: 'outrider_upstream_errors_total', help: 'Failed upstream attempts, by cluster and error code.', labelNames: ['cluster', 'code'], registers }),
    configVersion: new Gauge({ name: 'outrider_config_info', help: 'The active config version (value is always 1).', labelNames: ['version'], registers }),
    retries: new Counter({ name: 'outrider_retries_total', help: 'Retried upstream attempts, by route and reason.', labelNames: ['route', 'reason'], registers }),
    retryBudgetExhausted: new Counter({ name: 'outrider_retry_budget_exhausted_total', help: 'Retries not made because the cluster\'s retry budget was spent.', labelNames: ['cluster'], registers }),
    hedges: new Counter({ name: 'outrider_hedges_total', help: 'Hedged attempts sent, by route and whether the hedge won.', labelNames: ['route', 'outcome'], registers }),
    circuitState: new Gauge({ name: 'outrider_circuit_state', help: 'Circuit breaker state: 0 closed, 1 half-open, 2 open. endpoint="" is the cluster-wide breaker.', labelNames: ['cluster', 'endpoint'], registers }),
    circuitTransitions: new Counter({ name: 'outrider_circuit_transitions_total', help: 'Circuit breaker state changes.', labelNames: ['cluster', 'endpoint', 'to'], registers }),
    endpointHealthy: new Gauge({ name: 'outrider_endpoint_healthy', help: '1 when the endpoint takes traffic by its own verdict (active checks and outlier detection), else 0.', labelNames: ['cluster', 'endpoint'], registers }),
    outlierEjections: new Counter({ name: 'outrider_outlier_ejections_total', help: 'Endpoints ejected by outlier detection.', labelNames: ['cluster', 'endpoint'], registers }),
    overloaded: new Counter({ name: 'outrider_overload_rejections_total', help: 'Requests refused by a cluster overload limit.', labelNames: ['cluster', 'limit'], registers }),
  }
}

/** Methods that get their own label value; everything else is `OTHER`. */
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const
const METHOD_INDEX: Record<string, number> = Object.fromEntries(METHODS.map((m, i) => [m, i]))
const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const

type CounterChild = ReturnType<Counter<'route' | 'method' | 'status_class'>['labels']>
type HistogramChild = ReturnType<Histogram<'route'>['labels']>

/**
 * Pre-resolved metric children for one route, so the hot path does an array
 * index instead of prom-client's label hashing.
 */
export class RouteMetrics {
  readonly #metrics: ProxyMetrics
  readonly #route: string
  readonly #requests: Array<CounterChild | undefined> = new Array((METHODS.length + 1) * CLASSES.length)
  readonly duration: HistogramChild

  constructor (metrics: ProxyMetrics, route: string) {
    this.#metrics = metrics
    this.#route = route
    this.duration = metrics.requestDuration.labels(route)
  }

  /** Counts one answered request and its duration. */
  record (method: string, status: number, seconds: number): void {
    const m = METHOD_INDEX[method] ?? METHODS.length
    const c = Math.min(Math.max(Math.floor(status / 100), 1), 5) - 1
    const slot = m * CLASSES.length + c
    let child = this.#requests[slot]
    if (child === undefined) {
      child = this.#metrics.requests.labels(this.#route, m === METHODS.length ? 'OTHER' : method, CLASSES[c] as string)
      this.#requests[slot] = child
    }
    child.inc()
    this.duration.observe(seconds)
  }
}
