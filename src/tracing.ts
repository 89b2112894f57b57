import type { IncomingMessage } from 'node:http'
import { randomUUID } from 'node:crypto'
import { Counter, type Registry } from 'prom-client'
import {
  ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace,
  type Context, type Span, type TextMapGetter, type TextMapPropagator, type TextMapSetter, type Tracer,
} from '@opentelemetry/api'
import { CompositePropagator, ExportResultCode, W3CTraceContextPropagator, type ExportResult } from '@opentelemetry/core'
import { B3InjectEncoding, B3Propagator } from '@opentelemetry/propagator-b3'
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources'
import {
  BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider,
  type ReadableSpan, type Span as SdkSpan, type SpanExporter, type SpanProcessor,
} from '@opentelemetry/sdk-trace'
import { OTLPTraceExporter as ProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto'
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http'
import {
  ATTR_CLIENT_ADDRESS, ATTR_ERROR_TYPE, ATTR_HTTP_REQUEST_METHOD, ATTR_HTTP_REQUEST_METHOD_ORIGINAL,
  ATTR_HTTP_REQUEST_RESEND_COUNT, ATTR_HTTP_RESPONSE_STATUS_CODE, ATTR_HTTP_ROUTE, ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT, ATTR_SERVICE_INSTANCE_ID, ATTR_SERVICE_NAME, ATTR_URL_FULL, ATTR_URL_PATH,
  ATTR_URL_SCHEME, ATTR_USER_AGENT_ORIGINAL,
} from '@opentelemetry/semantic-conventions'
import type { Config } from './config/schema.ts'
import type { HeaderMap, RequestContext } from './plugin.ts'
import type { CompiledRoute } from './snapshot.ts'
import type { Endpoint } from './upstream/cluster.ts'
import type { Logger } from './log.ts'
import type { OutriderError } from './errors.ts'

/**
 * OpenTelemetry tracing (issue #7): a SERVER span per exchange, a CLIENT span
 * per upstream attempt (so retries and hedges show as siblings), plugin
 * decisions as span events, W3C Trace Context (and optionally B3) extracted
 * from the client and injected into every attempt.
 *
 * Attribute names and span names follow the OpenTelemetry HTTP semantic
 * conventions (semconv 1.x, "Semantic conventions for HTTP spans": stable
 * `http.*`, `url.*`, `server.*`, `client.*` attributes); what the conventions
 * leave to the instrumentation is namespaced `outrider.*`.
 *
 * Why the trace SDK (`@opentelemetry/sdk-trace`) and not `@opentelemetry/sdk-node`:
 * sdk-node is a process-wide bootstrap that registers global providers,
 * a context manager and auto-instrumentations (which patch node:http and
 * undici — they would trace every proxied request a second time, on the hot
 * path), and it pulls in the metrics and logs SDKs and the gRPC exporters.
 * Outrider creates its spans itself with explicit parents, so it needs only
 * the tracer provider, a sampler, the batch processor and an OTLP/HTTP
 * exporter: nothing global, nothing patched.
 *
 * The provider is built once per process, when the proxy starts (each worker
 * of a multi-worker proxy has its own): a reload does not change tracing, and
 * a changed `tracing` section takes effect on restart.
 *
 * Traced: every exchange, WebSocket handshakes (up to the upstream's answer:
 * the tunnel after a 101 is not an HTTP exchange), and requests the listener
 * answers before any route (404, malformed heads, CONNECT, Max-Forwards: 0).
 * Not traced: connections node's parser refused outright.
 *
 * Spans that never reach the collector are counted in
 * `outrider_tracing_spans_dropped_total{reason}` and logged (at most once a
 * minute): the export queue was full, or an export failed.
 */

export type TracingConfig = NonNullable<Config['tracing']>

const DEFAULT_ENDPOINT = 'http://127.0.0.1:4318/v1/traces'

/**
 * Where spans go: the config, else the standard OTLP environment variables
 * (OTLP exporter spec: a signal-specific endpoint is used as is, the generic
 * one gets `/v1/traces` appended), else a local collector.
 */
export function tracesEndpoint (config: TracingConfig, env: NodeJS.ProcessEnv = process.env): string {
  if (config.endpoint !== undefined) return config.endpoint
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
  if (traces !== undefined && traces !== '') return traces
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT
  if (base !== undefined && base !== '') return `${base.endsWith('/') ? base.slice(0, -1) : base}/v1/traces`
  return DEFAULT_ENDPOINT
}

/** Reads the HeaderMap the exchange already built (lower-case names). */
const headerGetter: TextMapGetter<HeaderMap> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
}
const headerSetter: TextMapSetter<HeaderMap> = {
  set: (carrier, key, value) => { carrier[key] = value },
}

/** The methods semconv knows (RFC 9110 §9 plus PATCH); others are `_OTHER`. */
const KNOWN_METHODS = new Set(['CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT', 'TRACE'])

/** Span attribute naming why Outrider cancelled an attempt. */
export const ATTR_CANCELLED = 'outrider.attempt.cancelled'

/**
 * Why an attempt was cancelled by the proxy: it lost a hedge race, the route's
 * overall deadline passed, or the client went away.
 */
export type CancelReason = 'lost_race' | 'deadline' | 'client_closed'

/** Spans that never reached the collector, by why. */
export const SPANS_DROPPED_METRIC = 'outrider_tracing_spans_dropped_total'

/**
 * Why a span was dropped, a closed set: the export queue was full (spans end
 * faster than the collector takes them), or an export failed (collector down,
 * refusing, or slower than `exportTimeout`; the exporter has retried by then).
 */
export type DropReason = 'queue_full' | 'export_failed'

/** Ended spans waiting for an export; the SDK's default, named so our bound and the processor's agree. */
const MAX_QUEUE = 2048

/** The counter, declared once per registry; both series exist from the start at 0. */
function droppedCounter (registry: Registry): Counter<'reason'> {
  let c = registry.getSingleMetric(SPANS_DROPPED_METRIC) as Counter<'reason'> | undefined
  if (c === undefined) {
    c = new Counter({
      name: SPANS_DROPPED_METRIC,
      help: 'Finished spans that were not delivered to the collector, by reason (queue_full, export_failed).',
      labelNames: ['reason'],
      registers: [registry],
    })
  }
  for (const reason of ['queue_full', 'export_failed'] satisfies DropReason[]) c.inc({ reason }, 0)
  return c
}

/**
 * The tracer of one process, or nothing: callers branch on `undefined` once.
 *
 * @example
 * const tracing = Tracing.create(config.tracing, log, metrics.registry) // undefined: tracing off
 * const span = tracing?.startServer(ctx, authority, route)
 * // … one startAttempt() per upstream attempt, ended when it is released …
 * if (span !== undefined) tracing?.endServer(span, 200, true, undefined)
 * await tracing?.shutdown() // flushes what is queued
 */
export class Tracing {
  /** The section the provider was built from (a reload compares against it). */
  readonly config: TracingConfig
  readonly endpoint: string
  readonly #provider: TracerProvider
  readonly #tracer: Tracer
  readonly #propagator: TextMapPropagator
  /** W3C Trace Context is among the propagators: it owns `tracestate`. */
  readonly #w3c: boolean
  /** Endpoints are parsed once, not per attempt. */
  readonly #endpoints = new WeakMap<Endpoint, { address: string, port: number }>()

  private constructor (config: TracingConfig, log: Logger, registry: Registry) {
    this.config = config
    this.endpoint = tracesEndpoint(config)
    const exporterConfig = { url: this.endpoint, timeoutMillis: config.exportTimeout }
    const exporter = config.protocol === 'http/json' ? new JsonExporter(exporterConfig) : new ProtobufExporter(exporterConfig)
    const dropped = droppedCounter(registry)
    this.#provider = new TracerProvider({
      resource: defaultResource().merge(resourceFromAttributes({
        [ATTR_SERVICE_NAME]: config.serviceName ?? nonEmpty(process.env.OTEL_SERVICE_NAME) ?? 'outrider',
        // Every process (worker) exports on its own: tell them apart.
        [ATTR_SERVICE_INSTANCE_ID]: randomUUID(),
      })),
      // Parent-based: a client's sampled flag decides (so a trace is never cut
      // in half at the proxy); the ratio applies to traces that start here.
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.samplingRatio) }),
      // Batched off the request path: ending a span only queues it.
      spanProcessors: [new CountingBatchProcessor(
        new ReportingExporter(exporter, log, this.endpoint, dropped.labels('export_failed')),
        config, dropped.labels('queue_full'), log,
      )],
    })
    this.#tracer = this.#provider.getTracer('outrider')
    const propagators: TextMapPropagator[] = []
    for (const p of config.propagators) {
      if (p === 'tracecontext') propagators.push(new W3CTraceContextPropagator())
      else propagators.push(new B3Propagator({ injectEncoding: p === 'b3multi' ? B3InjectEncoding.MULTI_HEADER : B3InjectEncoding.SINGLE_HEADER }))
    }
    this.#w3c = config.propagators.includes('tracecontext')
    // Extraction runs in the listed order and a later match wins.
    this.#propagator = propagators.length === 1 ? propagators[0] as TextMapPropagator : new CompositePropagator({ propagators })
  }

  /**
   * The process's tracing, or undefined when the config has none (or it is
   * disabled). `registry` gets {@link SPANS_DROPPED_METRIC}: without tracing
   * the metric does not exist.
   */
  static create (config: Config['tracing'], log: Logger, registry: Registry): Tracing | undefined {
    if (config === undefined || !config.enabled) return undefined
    const t = new Tracing(config, log, registry)
    log.info('tracing enabled', { endpoint: t.endpoint, protocol: config.protocol, samplingRatio: config.samplingRatio, propagators: config.propagators })
    return t
  }

  /**
   * The SERVER span of an exchange, continuing the client's trace when its
   * `traceparent` (or B3) is valid. Name `{method} {http.route}`, or
   * `{method}` without a route template (semconv "Name").
   */
  startServer (ctx: RequestContext, authority: string, route: CompiledRoute): Span {
    const parent = this.#propagator.extract(ROOT_CONTEXT, ctx.upstreamHeaders, headerGetter)
    const method = KNOWN_METHODS.has(ctx.method) ? ctx.method : '_OTHER'
    const template = routeTemplate(route)
    const name = method === '_OTHER' ? 'HTTP' : template === undefined ? method : `${method} ${template}`
    const span = this.#tracer.startSpan(name, { kind: SpanKind.SERVER }, parent)
    // An unsampled span records nothing: skip building what it would drop.
    if (!span.isRecording()) return span
    setMethod(span, method, ctx.method)
    span.setAttribute(ATTR_URL_PATH, ctx.path)
    span.setAttribute(ATTR_URL_SCHEME, ctx.scheme)
    setServerAddress(span, authority, ctx.scheme)
    span.setAttribute(ATTR_CLIENT_ADDRESS, ctx.clientIp)
    span.setAttribute(ATTR_NETWORK_PROTOCOL_VERSION, ctx.req.httpVersionMajor === 2 ? '2' : ctx.req.httpVersion)
    if (template !== undefined) span.setAttribute(ATTR_HTTP_ROUTE, template)
    span.setAttribute('outrider.route', ctx.routeName)
    span.setAttribute('outrider.request_id', ctx.requestId)
    const ua = ctx.req.headers['user-agent']
    if (ua !== undefined) span.setAttribute(ATTR_USER_AGENT_ORIGINAL, ua)
    return span
  }

  /**
   * Ends the SERVER span. `status` is what went to the client (0: nothing did),
   * `finished` whether the whole response did. Per semconv, a server span is
   * an error for 5xx only; a 4xx is the client's and leaves the status unset.
   */
  endServer (span: Span, status: number, finished: boolean, error: Error | undefined): void {
    if (span.isRecording()) {
      if (status !== 0) span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status)
      const code = error === undefined ? undefined : (error as OutriderError).code ?? error.name
      if (code !== undefined) span.setAttribute('outrider.error.code', code)
      if (error !== undefined && (status >= 500 || !finished)) {
        span.setAttribute(ATTR_ERROR_TYPE, code as string)
        span.setStatus({ code: SpanStatusCode.ERROR, message: error.message })
      } else if (!finished) {
        // The client went away: not a failure of the proxy or the upstream.
        span.setAttribute('outrider.client_closed', true)
      } else if (status >= 500) {
        span.setAttribute(ATTR_ERROR_TYPE, String(status))
        span.setStatus({ code: SpanStatusCode.ERROR })
      }
    }
    span.end()
  }

  /**
   * A CLIENT span for one upstream attempt, child of `server`, and its context
   * written into `headers` (`traceparent`/`tracestate`, B3 when configured):
   * the upstream's spans hang under this attempt, not under the exchange.
   */
  startAttempt (server: Span, endpoint: Endpoint, method: string, upstreamPath: string, retry: number, hedge: boolean, headers: HeaderMap): Span {
    const known = KNOWN_METHODS.has(method) ? method : '_OTHER'
    const span = this.#tracer.startSpan(known === '_OTHER' ? 'HTTP' : known, { kind: SpanKind.CLIENT }, trace.setSpan(ROOT_CONTEXT, server))
    // The client's tracestate belongs to its traceparent: injection writes it
    // back when that parent was valid, and without one it MUST be discarded
    // (W3C Trace Context §3.3.1.1), not sent beside a trace started here.
    if (this.#w3c && headers.tracestate !== undefined) delete headers.tracestate
    this.#propagator.inject(trace.setSpan(ROOT_CONTEXT, span), headers, headerSetter)
    if (!span.isRecording()) return span
    setMethod(span, known, method)
    let e = this.#endpoints.get(endpoint)
    if (e === undefined) {
      const u = new URL(endpoint.id)
      e = { address: u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname, port: u.port === '' ? (u.protocol === 'https:' ? 443 : 80) : Number(u.port) }
      this.#endpoints.set(endpoint, e)
    }
    span.setAttribute(ATTR_SERVER_ADDRESS, e.address)
    span.setAttribute(ATTR_SERVER_PORT, e.port)
    // Without the query: it carries tokens and personal data (as in the access log).
    const q = upstreamPath.indexOf('?')
    span.setAttribute(ATTR_URL_FULL, endpoint.id + (q === -1 ? upstreamPath : upstreamPath.slice(0, q)))
    if (retry > 0) span.setAttribute(ATTR_HTTP_REQUEST_RESEND_COUNT, retry)
    if (hedge) span.setAttribute('outrider.hedge', true)
    return span
  }

  /** The attempt's response head. semconv: on a CLIENT span 4xx and 5xx are errors. */
  attemptStatus (span: Span, status: number): void {
    if (!span.isRecording()) return
    span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status)
    if (status >= 400) {
      span.setAttribute(ATTR_ERROR_TYPE, String(status))
      span.setStatus({ code: SpanStatusCode.ERROR })
    }
  }

  /** The attempt failed (connect failure, timeout, reset …): `error.type` is the stable code. */
  attemptFailed (span: Span, err: OutriderError): void {
    if (!span.isRecording()) return
    span.setAttribute(ATTR_ERROR_TYPE, err.code)
    const phase = err.extensions?.phase
    if (typeof phase === 'string') span.setAttribute('outrider.error.phase', phase)
    span.setStatus({ code: SpanStatusCode.ERROR, message: err.message })
  }

  /** The proxy gave up on the attempt itself: not an upstream failure. */
  attemptCancelled (span: Span, reason: CancelReason): void {
    if (!span.isRecording()) return
    span.setAttribute(ATTR_CANCELLED, reason)
    span.addEvent('outrider.cancelled', { reason })
  }

  /**
   * A plugin decision: `annotate(key, value)` becomes the event
   * `outrider.<key>` with the value as its `value` attribute.
   */
  decision (span: Span, key: string, value: string | number | boolean): void {
    if (span.isRecording()) span.addEvent(`outrider.${key}`, { value })
  }

  /**
   * A plugin answered in the request phase (a local response, or a thrown
   * 401/403/429 …): the proxy's decision, recorded where it was made.
   */
  pluginReply (span: Span, status: number, err: OutriderError | undefined): void {
    if (!span.isRecording()) return
    if (err === undefined) span.addEvent('outrider.plugin_reply', { [ATTR_HTTP_RESPONSE_STATUS_CODE]: status })
    else span.addEvent('outrider.plugin_reply', { [ATTR_HTTP_RESPONSE_STATUS_CODE]: status, 'outrider.error.code': err.code })
  }

  /**
   * A request answered by the listener before any route took it (404 no
   * route, 400 malformed head, 405 CONNECT, OPTIONS with `Max-Forwards: 0` …):
   * a SERVER span of its own, started and ended here. Returns its trace id
   * for the access log.
   */
  traceRejected (req: IncomingMessage, scheme: string, status: number, err: OutriderError | undefined): string {
    const headers = req.headers as HeaderMap
    const parent = this.#propagator.extract(ROOT_CONTEXT, headers, headerGetter)
    const raw = req.method ?? 'GET'
    const method = KNOWN_METHODS.has(raw) ? raw : '_OTHER'
    const span = this.#tracer.startSpan(method === '_OTHER' ? 'HTTP' : method, { kind: SpanKind.SERVER }, parent)
    if (span.isRecording()) {
      setMethod(span, method, raw)
      const url = req.url ?? ''
      const q = url.indexOf('?')
      span.setAttribute(ATTR_URL_PATH, q === -1 ? url : url.slice(0, q))
      span.setAttribute(ATTR_URL_SCHEME, scheme)
      const host = req.headers.host ?? req.headers[':authority']
      if (typeof host === 'string') setServerAddress(span, host, scheme)
      span.setAttribute(ATTR_CLIENT_ADDRESS, req.socket.remoteAddress ?? '')
      span.setAttribute(ATTR_NETWORK_PROTOCOL_VERSION, req.httpVersionMajor === 2 ? '2' : req.httpVersion)
      span.setAttribute('outrider.route', '__unmatched__')
      const ua = req.headers['user-agent']
      if (ua !== undefined) span.setAttribute(ATTR_USER_AGENT_ORIGINAL, ua)
    }
    this.endServer(span, status, true, err)
    return span.spanContext().traceId
  }

  /** Exports what is queued (tests, and before an exit). */
  forceFlush (): Promise<void> {
    return this.#provider.forceFlush()
  }

  /**
   * Flushes queued spans and stops the exporter. Bounded: a collector that is
   * down must not hold up a shutdown past `timeoutMs`.
   */
  async shutdown (timeoutMs = 5000): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      this.#provider.shutdown().catch(() => {}),
      new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs); timer.unref() }),
    ])
    clearTimeout(timer)
  }
}

/**
 * `http.route` is a path template (semconv): the route's exact `path`, or its
 * `pathPrefix` followed by `*`. A regex or host-only route has no template;
 * the route's name is always in `outrider.route`.
 */
function routeTemplate (route: CompiledRoute): string | undefined {
  const m = route.config.match
  if (m.path !== undefined) return m.path
  if (m.pathPrefix !== undefined) return `${m.pathPrefix}*`
  return undefined
}

function setMethod (span: Span, known: string, raw: string): void {
  span.setAttribute(ATTR_HTTP_REQUEST_METHOD, known)
  if (known === '_OTHER') span.setAttribute(ATTR_HTTP_REQUEST_METHOD_ORIGINAL, raw)
}

/** `server.address`/`server.port` from the request's authority (Host or :authority). */
function setServerAddress (span: Span, authority: string, scheme: string): void {
  let host = authority
  let port = ''
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']')
    host = authority.slice(1, end === -1 ? undefined : end)
    if (end !== -1 && authority.charCodeAt(end + 1) === 58 /* : */) port = authority.slice(end + 2)
  } else {
    const colon = authority.lastIndexOf(':')
    if (colon !== -1) { host = authority.slice(0, colon); port = authority.slice(colon + 1) }
  }
  if (host === '') return
  span.setAttribute(ATTR_SERVER_ADDRESS, host)
  const n = port === '' ? (scheme === 'https' ? 443 : 80) : Number(port)
  if (Number.isInteger(n)) span.setAttribute(ATTR_SERVER_PORT, n)
}

function nonEmpty (s: string | undefined): string | undefined {
  return s === undefined || s === '' ? undefined : s
}

/** The processor's backstop past the exporter's own export deadline. */
const EXPORT_GRACE_MS = 1000

/** How often a failing exporter or a full queue is reported: once, then at most once a minute. */
const WARN_INTERVAL_MS = 60_000

/**
 * The SDK's BatchSpanProcessor with its queue bound enforced here, so that
 * every span it would drop is counted (it drops silently when its queue is
 * full, telling only the global diagnostic logger, which Outrider does not
 * install). `#queued` mirrors the processor's queue: +1 for each span handed
 * to it, minus each batch when the processor hands that batch to the exporter.
 * Since it never exceeds MAX_QUEUE, the processor's own bound is never hit.
 * The hot path gains a flag test, a comparison and an increment.
 */
class CountingBatchProcessor implements SpanProcessor {
  readonly #inner: BatchSpanProcessor
  readonly #full: Counter.Internal
  readonly #log: Logger
  #queued = 0
  #lastWarn = 0
  #dropped = 0

  constructor (exporter: SpanExporter, config: TracingConfig, full: Counter.Internal, log: Logger) {
    this.#full = full
    this.#log = log
    const taken = (n: number): void => { this.#queued -= n }
    this.#inner = new BatchSpanProcessor({
      exporter: {
        // Called as the processor takes a batch off its queue.
        export (spans, done) { taken(spans.length); exporter.export(spans, done) },
        shutdown: () => exporter.shutdown(),
        forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve(),
      },
      maxQueueSize: MAX_QUEUE,
      scheduledDelayMillis: config.exportDelay,
      // The exporter's deadline (retries included) decides when an export has
      // failed; the processor's own (30 s by default) must not cut in first
      // and start a second export beside one still running.
      exportTimeoutMillis: config.exportTimeout + EXPORT_GRACE_MS,
    })
  }

  onStart (_span: SdkSpan, _parent: Context): void {}

  onEnd (span: ReadableSpan): void {
    // The processor ignores unsampled spans: so must the count.
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return
    if (this.#queued >= MAX_QUEUE) { this.#drop(); return }
    this.#queued++
    this.#inner.onEnd(span)
  }

  #drop (): void {
    this.#full.inc()
    this.#dropped++
    const now = Date.now()
    if (now - this.#lastWarn < WARN_INTERVAL_MS) return
    this.#lastWarn = now
    this.#log.warn('trace export queue full; spans dropped', { queue: MAX_QUEUE, dropped: this.#dropped })
    this.#dropped = 0
  }

  forceFlush (): Promise<void> { return this.#inner.forceFlush() }

  shutdown (): Promise<void> { return this.#inner.shutdown() }
}

/**
 * Reports failed exports in Outrider's log and counts their spans: the SDK
 * would only tell its global diagnostic logger, which Outrider does not
 * install (no globals).
 */
class ReportingExporter implements SpanExporter {
  readonly #inner: SpanExporter
  readonly #log: Logger
  readonly #endpoint: string
  readonly #failed: Counter.Internal
  #lastWarn = 0
  #dropped = 0

  constructor (inner: SpanExporter, log: Logger, endpoint: string, failed: Counter.Internal) {
    this.#inner = inner
    this.#log = log
    this.#endpoint = endpoint
    this.#failed = failed
  }

  export (spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.#inner.export(spans, (result) => {
      if (result.code !== ExportResultCode.SUCCESS) {
        this.#failed.inc(spans.length)
        this.#dropped += spans.length
        const now = Date.now()
        if (now - this.#lastWarn >= WARN_INTERVAL_MS) {
          this.#lastWarn = now
          this.#log.warn('trace export failed; spans dropped', { endpoint: this.#endpoint, dropped: this.#dropped, err: result.error })
          this.#dropped = 0
        }
      }
      done(result)
    })
  }

  shutdown (): Promise<void> { return this.#inner.shutdown() }

  forceFlush (): Promise<void> { return this.#inner.forceFlush?.() ?? Promise.resolve() }
}
