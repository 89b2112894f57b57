import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http'
import http2 from 'node:http2'
import { Readable, Transform, Writable, addAbortSignal, pipeline, type Duplex, type TransformCallback } from 'node:stream'
import type { Dispatcher } from 'undici'
import type { IBackoff } from 'cockatiel'
import type { ExchangeSummary, HeaderMap, LocalResponse, RequestContext, ResponseContext } from './plugin.ts'
import type { CompiledRoute, Snapshot } from './snapshot.ts'
import type { Endpoint } from './upstream/cluster.ts'
import type { RequestHead } from './http/request-head.ts'
import type { ProxyMetrics } from './metrics.ts'
import type { Logger } from './log.ts'
import type { RetryReason } from './upstream/retry.ts'
import type { AttemptOutcome } from './upstream/outlier-detection.ts'
import type { Span } from '@opentelemetry/api'
import type { CancelReason, Tracing } from './tracing.ts'
import { HOP_BY_HOP } from './http/hop-by-hop.ts'
import { grpcProblemResponse, problemResponse, toOutriderError } from './http/problem.ts'
import { toUpstreamError } from './upstream/errors.ts'
import { orcaHeader } from './upstream/orca.ts'
import { forgetResponse, markClosing } from './http/connection.ts'
import { appendVia, clientAddress, setForwardingHeaders } from './http/forwarding.ts'
import { connectionListed, endToEnd, responseFields, singleValued } from './http/response-head.ts'
import {
  NoHealthyUpstreamError, OutriderError, OverloadedError, PayloadTooLargeError, UpstreamTimeoutError, pluginError,
} from './errors.ts'

/** Shared, per-listener facts an exchange needs. */
export interface ExchangeEnv {
  readonly metrics: ProxyMetrics
  readonly log: Logger
  /** Value appended to `Via` (RFC 9110 §7.6.3), e.g. `outrider`. */
  readonly via: string
  /** `1.1 <via>`, built once: the hop we add to every response's Via. */
  readonly responseVia: string
  /** Set while draining: responses carry `Connection: close`. */
  draining: boolean
  /**
   * The process's tracer; undefined when tracing is off. Exchanges branch on
   * it once, at construction: with it undefined no span, context or closure
   * is made, and every later check is a field compared with undefined.
   */
  readonly tracer: Tracing | undefined
}

const kExchange = Symbol('outrider.exchange')
type WithExchange = { [kExchange]?: Exchange }

// Listeners are module-level functions that find their exchange through a
// symbol on the emitter: no closure is allocated per request.
function onClientClose (this: ServerResponse & WithExchange): void { this[kExchange]?.clientClosed() }
function onSinkDrain (this: Writable & WithExchange): void { this[kExchange]?.resumeUpstream() }
/** Node's own way to put bytes on a response's connection in order (it writes 100 Continue with it). */
interface RawWritable { _writeRaw (data: string, encoding: BufferEncoding): boolean }
function noop (): void {}
/**
 * An HTTP/2 response is complete (node runs this after its own 'wantTrailers'
 * listener has queued the end of the stream) and the client may still be
 * sending its body. See endUpload.
 */
function onResponseComplete (this: http2.ServerHttp2Stream): void {
  // node is sending frames right now: a reset asked for here would wait for
  // a later write that may never come. Next turn, the end has gone out.
  setImmediate(endUpload, this)
}

/**
 * RST_STREAM(NO_ERROR) after a complete response asks the client to stop
 * sending its body, without error (RFC 9113 §8.1). Otherwise an upload the
 * answer made unwanted (a 413, an upstream's early 401) stalls on flow
 * control, and the stream with it, until the stream idle timeout resets it.
 */
function endUpload (stream: http2.ServerHttp2Stream): void {
  if (!stream.closed && !stream.destroyed && stream.state.remoteClose === 0) stream.close(http2.constants.NGHTTP2_NO_ERROR)
}
function discard (_chunk: unknown, _enc: unknown, cb: () => void): void { cb() }

/** Why we abort an attempt ourselves: never reported as an upstream failure. */
const CANCELLED = new Error('attempt cancelled by the proxy')

/**
 * The per-try timeout of an attempt fired before its response head. A native
 * timer of ours, not undici's `headersTimeout`: undici runs that one on its
 * coarse "fast timers" (about a second of resolution), which would turn a
 * 50 ms per-try timeout into a second. Module-level, so arming it allocates
 * no closure per attempt.
 */
function onTryTimeout (a: Attempt): void {
  a.timer = undefined
  const err = new UpstreamTimeoutError('the upstream did not answer within the per-try timeout', { extensions: { phase: 'headers' } })
  if (a.controller !== undefined) { a.abort(err); return }
  // Still queued for a connection, so undici has given us no way to abort it
  // yet: the exchange hears of the timeout now, and the attempt is cancelled
  // when undici starts it.
  a.exchange.attemptError(a, err)
  a.cancelled = true
}

/**
 * One upstream attempt: the undici DispatchHandler for one dispatch. An
 * exchange has one, or several when it retries or hedges; only the attempt
 * the exchange commits to may write to the client.
 */
class Attempt implements Dispatcher.DispatchHandler {
  readonly exchange: Exchange
  readonly endpoint: Endpoint
  readonly startedAt: number
  /** Holds a retry-budget slot (a retry or a hedge). */
  readonly extra: boolean
  /** Sent as its endpoint's half-open probe (`Cluster.isProbe`). */
  readonly probe: boolean
  controller: Dispatcher.DispatchController | undefined = undefined
  /** Its load was released (answered, failed or cancelled). */
  ended = false
  /** Request body bytes sent upstream by this attempt. */
  bodyBytes = 0
  /** Its outcome was reported to the cluster. */
  judged = false
  /** Dispatch until the response head, in ms; kept for a verdict held until the body ends. */
  headLatency = 0
  /** The head's ORCA load report, kept with headLatency. */
  orca: string | undefined = undefined
  cancelled = false
  /** The per-try timeout, armed until the response head arrives. */
  timer: NodeJS.Timeout | undefined = undefined
  /** Its CLIENT span (tracing on only); ended once, when the attempt is released. */
  span: Span | undefined = undefined
  /** Why the proxy cancelled it, once recorded on the span. */
  cancelReason: CancelReason | undefined = undefined
  /** Its request body, when that is a StreamedBody (always, to an HTTP/2 upstream). */
  upload: StreamedBody | undefined = undefined

  constructor (exchange: Exchange, endpoint: Endpoint, startedAt: number, extra: boolean, probe: boolean) {
    this.exchange = exchange
    this.endpoint = endpoint
    this.startedAt = startedAt
    this.extra = extra
    this.probe = probe
  }

  cancel (): void {
    this.cancelled = true
    if (this.timer !== undefined) { clearTimeout(this.timer); this.timer = undefined }
    this.abort(CANCELLED)
  }

  /**
   * Aborts the undici request. An upload still streaming to an HTTP/2
   * upstream is reset first: undici's abort alone can leave its stream open
   * (see StreamedBody.reset).
   */
  abort (reason: Error): void {
    const c = this.controller
    if (c === undefined || c.aborted) return
    this.upload?.reset()
    c.abort(reason)
  }

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.controller = controller
    if (this.cancelled) controller.abort(CANCELLED)
  }

  onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, headers: HeaderMap): void {
    this.exchange.attemptResponse(this, controller, statusCode, headers)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.exchange.attemptData(controller, chunk)
  }

  onBodySent (chunk: Buffer | string): void {
    this.bodyBytes += chunk.length
  }

  onResponseEnd (_controller: Dispatcher.DispatchController, trailers: HeaderMap): void {
    this.exchange.attemptEnd(this, trailers)
  }

  onResponseError (_controller: Dispatcher.DispatchController, err: Error): void {
    this.exchange.attemptError(this, err)
  }
}

/**
 * One request's journey: the RequestContext the plugins see, and the driver
 * of its upstream attempts, streaming the committed one to the client with
 * backpressure.
 */
export class Exchange implements RequestContext {
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly requestId: string
  readonly clientIp: string
  readonly scheme: string
  readonly authority: string
  readonly method: string
  readonly path: string
  readonly query: string
  readonly routeName: string
  readonly upstreamHeaders: HeaderMap
  upstreamPath: string
  identity: RequestContext['identity'] = undefined
  readonly startTime: number

  readonly #snapshot: Snapshot
  readonly #route: CompiledRoute
  readonly #env: ExchangeEnv
  readonly #head: RequestHead
  #state: Record<string, unknown> | undefined
  #annotations: Record<string, unknown> | undefined
  /** The SERVER span (tracing on only); ended once, in #finish. */
  readonly #span: Span | undefined
  /** The attempt writing to the client. */
  #winner: Attempt | undefined
  /** Attempts started and not ended (more than one only while hedging). */
  #live: Attempt[] | undefined
  #attempts = 0
  #sink: Writable | undefined
  #upstreamMs: number | undefined
  #status = 0
  #bytesOut = 0
  #error: Error | undefined
  #done = false
  #countedActive = false
  #bodyError: OutriderError | undefined
  /** The request body to send: null (none), the buffered body, or a stream. */
  #body: Buffer | Readable | null | undefined
  #bodyRead: Promise<Buffer | undefined> | undefined
  #backoff: IBackoff<unknown> | undefined
  /** The hedge timer, or the backoff before a retry. */
  #timer: NodeJS.Timeout | undefined
  /** #timer is a retry's backoff: the retry holds a budget slot until it is sent. */
  #retryPending = false
  /** This exchange holds the cluster breaker's half-open probe and owes it a verdict. */
  #clusterProbe = false
  #deadline: NodeJS.Timeout | undefined
  #continueSent = false
  /** HTTP/2 client: no connection-level headers, no per-connection bookkeeping. */
  readonly #h2: boolean
  /** What node decided for the connection, held back while a 100-continue is pending. */
  #keepAlive = true
  /** A plugin replaced the upstream body: it is drained, not relayed. */
  #replaced = false
  /** The client's body was handed to an attempt as a stream (not a buffer). */
  #streamed = false
  /** gRPC status fields that came in the head of a trailers-only answer (see attemptResponse). */
  #grpcStatus: HeaderMap | undefined
  /**
   * The HTTP status of an error answered to a gRPC client, which gets it as
   * 200 with a grpc-status (see #problem): what metrics, the access log and
   * the trace record, so a 502 or 504 still reads as one.
   */
  #answeredAs: number | undefined

  constructor (snapshot: Snapshot, route: CompiledRoute, req: IncomingMessage, res: ServerResponse, head: RequestHead, env: ExchangeEnv, scheme: string) {
    this.startTime = performance.now()
    this.req = req
    this.res = res
    this.#snapshot = snapshot
    this.#route = route
    this.#env = env
    this.#head = head
    this.routeName = route.name
    this.method = req.method as string
    this.path = head.path
    this.query = head.query
    this.scheme = scheme
    this.authority = head.authority
    this.#h2 = req.httpVersionMajor === 2
    this.clientIp = clientAddress(req)
    const headers = head.headers
    this.upstreamHeaders = headers

    this.requestId = setForwardingHeaders(headers, req, this.clientIp, scheme, head.authority, env.via)

    this.upstreamPath = rewritePath(route, head.path, head.query)
    this.#span = env.tracer === undefined ? undefined : env.tracer.startServer(this, head.authority, route)
    if (head.expectContinue) {
      // Until we send 100 the client may be holding its body back. Any final
      // answer before that leaves the body unread, so the connection cannot be
      // reused: its next bytes might be that body, not a request (§10.1.1).
      this.#keepAlive = res.shouldKeepAlive
      res.shouldKeepAlive = false
    }
    snapshot.inflight++
    env.metrics.live.inFlight++
    ;(res as ServerResponse & WithExchange)[kExchange] = this
    // `on`, not `once`: close fires once, and `once` allocates a wrapper per request.
    res.on('close', onClientClose)
  }

  annotate (key: string, value: string | number | boolean): void {
    if (this.#annotations === undefined) this.#annotations = {}
    this.#annotations[key] = value
    if (this.#span !== undefined) (this.#env.tracer as Tracing).decision(this.#span, key, value)
  }

  get state (): Record<string, unknown> {
    if (this.#state === undefined) this.#state = {}
    return this.#state
  }

  /** Runs the request phase, then dispatches. Never throws. */
  start (): void {
    const limit = this.#route.maxBodySize
    if (limit > 0 && this.#head.contentLength > limit) {
      this.#fail(new PayloadTooLargeError(`request body of ${this.#head.contentLength} bytes exceeds the limit of ${limit}`), true)
      return
    }
    const pipeline = this.#route.pipeline
    if (pipeline.onRequest.length === 0) { this.#forward(); return }
    let r: ReturnType<typeof pipeline.runRequest>
    try {
      r = pipeline.runRequest(this)
    } catch (err) {
      this.#pluginRejected(err); return
    }
    if (r === undefined) { this.#forward(); return }
    if (typeof (r as Promise<unknown>).then === 'function') {
      (r as Promise<LocalResponse | undefined>).then(
        (v) => { if (v === undefined) this.#forward(); else this.#respondLocal(v) },
        (err) => { this.#pluginRejected(err) },
      )
      return
    }
    this.#respondLocal(r as LocalResponse)
  }

  /** A request hook threw: a plugin's verdict (401, 403, 429 …) or its failure. */
  #pluginRejected (err: unknown): void {
    const e = pluginError(err)
    if (this.#span !== undefined) (this.#env.tracer as Tracing).pluginReply(this.#span, e.status, e)
    this.#fail(e)
  }

  // ---- request body ------------------------------------------------------------

  readBody (limit: number): Promise<Buffer | undefined> {
    this.#bodyRead ??= this.#readBody(limit)
    return this.#bodyRead
  }

  /**
   * Buffers the body up to `limit` bytes. A larger body is not lost: what was
   * read is put back in front of the rest, and it streams upstream as usual.
   */
  async #readBody (limit: number): Promise<Buffer | undefined> {
    if (!this.#head.hasBody) { this.#body = null; return Buffer.alloc(0) }
    this.#sendContinue()
    const max = this.#route.maxBodySize
    const chunks: Buffer[] = []
    let size = 0
    const req = this.req
    for (;;) {
      const chunk = req.read() as Buffer | null
      if (chunk !== null) {
        chunks.push(chunk)
        size += chunk.length
        if (max > 0 && size > max) throw new PayloadTooLargeError(`request body exceeds the limit of ${max} bytes`)
        if (size > limit) {
          const rest = Readable.from(prepend(chunks, req), { objectMode: false })
          // #send counts only a body it reads from req itself: a chunked one
          // put back here MUST still be held to the route's limit.
          this.#body = max > 0 && this.#head.contentLength === -1 ? rest.pipe(new StreamedBody(max, this)) : rest
          return undefined
        }
        continue
      }
      if (req.readableEnded) break
      const ended = await new Promise<boolean>((resolve, reject) => {
        const onReadable = (): void => { cleanup(); resolve(false) }
        const onEnd = (): void => { cleanup(); resolve(true) }
        const onError = (err: Error): void => { cleanup(); reject(err) }
        const cleanup = (): void => { req.off('readable', onReadable); req.off('end', onEnd); req.off('error', onError) }
        req.on('readable', onReadable)
        req.on('end', onEnd)
        req.on('error', onError)
      })
      if (ended && req.readableLength === 0) break
    }
    const body = Buffer.concat(chunks, size)
    this.#body = body
    return body
  }

  #sendContinue (): void {
    if (!this.#head.expectContinue || this.#continueSent) return
    // Only now is the body wanted (RFC 9110 §10.1.1): limits, routing and
    // the request phase had their say without the client uploading it.
    this.#continueSent = true
    const res = this.res
    if (res.socket === null) {
      // Queued behind an earlier response on the connection (pipelining):
      // node would put this response's head ahead of a 100 written now. It
      // goes out once the response has the socket, unless the final head is
      // already written by then (the client sent the body without waiting).
      res.once('socket', () => { if (!res.headersSent) res.writeContinue() })
    } else {
      res.writeContinue()
    }
    res.shouldKeepAlive = this.#keepAlive
  }

  // ---- attempts ----------------------------------------------------------------

  /** After the request phase: overload check, body preparation, first attempt. */
  #forward (): void {
    if (this.#done || this.res.destroyed) return
    const cluster = this.#route.cluster
    const limit = cluster.overloaded()
    if (limit !== undefined) { this.#fail(new OverloadedError(`cluster "${cluster.name}" is overloaded (${limit})`, { headers: cluster.overloadHeaders(limit) })); return }
    cluster.active++
    cluster.retryBudget.deposit(performance.timeOrigin + this.startTime)
    this.#countedActive = true
    // overloaded() let the request through a half-open cluster breaker only
    // as its probe; if no attempt reports back, #finish hands the slot back.
    if (cluster.breaker !== undefined && cluster.breaker.state === 'half-open') this.#clusterProbe = true
    const retry = this.#route.retry
    const head = this.#head
    // Chunked bodies are never held back: a streaming upload may wait for the
    // response before it sends more, and buffering it would deadlock.
    if (this.#body === undefined && head.hasBody && retry !== undefined &&
      head.contentLength >= 0 && head.contentLength <= retry.config.maxReplayBodySize && retry.mayReplay(this.method)) {
      // Small enough to replay: buffer it so a retry can send it again.
      this.readBody(retry.config.maxReplayBodySize).then(() => { this.#firstAttempt() }, (err: unknown) => {
        this.#fail(err instanceof OutriderError ? err : new PayloadTooLargeError('request body could not be read', { cause: err }), true)
      })
      return
    }
    this.#firstAttempt()
  }

  #firstAttempt (): void {
    if (this.#done || this.res.destroyed) return
    const overall = this.#route.overallTimeout
    if (overall !== undefined) this.#deadline = setTimeout(() => { this.#overallTimeout() }, overall)
    if (!this.#send(undefined, false, false)) return
    const hedge = this.#route.hedge
    if (hedge !== undefined && this.#body == null && (this.method === 'GET' || this.method === 'HEAD')) {
      this.#timer = setTimeout(() => { this.#hedge() }, this.#hedgeDelay(hedge))
    }
  }

  /** The fixed delay, or the route's observed p95 (50 ms until it has enough samples). */
  #hedgeDelay (hedge: NonNullable<CompiledRoute['hedge']>): number {
    if (hedge.delay !== 'p95') return hedge.delay
    return Math.max(1, this.#route.latencies?.quantile(0.95, performance.now(), 50) ?? 50)
  }

  /**
   * Dispatches one attempt. Returns false when no endpoint could take it (the
   * exchange has then failed, unless another attempt is still live).
   */
  #send (avoid: Endpoint | undefined, extra: boolean, hedge: boolean): boolean {
    const cluster = this.#route.cluster
    const picked = cluster.choose(this.upstreamHeaders, this.clientIp, avoid)
    if (typeof picked === 'string') {
      if (extra) cluster.retryBudget.release()
      if (this.#live !== undefined && this.#live.length > 0) return false
      this.#fail(picked === 'none'
        ? new NoHealthyUpstreamError(`cluster "${cluster.name}" has no healthy endpoint`)
        : new OverloadedError(`cluster "${cluster.name}" is overloaded (${picked})`, { headers: cluster.overloadHeaders(picked) }))
      return false
    }
    picked.inflight++
    this.#attempts++
    const attempt = new Attempt(this, picked, performance.now(), extra, cluster.isProbe(picked))
    if (this.#live === undefined) this.#live = [attempt]
    else this.#live.push(attempt)
    let body: Readable | Buffer | null = null
    if (this.#head.hasBody) {
      if (this.#body !== undefined) {
        body = this.#body
      } else {
        this.#sendContinue()
        // A declared length was checked in start(); only chunked bodies need counting.
        const limit = this.#head.contentLength === -1 ? this.#route.maxBodySize : 0
        body = limit > 0 ? this.req.pipe(new StreamedBody(limit, this)) : this.req
      }
      if (!Buffer.isBuffer(body)) this.#streamed = true
      if (picked.http2 && body !== null) body = this.#forHttp2(body)
      if (body instanceof StreamedBody) attempt.upload = body
    }
    let headers = this.upstreamHeaders
    // gRPC servers refuse requests without it; we relay trailers, so it is true.
    if (picked.http2 && this.#head.teTrailers) headers.te = 'trailers'
    if (this.#span !== undefined) {
      // Each attempt sends its own span as the parent. A retry or hedge gets a
      // copy of the headers: undici may still hold an earlier attempt's object
      // (queued in its pool) and must not see this one's traceparent.
      if (extra) headers = { ...headers }
      attempt.span = (this.#env.tracer as Tracing).startAttempt(this.#span, picked, this.method, this.upstreamPath, extra && !hedge ? this.#attempts - 1 : 0, hedge, headers)
    }
    const perTry = this.#route.retry?.config.perTryTimeout
    if (perTry !== undefined && perTry > 0) attempt.timer = setTimeout(onTryTimeout, perTry, attempt)
    picked.pool.dispatch({
      origin: picked.id,
      path: this.upstreamPath,
      method: this.method,
      headers: headers as Record<string, string | string[]>,
      body,
      headersTimeout: perTry ?? this.#route.headersTimeout,
      bodyTimeout: this.#route.bodyTimeout,
    }, attempt)
    return true
  }

  /**
   * The body as an HTTP/2 upstream gets it: through a StreamedBody, the only
   * way to reset its stream (see StreamedBody.reset). A buffered one too: it
   * can wait on flow control. Not an empty one, which undici does not send.
   */
  #forHttp2 (body: Readable | Buffer): Readable | Buffer {
    if (body instanceof StreamedBody || (Buffer.isBuffer(body) && body.length === 0)) return body
    const s = new StreamedBody(0, this)
    if (Buffer.isBuffer(body)) s.end(body)
    else body.pipe(s)
    return s
  }

  /**
   * Feeds an attempt's verdict to passive health, breakers and the balancer,
   * once: at the failure or a 5xx head; for a committed attempt whose head
   * said success, when its body ends (see #judgeLater).
   */
  #verdict (a: Attempt, outcome: AttemptOutcome | undefined, orca: string | undefined, latencyMs: number | undefined): void {
    if (a.judged) return
    a.judged = true
    const clusterProbe = this.#clusterProbe
    if (outcome !== undefined && !a.cancelled) this.#clusterProbe = false
    // A clock read costs ~80 ns on this VM: reuse the one the caller made.
    this.#route.cluster.record(a.endpoint, a.cancelled ? undefined : outcome, latencyMs ?? performance.now() - a.startedAt, orca, a.probe, clusterProbe)
  }

  /** Ends an attempt's load once: endpoint in-flight count, budget slot, live list. */
  #release (a: Attempt): void {
    if (a.ended) return
    a.ended = true
    if (a.timer !== undefined) { clearTimeout(a.timer); a.timer = undefined }
    a.endpoint.inflight--
    if (a.extra) this.#route.cluster.retryBudget.release()
    const live = this.#live
    if (live !== undefined) {
      const i = live.indexOf(a)
      if (i !== -1) live.splice(i, 1)
    }
    if (a.span !== undefined) a.span.end()
  }

  /** Cancels an attempt for `reason`, saying so on its span first. */
  #cancel (a: Attempt, reason: CancelReason): void {
    if (a.span !== undefined && !a.ended && a.cancelReason === undefined) {
      a.cancelReason = reason
      ;(this.#env.tracer as Tracing).attemptCancelled(a.span, reason)
    }
    a.cancel()
  }

  /** May the failed attempt be retried for `reason`? Claims a budget slot if so. */
  #mayRetry (reason: RetryReason): boolean {
    const retry = this.#route.retry
    if (retry === undefined || this.#done || this.#winner !== undefined) return false
    if (this.#attempts >= retry.maxAttempts || !retry.methodAllows(this.method, reason)) return false
    // A streamed body is gone once sent; only a buffered one can be replayed.
    if (this.#head.hasBody && !Buffer.isBuffer(this.#body)) return false
    const cluster = this.#route.cluster
    const maxRetries = cluster.config.overload.maxRetries
    if ((maxRetries !== undefined && cluster.retryBudget.retriesInFlight >= maxRetries) || !cluster.retryBudget.tryAcquire()) {
      this.#env.metrics.retryBudgetExhausted.labels(cluster.name).inc()
      return false
    }
    return true
  }

  /** Sends a retry after a backoff; #mayRetry has claimed its budget slot. */
  #scheduleRetry (reason: RetryReason, failed: Endpoint): void {
    this.#env.metrics.retries.labels(this.routeName, reason).inc()
    const retry = this.#route.retry as NonNullable<CompiledRoute['retry']>
    this.#backoff = retry.nextBackoff(this.#backoff)
    this.#clearTimer()
    this.#retryPending = true
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.#retryPending = false
      if (this.#done || this.res.destroyed) { this.#route.cluster.retryBudget.release(); return }
      this.#send(failed, true, false)
    }, this.#backoff.duration)
  }

  /**
   * Stops the hedge timer or a retry's backoff. A retry that will now never be
   * sent MUST give its budget slot back, or the cluster loses it for good
   * (and with `overload.maxRetries` slots lost, it never retries again).
   */
  #clearTimer (): void {
    if (this.#timer === undefined) return
    clearTimeout(this.#timer)
    this.#timer = undefined
    if (this.#retryPending) {
      this.#retryPending = false
      this.#route.cluster.retryBudget.release()
    }
  }

  /** The hedge timer fired with no response yet: race a second endpoint. */
  #hedge (): void {
    this.#timer = undefined
    const hedge = this.#route.hedge
    if (hedge === undefined || this.#done || this.#winner !== undefined || this.#live === undefined || this.#live.length === 0) return
    if (this.#attempts > hedge.maxHedges) return
    const cluster = this.#route.cluster
    if (!cluster.retryBudget.tryAcquire()) { this.#env.metrics.retryBudgetExhausted.labels(cluster.name).inc(); return }
    this.#env.metrics.hedges.labels(this.routeName, 'sent').inc()
    const first = this.#live[0] as Attempt
    if (this.#send(first.endpoint, true, true) && this.#attempts <= hedge.maxHedges) {
      this.#timer = setTimeout(() => { this.#hedge() }, this.#hedgeDelay(hedge))
    }
  }

  #overallTimeout (): void {
    this.#deadline = undefined
    if (this.#winner !== undefined || this.#done) return
    this.#clearTimer()
    for (const a of this.#live ?? []) this.#cancel(a, 'deadline')
    this.#fail(new UpstreamTimeoutError('no upstream answered before the route deadline', { extensions: { phase: 'overall' } }))
  }

  // ---- attempt callbacks (from Attempt) ----------------------------------------

  attemptResponse (a: Attempt, controller: Dispatcher.DispatchController, statusCode: number, headers: HeaderMap): void {
    if (this.#winner !== undefined || this.#done || a.cancelled) { a.cancel(); return }
    // undici hands over interim responses too (it refuses only 100); the
    // final one follows on the same handler, so a 1xx must not start ours.
    if (statusCode < 200) { this.#interim(statusCode, headers); return }
    if (a.timer !== undefined) { clearTimeout(a.timer); a.timer = undefined }
    if (a.span !== undefined) (this.#env.tracer as Tracing).attemptStatus(a.span, statusCode)
    const latency = performance.now() - a.startedAt
    const orca = orcaHeader(headers['endpoint-load-metrics'])
    const retry = this.#route.retry
    const reason = retry?.forStatus(statusCode)
    const outcome = statusCode >= 500 ? '5xx' : 'success'
    if (reason !== undefined || !this.#judgeLater(a, outcome)) this.#verdict(a, outcome, orca, latency)
    else { a.headLatency = latency; a.orca = orca }
    if (reason !== undefined) {
      // A hedged attempt still running may yet answer well: drop this one.
      const hedged = (this.#live as Attempt[]).length > 1
      if (hedged || this.#mayRetry(reason)) {
        a.cancel()
        this.#release(a)
        if (!hedged) this.#scheduleRetry(reason, a.endpoint)
        return
      }
    }
    this.#commit(a)
    this.#upstreamMs = latency
    this.#route.cluster.upstreamDuration.observe(latency / 1000)
    this.#route.latencies?.add(latency)
    this.#status = statusCode
    const close = !this.#h2 && (this.#env.draining || this.#bodyStranded())
    if (close) { markClosing(this.req.socket); this.req.on('error', noop) }
    // A gRPC "trailers-only" answer (status in the head, no body) only means
    // that as one HEADERS frame ending the stream, which node's compat API
    // cannot send once the head is written. The status goes out as trailers
    // instead: an equivalent gRPC response.
    // gRPC-Web keeps it in the head on purpose (browsers cannot read HTTP/2 trailers).
    if (this.#h2 && headers['grpc-status'] !== undefined && isGrpc(headers['content-type'])) headers = this.#moveGrpcStatus(headers)
    const hooks = this.#route.pipeline
    if (hooks.onResponse.length === 0) {
      // No hook needs a map: the head goes straight to a flat list.
      const attempts = retry?.config.attemptsHeader === true ? String(this.#attempts) : undefined
      const fields = responseFields(headers, statusCode, this.#env.responseVia, this.requestId, attempts, this.#h2)
      if (close) fields.push('connection', 'close')
      this.#endsUpload()
      this.res.writeHead(statusCode, fields as string[])
      this.#sink = this.res
      return
    }
    const out = endToEnd(headers)
    // RFC 9110 §8.6: a 204 MUST NOT carry Content-Length (see responseFields).
    if (statusCode === 204 && out['content-length'] !== undefined) delete out['content-length']
    appendVia(out, this.#env.responseVia)
    out['x-request-id'] ??= this.requestId
    if (retry?.config.attemptsHeader === true) out['x-outrider-attempts'] = String(this.#attempts)
    if (close) out.connection = 'close'
    const rc = new ResponseState(statusCode, out, false)
    let r: void | Promise<void>
    try {
      r = hooks.runResponse(this, rc)
    } catch (err) {
      a.abort(pluginError(err)); return
    }
    if (r === undefined) { this.#startBody(rc); return }
    controller.pause()
    r.then(() => {
      if (this.#done) return
      // A head node refuses fails the attempt as it would without the hook,
      // not as a rejection no one handles.
      try { this.#startBody(rc) } catch (err) { a.abort(err as Error); return }
      controller.resume()
    }, (err) => { a.abort(pluginError(err)) })
  }

  /**
   * The client is still sending a body it streamed to an upstream that has
   * answered already. Whether the upstream reads the rest is up to it, and
   * undici destroys the body it stops sending, after which node reads
   * nothing more from the connection: its next request would wait forever.
   * So the answer says `Connection: close` (RFC 9112 §9.6) rather than
   * promise a connection that cannot be reused; discarding the rest instead
   * would need node's parser to read on into a destroyed request.
   */
  #bodyStranded (): boolean {
    return this.#streamed && !this.req.complete
  }

  /**
   * HTTP/2: a response starts while the request body may still be coming. Its
   * end then ends the upload too (see onResponseComplete); HTTP/1.1 has
   * `Connection: close` for that (see #bodyStranded).
   */
  #endsUpload (): void {
    if (this.#h2 && this.#head.hasBody && !this.req.complete) {
      (this.res as unknown as http2.Http2ServerResponse).stream.on('wantTrailers', onResponseComplete)
    }
  }

  /**
   * Whether the attempt's success is only judged when its body ends: a head
   * can be followed by a reset or a truncated body, and an endpoint that
   * breaks every body must not read as healthy (Linkerd classifies at the end
   * of the stream too). One outcome per attempt, so consecutive counts see
   * the failure, not a success that resets them. A half-open probe is judged
   * at the head: a long stream must not keep its circuit shut meanwhile.
   */
  #judgeLater (a: Attempt, outcome: AttemptOutcome): boolean {
    return outcome === 'success' && !this.#clusterProbe && !a.probe
  }

  /** This attempt's response goes to the client; every other one is cancelled. */
  #commit (a: Attempt): void {
    this.#winner = a
    this.#clearTimer()
    clearTimeout(this.#deadline)
    const live = this.#live
    if (live !== undefined && live.length > 1) {
      for (const other of live.slice()) if (other !== a) this.#cancel(other, 'lost_race')
    }
    if (a.extra && this.#route.hedge !== undefined) this.#env.metrics.hedges.labels(this.routeName, 'won').inc()
  }

  attemptData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#bytesOut += chunk.length
    const sink = this.#sink as Writable
    if (!sink.write(chunk)) {
      controller.pause()
      const s = sink as Writable & WithExchange
      if (s[kExchange] === undefined) s[kExchange] = this
      sink.once('drain', onSinkDrain)
    }
  }

  /** Takes the gRPC status fields out of a response head, to be sent as trailers. */
  #moveGrpcStatus (headers: HeaderMap): HeaderMap {
    const head: HeaderMap = {}
    const status: HeaderMap = {}
    for (const name in headers) {
      if (name === 'grpc-status' || name === 'grpc-message' || name === 'grpc-status-details-bin') status[name] = headers[name]
      else head[name] = headers[name]
    }
    this.#grpcStatus = status
    return head
  }

  attemptEnd (a: Attempt, trailers: HeaderMap): void {
    this.#verdict(a, 'success', a.orca, a.headLatency)
    this.#release(a)
    if (this.#grpcStatus !== undefined) trailers = { ...this.#grpcStatus, ...trailers }
    if (!this.#replaced) for (const _ in trailers) {
      this.res.addTrailers(relayableTrailers(trailers, this.#h2) as Record<string, string>)
      break
    }
    ;(this.#sink as Writable).end()
  }

  attemptError (a: Attempt, err: Error): void {
    if (a.span !== undefined && !a.ended && a.cancelReason === undefined && err !== CANCELLED) {
      (this.#env.tracer as Tracing).attemptFailed(a.span, toUpstreamError(err))
    }
    if (a === this.#winner) {
      if (err === CANCELLED) {
        // Cancelled because the client left (clientClosed): no failure of
        // the upstream's, and no reply to make; the exchange ends as a 499.
        this.#verdict(a, 'success', a.orca, a.headLatency)
        this.#release(a)
        return
      }
      // The response had started: cut the client's too, never end it cleanly.
      const e = toUpstreamError(err)
      // Only the upstream's own fault counts against it (not a plugin
      // failing or the request body's limit).
      const phase = e.extensions?.phase
      const fault = phase === 'reset' || phase === 'response' || phase === 'body'
      this.#verdict(a, fault ? 'gateway-failure' : 'success', a.orca, a.headLatency)
      this.#release(a)
      // Counted as the upstream's error only when it is one (an HTTP/2 client
      // dropping its session mid-upload reaches here as its body's error).
      if (fault) this.#env.metrics.upstreamErrors.labels(this.#route.cluster.name, e.code).inc()
      this.#fail(this.#bodyError ?? e, this.#bodyError instanceof PayloadTooLargeError)
      return
    }
    if (a.cancelled || err === CANCELLED) { this.#verdict(a, undefined, undefined, undefined); this.#release(a); return }
    if (this.#bodyError !== undefined) { this.#verdict(a, undefined, undefined, undefined); this.#release(a); this.#fail(this.#bodyError, true); return }
    const e = toUpstreamError(err)
    const phase = e.extensions?.phase
    const upstreamFault = phase === 'connect' || phase === 'reset' || phase === 'headers' || phase === 'response'
    this.#verdict(a, upstreamFault ? 'gateway-failure' : undefined, undefined, undefined)
    this.#release(a)
    if (this.#done || this.res.destroyed) return
    if (upstreamFault) this.#env.metrics.upstreamErrors.labels(this.#route.cluster.name, e.code).inc()
    // Another hedged attempt may still answer.
    if (this.#live !== undefined && this.#live.length > 0) return
    const reason = this.#route.retry?.forError(e)
    if (reason !== undefined && this.#mayRetry(reason)) { this.#scheduleRetry(reason, a.endpoint); return }
    this.#fail(e)
  }

  /**
   * Interim (1xx) responses are relayed: 103 Early Hints let the client
   * preload while the upstream thinks, 102 keeps a patient client waiting.
   * Never to an HTTP/1.0 client (RFC 9110 §15.2), never after the final head;
   * 101 only ever comes through the upgrade path.
   */
  #interim (statusCode: number, headers: HeaderMap): void {
    if (statusCode === 101 || this.res.headersSent) return
    stripHopByHop(headers)
    if (this.#h2) {
      if (statusCode !== 103 || headers.link === undefined) return
      try { this.res.writeEarlyHints(headers as Record<string, string | string[]>) } catch {
        // A Link value node will not write: the hint is optional, the response is not.
      }
      return
    }
    if (this.req.httpVersionMinor === 0) return
    // Node writes only 100, 102 and 103 (the last only with a Link): the head
    // is written the way it writes those, after any earlier pipelined reply.
    let head = `HTTP/1.1 ${statusCode} ${STATUS_CODES[statusCode] ?? 'Informational'}\r\n`
    for (const name in headers) {
      const v = headers[name]
      if (v === undefined) continue
      if (typeof v === 'string') head += `${name}: ${v}\r\n`
      else for (const x of v) head += `${name}: ${x}\r\n`
    }
    ;(this.res as unknown as RawWritable)._writeRaw(head + '\r\n', 'latin1')
  }

  #startBody (rc: ResponseState): void {
    this.#status = rc.status
    if (this.#h2) singleValued(rc.headers)
    this.#endsUpload()
    this.res.writeHead(rc.status, rc.headers as Record<string, string | string[]>)
    const replacement = rc.replacement
    if (replacement !== undefined) {
      // The upstream body is read (so the connection is reused) and dropped.
      this.#sink = new Writable({ write: discard })
      this.#replaced = true
      const body = this.method === 'HEAD' ? undefined : replacement
      if (rc.transforms === undefined) { this.res.end(body); return }
      pipeline([...rc.transforms, this.res] as unknown as [Duplex, Writable], (err) => { if (err != null) this.res.destroy(err) })
      ;(rc.transforms[0] as Duplex).end(body)
      return
    }
    if (rc.transforms === undefined) { this.#sink = this.res; return }
    const first = rc.transforms[0] as Duplex
    pipeline([...rc.transforms, this.res] as unknown as [Duplex, Writable], (err) => { if (err != null) this.res.destroy(err) })
    this.#sink = first
  }

  // ---- called by listeners ---------------------------------------------------

  resumeUpstream (): void { this.#winner?.controller?.resume() }

  /** The body limit tripped while streaming a chunked request. */
  bodyTooLarge (err: PayloadTooLargeError): void {
    this.#bodyError = err
    const live = this.#live
    if (live !== undefined && live.length > 0) { for (const a of live.slice()) a.abort(err) } else this.#fail(err, true)
  }

  /** `close` on the response: either it finished or the client went away. */
  clientClosed (): void {
    // The failure that ended the exchange, if any, is known now: aborting the
    // attempts below may record a consequence of the client leaving.
    const failure = this.#error
    if (!this.#delivered()) {
      // Client gone mid-exchange: stop the upstream requests too (no orphaned work).
      for (const a of this.#live?.slice() ?? []) this.#cancel(a, 'client_closed')
      this.#winner?.abort(CANCELLED)
    }
    this.#finish(failure)
  }

  // ---- endings ---------------------------------------------------------------

  /**
   * The whole response went out. On HTTP/2 `writableFinished` is not enough:
   * a stream reset (by the client, or by the stream idle timeout) ends the
   * writable side too, possibly before any head was sent; its rstCode says so.
   */
  #delivered (): boolean {
    if (!this.res.writableFinished) return false
    if (!this.#h2) return true
    const stream = (this.res as unknown as { stream?: { rstCode?: number } }).stream
    return this.res.headersSent && (stream?.rstCode ?? 0) === 0
  }

  /** Answers with a local response, letting onResponse hooks see it. */
  #respondLocal (local: LocalResponse): void {
    if (this.res.headersSent || this.res.destroyed) return
    if (this.#span !== undefined) (this.#env.tracer as Tracing).pluginReply(this.#span, local.status, undefined)
    const headers: HeaderMap = {}
    if (local.headers !== undefined) for (const k in local.headers) headers[k.toLowerCase()] = local.headers[k]
    const body = local.body
    headers['x-request-id'] = this.requestId
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body))
    this.#status = local.status
    this.#writeLocal(local.status, headers, body, undefined)
  }

  /**
   * Writes a response made here. onResponse hooks see it (CORS headers on a
   * 401, say); if they fail, the plain `fallback` problem goes out instead.
   */
  #writeLocal (status: number, headers: HeaderMap, body: string | Buffer | undefined, fallback: OutriderError | undefined): void {
    const hooks = this.#route.pipeline
    const finish = (rc: ResponseState): void => {
      if (this.res.headersSent || this.res.destroyed) return
      this.#status = this.#answeredAs ?? rc.status
      if (this.#h2) singleValued(rc.headers)
      const out = this.method === 'HEAD' ? undefined : rc.replacement ?? body
      if (this.#h2 && out === undefined && rc.transforms === undefined && rc.headers['grpc-status'] !== undefined) { this.#trailersOnly(rc); return }
      this.#endsUpload()
      this.res.writeHead(rc.status, rc.headers as Record<string, string | string[]>)
      if (rc.transforms === undefined) { this.res.end(out); return }
      pipeline([...rc.transforms, this.res] as unknown as [Duplex, Writable], (err) => { if (err != null) this.res.destroy(err) })
      ;(rc.transforms[0] as Duplex).end(out)
    }
    const rc = new ResponseState(status, headers, true)
    if (hooks.onResponse.length === 0) { finish(rc); return }
    const failed = (err: unknown): void => {
      this.#env.log.warn('onResponse hook failed on a local response', { route: this.routeName, err })
      const pr = this.#problem(fallback ?? pluginError(err), headers.connection === 'close')
      body = pr.body
      finish(new ResponseState(pr.status, pr.headers, true))
    }
    try {
      const r = hooks.runResponse(this, rc)
      if (r === undefined) finish(rc)
      else r.then(() => { finish(rc) }, failed)
    } catch (err) {
      failed(err)
    }
  }

  /**
   * HTTP/2: a gRPC status in a bodiless head, sent as one HEADERS frame that
   * ends the stream. Only that is a trailers-only answer (gRPC over HTTP/2,
   * "Responses"): grpc-js reads a status in a head that leaves the stream
   * open as metadata, and waits for trailers. node's writeHead sends the head
   * at once; an end() before any head sends head and end together.
   */
  #trailersOnly (rc: ResponseState): void {
    const res = this.res
    res.statusCode = rc.status
    for (const name in rc.headers) {
      const v = rc.headers[name]
      if (v !== undefined) res.setHeader(name, v)
    }
    res.end()
    // No 'wantTrailers' follows such an end (see #endsUpload).
    if (this.#head.hasBody && !this.req.complete) setImmediate(endUpload, (res as unknown as http2.Http2ServerResponse).stream)
  }

  /**
   * `err` as the client can read it: an RFC 9457 problem, or for a gRPC or
   * gRPC-Web client (which reads no body, and takes any HTTP error status
   * for UNAVAILABLE) a gRPC status.
   */
  #problem (err: OutriderError, close: boolean): { status: number, headers: Record<string, string>, body: string | undefined } {
    const type = this.req.headers['content-type']
    if (type === undefined || !type.startsWith('application/grpc')) return problemResponse(err, this.requestId, close)
    this.#answeredAs = err.status
    return grpcProblemResponse(err, this.requestId, type, close)
  }

  /** Turns an error into a problem response (through onResponse hooks). */
  #fail (err: OutriderError, close = false): void {
    this.#error = err
    if (this.#bodyStranded()) close = true
    this.#clearTimer()
    clearTimeout(this.#deadline)
    this.#env.metrics.localReplies.labels(this.routeName, err.code).inc()
    if (this.res.headersSent || this.res.destroyed) { this.res.destroy(err); return }
    if (close) {
      // Don't read an unwanted body: the connection is closed after this reply.
      this.req.unpipe()
      this.req.on('error', noop)
      if (!this.#h2) markClosing(this.req.socket)
    }
    const p = this.#problem(err, !this.#h2 && (close || this.#env.draining))
    // "504 after 4 attempts" is what an operator needs to know about a failure.
    if (this.#attempts > 0 && this.#route.retry?.config.attemptsHeader === true) p.headers['x-outrider-attempts'] = String(this.#attempts)
    this.#writeLocal(p.status, p.headers, p.body, err)
  }

  #finish (failure: Error | undefined): void {
    if (this.#done) return
    this.#done = true
    this.#clearTimer()
    clearTimeout(this.#deadline)
    if (this.#countedActive) this.#route.cluster.active--
    if (this.#clusterProbe) this.#route.cluster.breaker?.release()
    const w = this.#winner
    if (w !== undefined) {
      // The client left mid-body: that says nothing against the endpoint.
      this.#verdict(w, 'success', w.orca, w.headLatency)
      this.#release(w)
    }
    if (!this.#h2) forgetResponse(this.req.socket, this.res)
    this.#snapshot.inflight--
    this.#env.metrics.live.inFlight--
    const durationMs = performance.now() - this.startTime
    const delivered = this.#delivered()
    const status = delivered ? this.#status || this.res.statusCode : 499
    this.#route.metrics.record(this.method, status, durationMs / 1000)
    const bytesIn = this.#winner?.bodyBytes ?? (Buffer.isBuffer(this.#body) ? this.#body.length : 0)
    const span = this.#span
    if (span !== undefined) {
      (this.#env.tracer as Tracing).endServer(span, this.res.headersSent ? this.#status || this.res.statusCode : 0, delivered, failure)
    }
    const log = this.#route.accessLog
    if (log !== undefined) {
      log.write({
        requestId: this.requestId,
        traceId: span?.spanContext().traceId,
        route: this.routeName,
        cluster: this.#route.cluster.name,
        endpoint: this.#winner?.endpoint.id,
        method: this.method,
        path: this.path,
        query: this.query,
        status,
        bytesIn,
        bytesOut: this.#bytesOut,
        durationMs,
        upstreamMs: this.#upstreamMs,
        attempts: this.#attempts,
        clientIp: this.clientIp,
        error: this.#error === undefined ? undefined : (this.#error as OutriderError).code ?? this.#error.name,
        annotations: this.#annotations,
      })
    }
    const pipeline = this.#route.pipeline
    if (pipeline.onLog.length === 0) return
    const summary: ExchangeSummary = {
      status,
      bytesIn,
      bytesOut: this.#bytesOut,
      durationMs,
      upstreamDurationMs: this.#upstreamMs,
      endpoint: this.#winner?.endpoint.id,
      error: this.#error,
    }
    pipeline.runLog(this, summary, (err) => { this.#env.log.warn('onLog hook failed', { route: this.routeName, err }) })
  }
}

/** Chunks already read, then the rest of the stream. */
async function * prepend (chunks: Buffer[], rest: Readable): AsyncGenerator<Buffer> {
  yield * chunks
  for await (const chunk of rest) yield chunk as Buffer
}

/** The mutable response the onResponse hooks see. */
class ResponseState implements ResponseContext {
  status: number
  readonly headers: HeaderMap
  readonly local: boolean
  transforms: Duplex[] | undefined = undefined
  replacement: Buffer | undefined = undefined

  constructor (status: number, headers: HeaderMap, local: boolean) {
    this.status = status
    this.headers = headers
    this.local = local
  }

  replaceBody (body: Buffer): void {
    this.replacement = body
    this.headers['content-length'] = String(body.length)
    delete this.headers['transfer-encoding']
  }

  pipeThrough (transform: Duplex): void {
    if (this.transforms === undefined) this.transforms = [transform]
    else this.transforms.push(transform)
  }
}

/**
 * A request body streamed upstream: counted against the route's limit when
 * chunked (`limit` 0: not counted), and, for an HTTP/2 upstream, the handle
 * on the stream undici pipes it into (see reset).
 */
class StreamedBody extends Transform {
  readonly #limit: number
  readonly #exchange: Exchange
  #seen = 0
  /** The HTTP/2 request stream undici pipes this into (it writes HTTP/1.1 bodies itself). */
  #upstream: Writable | undefined = undefined

  constructor (limit: number, exchange: Exchange) {
    super()
    this.#limit = limit
    this.#exchange = exchange
  }

  override pipe<T extends NodeJS.WritableStream> (destination: T, options?: { end?: boolean }): T {
    this.#upstream = destination as unknown as Writable
    return super.pipe(destination, options)
  }

  /**
   * Resets the upstream HTTP/2 stream with RST_STREAM(CANCEL). MUST come
   * before undici's abort, which closes the stream with NO_ERROR and destroys
   * it at once: while the upload is unfinished node never sends that reset
   * (the 'aborted' event it emits on close has the pipe destroy the stream
   * first, or the reset waits for a 'finish' the destroy rules out). nghttp2
   * then keeps the stream open, and once it asks node for the stream's next
   * DATA, node's answer for a stream it no longer knows is 0 bytes, not
   * "deferred": nghttp2 writes empty DATA frames in a loop that never yields,
   * and the whole process spins. A destroy with node's AbortError (which
   * addAbortSignal uses) sends the reset itself, with CANCEL (RFC 9113 §7).
   */
  reset (): void {
    const upstream = this.#upstream
    if (upstream !== undefined && !upstream.destroyed) addAbortSignal(AbortSignal.abort(), upstream)
  }

  override _transform (chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#seen += chunk.length
    if (this.#limit > 0 && this.#seen > this.#limit) {
      const err = new PayloadTooLargeError(`request body exceeds the limit of ${this.#limit} bytes`)
      this.#exchange.bodyTooLarge(err)
      cb(err)
      return
    }
    cb(null, chunk)
  }
}

/**
 * Fields that must not arrive as trailers (RFC 9110 §6.5.1): framing,
 * routing, authentication, response control and content description. A
 * recipient that merged them into the head would be misled; they are not
 * relayed.
 */
const NOT_TRAILERS: ReadonlySet<string> = new Set([
  'content-length', 'content-type', 'content-encoding', 'content-range', 'trailer', 'host',
  'authorization', 'www-authenticate', 'set-cookie', 'cookie',
  'cache-control', 'expires', 'date', 'location', 'retry-after', 'vary', 'age',
])

/**
 * Response trailers as relayed: hop-by-hop fields and those that have no
 * place in trailers dropped. An HTTP/2 client's trailers are sent by node
 * from its own 'wantTrailers' listener, where a throw is uncaught (the
 * process dies, or the stream hangs until its idle timeout) and nothing of
 * ours could catch it: they MUST be valid when handed over. After this they
 * are: names come from llhttp or nghttp2 (tokens), connection-specific fields
 * are stripped, and repeated single-value ones folded.
 */
function relayableTrailers (trailers: HeaderMap, h2: boolean): HeaderMap {
  stripHopByHop(trailers)
  for (const name in trailers) if (NOT_TRAILERS.has(name)) delete trailers[name]
  return h2 ? singleValued(trailers) : trailers
}

/** In place, for the rare heads (trailers, 1xx) that are not copied anyway. */
function stripHopByHop (headers: HeaderMap): void {
  const listed = connectionListed(headers.connection)
  if (listed !== undefined) for (const t of listed) delete headers[t]
  for (const name in headers) {
    if (HOP_BY_HOP.has(name)) delete headers[name]
  }
}

/** `application/grpc` and its `+proto`/`+json` forms, not gRPC-Web. */
function isGrpc (contentType: string | string[] | undefined): boolean {
  return typeof contentType === 'string' && contentType.startsWith('application/grpc') && !contentType.startsWith('application/grpc-web')
}

/** The path and query sent upstream: the route's prefix rewrite applied. */
export function rewritePath (route: CompiledRoute, path: string, query: string): string {
  let p = path
  if (route.stripPrefix !== undefined && path.startsWith(route.stripPrefix)) {
    const rest = path.slice(route.stripPrefix.length)
    const prefix = route.newPrefix as string
    p = prefix.endsWith('/') && rest.startsWith('/') ? prefix + rest.slice(1) : prefix + rest
    if (p === '') p = '/'
  }
  return query === '' ? p : `${p}?${query}`
}

export { toOutriderError }
