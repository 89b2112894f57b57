import { z } from 'zod'
import { pluginSchemas } from '../../plugins/schemas.ts'
import { duration, size } from './units.ts'

/**
 * The config document (ARCHITECTURE §3). Every object is strict so a typo is an
 * error, every field has a default where one makes sense, and `.describe()` is
 * the text the README's reference is written from.
 */

const port = z.number().int().min(0).max(65535)

const TLS_VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const

const listenTls = z.strictObject({
  cert: z.string().min(1).describe('PEM certificate chain file; re-read on every config reload.'),
  key: z.string().min(1).describe('PEM private key file; re-read on every config reload.'),
  clientCa: z.string().min(1).optional().describe('PEM CA bundle: when set, clients must present a certificate it signed (mTLS).'),
  minVersion: z.enum(TLS_VERSIONS).default('TLSv1.2'),
  http2: z.boolean().default(true).describe('Offer HTTP/2 by ALPN (HTTP/1.1 stays available on the same port).'),
})

const listen = z.strictObject({
  host: z.string().min(1).default('0.0.0.0').describe('Address the proxy listener binds.'),
  port: port.default(8080).describe('Port of the proxy listener (0 picks a free one).'),
  tls: listenTls.optional().describe('Terminate TLS on this listener.'),
  h2c: z.boolean().default(false).describe('Serve cleartext HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1, for gRPC clients; not with tls, where HTTP/2 comes by ALPN.'),
}).refine((l) => !(l.h2c && l.tls !== undefined), { message: 'h2c or tls, not both (with tls, HTTP/2 is offered by ALPN: set tls.http2)', path: ['h2c'] })

const admin = z.strictObject({
  enabled: z.boolean().default(true).describe('Serve the admin endpoints.'),
  host: z.string().min(1).default('127.0.0.1').describe('Address of the admin listener; loopback by default.'),
  port: port.default(9901).describe('Port of the admin listener (0 picks a free one).'),
})

const limits = z.strictObject({
  maxHeaderSize: size.default(16 * 1024).describe('Largest request head (request line + headers) accepted; larger → 431.'),
  maxBodySize: size.default(0).describe('Largest request body forwarded, in bytes; 0 means no limit. Larger → 413.'),
  headersTimeout: duration.default(10_000).describe('Time a client has to send the complete request head (slowloris guard) → 408.'),
  requestTimeout: duration.default(0).describe('Time a client has to send the whole request, body included; 0 disables it.'),
  keepAliveTimeout: duration.default(65_000).describe('Idle time before a client keep-alive connection is closed.'),
  streamIdleTimeout: duration.default(300_000).describe('A request whose client connection (HTTP/1.1) or stream (HTTP/2) moves no byte either way for this long is cut (a client that stopped reading the response or sending its body); the upstream request is cancelled. The clock also runs while the upstream is silent, and HTTP/2 PINGs do not count: raise it if an upstream, or a gRPC stream, may stay quiet longer. 0 disables it. WebSocket tunnels have their own (tunnelIdleTimeout).'),
  tunnelIdleTimeout: duration.default(3_600_000).describe('A WebSocket tunnel that moves no byte either way for this long is closed, both sides: peers that vanished without a FIN cannot hold sockets forever. Applications that ping every few minutes stay open. 0 disables it.'),
  maxRequestsPerSocket: z.number().int().nonnegative().default(0).describe('Requests served on one client connection before it is closed; 0 = unlimited.'),
  maxConcurrentStreams: z.number().int().min(1).max(2 ** 31 - 1).default(250).describe('HTTP/2: streams one client connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS); the protocol refuses more. node would allow 2^32-1.'),
})

const shutdown = z.strictObject({
  drainTimeout: duration.default(30_000).describe('On SIGTERM, how long in-flight requests may take before the process exits anyway.'),
})

const upstreamTimeouts = z.strictObject({
  connect: duration.default(5_000).describe('Time to establish a connection to an endpoint → 502 on failure.'),
  request: duration.default(30_000).describe('Time from sending the request until the upstream response head arrives → 504.'),
  idle: duration.default(60_000).describe('Longest gap between two body chunks from the upstream → 504 (or a reset once streaming).'),
  keepAlive: duration.default(60_000).describe('How long an idle pooled upstream connection is kept.'),
})

const endpoint = z.strictObject({
  url: z.url({ protocol: /^https?$/, error: 'an http:// or https:// URL' }).describe('Base URL of the endpoint (scheme, host, port).'),
  weight: z.number().int().min(1).max(1000).default(1).describe('Relative share of traffic for weighted policies.'),
})

const hashOn = z.discriminatedUnion('by', [
  z.strictObject({ by: z.literal('header'), header: z.string().min(1).toLowerCase() }),
  z.strictObject({ by: z.literal('cookie'), cookie: z.string().min(1) }),
  z.strictObject({ by: z.literal('ip') }),
])

const loadBalancer = z.discriminatedUnion('policy', [
  z.strictObject({ policy: z.literal('round_robin') }),
  z.strictObject({ policy: z.literal('weighted') }),
  z.strictObject({ policy: z.literal('least_request') }),
  z.strictObject({ policy: z.literal('random') }),
  z.strictObject({
    policy: z.literal('consistent_hash'),
    hashOn: hashOn.default({ by: 'ip' }).describe('Where the hash key comes from.'),
  }),
  z.strictObject({
    policy: z.literal('peak_ewma'),
    decay: duration.default(10_000).describe('Time constant of the latency EWMA: how long a past observation keeps weight.'),
    errorPenalty: duration.default(1_000).describe('Latency charged for a failed request (connect error, reset, 5xx) in the model.'),
    useOrca: z.boolean().default(true).describe('Read ORCA `endpoint-load-metrics` response headers into the cost model.'),
  }),
])

const healthCheck = z.strictObject({
  path: z.string().startsWith('/').default('/healthz').describe('Path probed on each endpoint.'),
  interval: duration.default(5_000).describe('Time between probes of one endpoint.'),
  timeout: duration.default(1_000).describe('A probe slower than this fails.'),
  expectedStatuses: z.array(z.number().int().min(100).max(599)).min(1).default([200]).describe('Statuses that count as healthy.'),
  healthyThreshold: z.number().int().min(1).default(2).describe('Consecutive passes that make an unhealthy endpoint healthy.'),
  unhealthyThreshold: z.number().int().min(1).default(3).describe('Consecutive failures that make a healthy endpoint unhealthy.'),
  jitter: z.number().min(0).max(1).default(0.1).describe('Random spread of the interval (fraction), so probes from many sidecars do not align.'),
  host: z.string().optional().describe('Host header of the probe (default: the endpoint\'s).'),
})

const outlierDetection = z.strictObject({
  enabled: z.boolean().default(true),
  consecutive5xx: z.number().int().min(1).default(5).describe('Consecutive 5xx answers that eject an endpoint.'),
  consecutiveGatewayFailures: z.number().int().min(1).default(3).describe('Consecutive connect failures, resets or timeouts that eject an endpoint.'),
  baseEjectionTime: duration.default(10_000).describe('First ejection time; the n-th ejection lasts n × this.'),
  maxEjectionTime: duration.default(300_000).describe('Longest an endpoint stays ejected.'),
  maxEjectionPercent: z.number().min(0).max(100).default(50).describe('Never eject more than this share of the cluster by outlier detection.'),
})

const breakerTrigger = z.discriminatedUnion('by', [
  z.strictObject({ by: z.literal('consecutive'), failures: z.number().int().min(1).default(5).describe('Consecutive failed requests that open the circuit.') }),
  z.strictObject({
    by: z.literal('ratio'),
    threshold: z.number().gt(0).max(1).default(0.5).describe('Failure ratio over the window that opens the circuit.'),
    window: duration.default(10_000).describe('Sliding window the ratio is measured over.'),
    minimumRequests: z.number().int().min(1).default(20).describe('Requests needed in the window before the ratio counts.'),
  }),
])

const circuitBreaker = z.strictObject({
  trigger: breakerTrigger.default({ by: 'consecutive', failures: 5 }),
  halfOpenAfter: duration.default(5_000).describe('Time the circuit stays open before one probe request is let through.'),
  maxHalfOpenAfter: duration.default(60_000).describe('Longest open period: re-opening after a failed probe backs off up to this.'),
})

const overloadLimits = z.strictObject({
  maxConnections: z.number().int().min(1).default(1024).describe('Connections to all endpoints of the cluster together.'),
  maxPendingRequests: z.number().int().min(0).default(1024).describe('Requests waiting for a connection.'),
  maxRequests: z.number().int().min(1).default(1024).describe('Requests in flight to the cluster.'),
  maxRetries: z.number().int().min(0).optional().describe('Retries in flight to the cluster; unset: the retry budget alone decides (as Envoy ignores max_retries when a budget is set).'),
})

const RETRY_ON = ['connect-failure', 'reset', '5xx', 'gateway-error', 'retriable-status-codes', 'timeout'] as const

const retry = z.strictObject({
  retryOn: z.array(z.enum(RETRY_ON)).default(['connect-failure', 'reset', 'gateway-error']).describe('Failures that are retried.'),
  retriableStatusCodes: z.array(z.number().int().min(100).max(599)).default([]).describe('Statuses retried when `retryOn` has `retriable-status-codes`.'),
  maxAttempts: z.number().int().min(1).max(10).default(2).describe('Attempts in all, the first included; 1 disables retries.'),
  perTryTimeout: duration.optional().describe('Timeout of one attempt until the response head (default: timeouts.request).'),
  backoff: z.strictObject({
    base: duration.default(25).describe('First backoff; doubles per retry, with full jitter.'),
    max: duration.default(250),
  }).prefault({}),
  retryNonIdempotent: z.boolean().default(false).describe('Also retry POST/PATCH (and other non-idempotent methods).'),
  maxReplayBodySize: size.default(64 * 1024).describe('Request bodies up to this size are kept for replay; larger ones are never retried.'),
  attemptsHeader: z.boolean().default(false).describe('Add `x-outrider-attempts` to responses.'),
})

const retryBudget = z.strictObject({
  percent: z.number().min(0).max(100).default(20).describe('Retries (and hedges) may add at most this share of the cluster\'s requests over the last 10 s.'),
  minRetriesPerSecond: z.number().min(0).default(10).describe('Retries allowed per second on top, so a quiet cluster can still retry.'),
})

const hedge = z.strictObject({
  delay: z.union([duration, z.literal('p95')]).default('p95').describe('When a second attempt is sent: a duration, or the route\'s observed p95.'),
  maxHedges: z.number().int().min(1).max(3).default(1),
})

const upstreamTls = z.strictObject({
  ca: z.string().min(1).optional().describe('PEM CA bundle trusted for the endpoints (default: the system store).'),
  cert: z.string().min(1).optional().describe('PEM client certificate for mTLS to the endpoints.'),
  key: z.string().min(1).optional().describe('PEM key of the client certificate.'),
  servername: z.string().min(1).optional().describe('SNI and the name the certificate is checked against (default: the endpoint host).'),
  insecureSkipVerify: z.boolean().default(false).describe('Accept any certificate. For tests only: it defeats TLS.'),
}).refine((t) => (t.cert === undefined) === (t.key === undefined), 'cert and key together (both or neither)')

const cluster = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'a name of letters, digits, _ . -'),
  endpoints: z.array(endpoint).min(1, 'at least one endpoint'),
  loadBalancer: loadBalancer.default({ policy: 'round_robin' }).describe('How an endpoint is picked per request.'),
  timeouts: upstreamTimeouts.default(upstreamTimeouts.parse({})),
  connectionsPerEndpoint: z.number().int().min(1).default(128).describe('Max pooled connections to each endpoint.'),
  protocol: z.enum(['http1', 'http2']).default('http1')
    .describe('How endpoints are spoken to: http1, or http2 (prior knowledge, h2c, for http:// endpoints; ALPN for https://, falling back to HTTP/1.1 if the server does not offer h2). gRPC upstreams need http2.'),
  tls: upstreamTls.optional().describe('TLS settings for https:// endpoints (CA bundle, client certificate for mTLS).'),
  healthCheck: healthCheck.optional().describe('Active HTTP health checks; off unless set.'),
  outlierDetection: outlierDetection.prefault({}).describe('Passive health: eject endpoints that keep failing.'),
  panicThreshold: z.number().min(0).max(100).default(50).describe('When fewer than this % of endpoints are healthy, balance over all of them.'),
  circuitBreaker: circuitBreaker.optional().describe('Per-endpoint and per-cluster circuit breakers; off unless set.'),
  overload: overloadLimits.prefault({}).describe('Envoy-style overload limits → 503 with x-outrider-overloaded.'),
  retry: retry.optional().describe('Default retry policy of routes to this cluster.'),
  retryBudget: retryBudget.prefault({}).describe('Shared by every route to this cluster: retries never amplify an outage.'),
})

const valueMatch = z.union([
  z.string(),
  z.strictObject({
    exact: z.string().optional(),
    prefix: z.string().optional(),
    regex: z.string().optional(),
    present: z.boolean().optional(),
  }).refine((m) => Object.values(m).filter((v) => v !== undefined).length === 1, 'exactly one of exact, prefix, regex, present'),
], { error: 'a string (exact match) or one of { exact | prefix | regex | present }' })

const validRegex = (s: string): boolean => { try { new RegExp(s); return true } catch { return false } }

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'QUERY'] as const

const match = z.strictObject({
  host: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional()
    .describe('Host(s) to match: exact (`api.example.com`) or a suffix wildcard (`*.example.com`). Port ignored.'),
  path: z.string().startsWith('/').optional().describe('Exact path.'),
  pathPrefix: z.string().startsWith('/').optional().describe('Path prefix, on segment boundaries is not required (`/api` matches `/apis`).'),
  pathRegex: z.string().refine(validRegex, 'a valid JavaScript regular expression').optional().describe('Regular expression tested against the path.'),
  methods: z.array(z.enum(METHODS)).min(1).optional().describe('Allowed methods; others fall through to the next route.'),
  headers: z.record(z.string().toLowerCase(), valueMatch).optional().describe('Header name → match; all must match.'),
  query: z.record(z.string(), valueMatch).optional().describe('Query parameter → match; all must match.'),
}).refine((m) => [m.path, m.pathPrefix, m.pathRegex].filter((v) => v !== undefined).length <= 1,
  'at most one of path, pathPrefix, pathRegex')

const pluginEntry = z.discriminatedUnion('name', (pluginSchemas.map((p) => z.strictObject({
  name: z.literal(p.name),
  config: p.schema.prefault({}),
}))) as unknown as [z.ZodObject<{ name: z.ZodLiteral<string>, config: z.ZodType }>])

const route = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'a name of letters, digits, _ . -'),
  match: match.default({}).describe('What requests this route takes; empty matches everything.'),
  cluster: z.string().describe('The cluster requests are forwarded to.'),
  rewrite: z.strictObject({
    pathPrefix: z.string().startsWith('/').describe('Replaces the matched `pathPrefix` before forwarding.'),
  }).optional(),
  timeouts: z.strictObject({ request: duration.optional(), idle: duration.optional(), overall: duration.optional().describe('Deadline for the response head over all attempts (retries and hedges included): 504 when it passes. The body is bounded by bodyTimeout, between chunks.'), streamIdle: duration.optional().describe('Overrides limits.streamIdleTimeout for this route\'s requests: longer for long polls, server-sent events or gRPC watches, shorter for quick APIs; 0 disables it.') }).optional()
    .describe('Per-route overrides of the cluster timeouts, and of limits.streamIdleTimeout.'),
  maxBodySize: size.optional().describe('Overrides limits.maxBodySize for this route.'),
  retry: retry.optional().describe('Retry policy; overrides the cluster\'s.'),
  hedge: hedge.optional().describe('Hedged requests for idempotent GET/HEAD; off unless set.'),
  plugins: z.array(pluginEntry).default([]).describe('The route\'s plugin pipeline, in order.'),
  accessLog: z.boolean().default(true).describe('Write this route\'s exchanges to the access log (when `accessLog` is configured).'),
})

const accessLog = z.strictObject({
  enabled: z.boolean().default(true),
  destination: z.string().min(1).default('stdout').describe('`stdout`, `stderr` or a file path (reopened on SIGUSR2 for log rotation).'),
  sampleRate: z.number().min(0).max(1).default(1).describe('Share of successful exchanges logged; 5xx are always logged.'),
  includeQuery: z.boolean().default(false).describe('Log the query string (it may carry tokens and personal data).'),
})

const PROPAGATORS = ['tracecontext', 'b3', 'b3multi'] as const

const tracing = z.strictObject({
  enabled: z.boolean().default(true).describe('Trace exchanges (a present section is on unless this is false).'),
  endpoint: z.url({ protocol: /^https?$/, error: 'an http:// or https:// URL' }).optional()
    .describe('OTLP/HTTP traces URL. Default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, else http://127.0.0.1:4318/v1/traces. Headers (auth) come from OTEL_EXPORTER_OTLP_[TRACES_]HEADERS.'),
  protocol: z.enum(['http/protobuf', 'http/json']).default('http/protobuf').describe('OTLP encoding over HTTP.'),
  samplingRatio: z.number().min(0).max(1).default(1)
    .describe('Share of new traces sampled. Parent-based: a client\'s sampled flag in traceparent/B3 always decides for its trace.'),
  serviceName: z.string().min(1).optional().describe('Resource `service.name`. Default: OTEL_SERVICE_NAME, else `outrider`.'),
  propagators: z.array(z.enum(PROPAGATORS)).min(1).default(['tracecontext'])
    .refine((a) => new Set(a).size === a.length, 'each propagator once')
    .describe('Trace context formats read from clients and written upstream: W3C `tracecontext`, `b3` (single header), `b3multi` (X-B3-* headers).'),
  exportDelay: duration.default(5_000).describe('How long ended spans are batched before an export.'),
  exportTimeout: duration.default(10_000).describe('Timeout of one export request to the collector.'),
})

export const configSchema = z.strictObject({
  listen: listen.default(listen.parse({})),
  admin: admin.default(admin.parse({})),
  workers: z.union([z.literal('auto'), z.number().int().min(1).max(256)]).default(1)
    .describe('Worker processes sharing the listener: `auto` = one per core. 1 for a sidecar.'),
  limits: limits.default(limits.parse({})),
  shutdown: shutdown.default(shutdown.parse({})),
  accessLog: accessLog.optional().describe('Structured JSON access logs (pino); off unless set.'),
  tracing: tracing.optional().describe('OpenTelemetry traces over OTLP/HTTP; off unless set. Read once per process at start: a change needs a restart.'),
  clusters: z.array(cluster).default([]),
  routes: z.array(route).default([]),
}).superRefine((cfg, ctx) => {
  const clusterNames = new Set<string>()
  cfg.clusters.forEach((c, i) => {
    if (clusterNames.has(c.name)) ctx.addIssue({ code: 'custom', path: ['clusters', i, 'name'], message: `a unique cluster name ("${c.name}" is used twice)` })
    clusterNames.add(c.name)
  })
  const routeNames = new Set<string>()
  cfg.routes.forEach((r, i) => {
    if (routeNames.has(r.name)) ctx.addIssue({ code: 'custom', path: ['routes', i, 'name'], message: `a unique route name ("${r.name}" is used twice)` })
    routeNames.add(r.name)
    if (!clusterNames.has(r.cluster)) {
      ctx.addIssue({ code: 'custom', path: ['routes', i, 'cluster'], message: `the name of a declared cluster ("${r.cluster}" is not one of: ${[...clusterNames].join(', ') || 'none'})` })
    }
    if (r.rewrite !== undefined && r.match.pathPrefix === undefined) {
      ctx.addIssue({ code: 'custom', path: ['routes', i, 'rewrite'], message: 'match.pathPrefix to be set when rewrite.pathPrefix is used' })
    }
    cacheBeforeAuth(r.plugins, ['routes', i, 'plugins'], ctx)
  })
})

/** Plugins that decide who may see a response. */
const AUTH_PLUGINS: ReadonlySet<string> = new Set(['jwt-auth', 'api-key'])

/**
 * A cache answers from its store in the request phase, and the first plugin
 * that answers ends it: listed before an auth plugin, it would hand stored
 * responses to clients that were never authenticated.
 */
function cacheBeforeAuth (plugins: ReadonlyArray<{ name: string }>, path: Array<string | number>, ctx: z.RefinementCtx): void {
  const cache = plugins.findIndex((p) => p.name === 'cache')
  if (cache === -1) return
  const auth = plugins.findLastIndex((p) => AUTH_PLUGINS.has(p.name))
  if (auth < cache) return
  const name = (plugins[auth] as { name: string }).name
  ctx.addIssue({
    code: 'custom',
    path: [...path, cache],
    message: `cache after the route's authentication (cache at plugins[${cache}] would answer from its store before ${name} at plugins[${auth}] checks the client: list ${name} first)`,
  })
}

export type Config = z.output<typeof configSchema>
export type ClusterConfig = Config['clusters'][number]
export type RouteConfig = Config['routes'][number]
export type MatchConfig = RouteConfig['match']
export type ValueMatch = z.output<typeof valueMatch>
export type LoadBalancerConfig = ClusterConfig['loadBalancer']
export type EndpointConfig = ClusterConfig['endpoints'][number]
export type ListenTlsConfig = NonNullable<Config['listen']['tls']>
export type UpstreamTlsConfig = NonNullable<ClusterConfig['tls']>
export type HealthCheckConfig = NonNullable<ClusterConfig['healthCheck']>
export type OutlierDetectionConfig = ClusterConfig['outlierDetection']
export type CircuitBreakerConfig = NonNullable<ClusterConfig['circuitBreaker']>
export type OverloadConfig = ClusterConfig['overload']
export type RetryConfig = NonNullable<ClusterConfig['retry']>
export type HedgeConfig = NonNullable<RouteConfig['hedge']>
