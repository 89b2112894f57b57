import type { IncomingMessage, ServerResponse } from 'node:http'
import { Transform, pipeline, type Duplex, type Writable, type TransformCallback } from 'node:stream'
import type { Dispatcher } from 'undici'
import type { ExchangeSummary, HeaderMap, LocalResponse, RequestContext, ResponseContext } from './plugin.ts'
import type { CompiledRoute, Snapshot } from './snapshot.ts'
import type { Endpoint } from './upstream/cluster.ts'
import type { RequestHead } from './http/request-head.ts'
import type { ProxyMetrics } from './metrics.ts'
import type { Logger } from './log.ts'
import { HOP_BY_HOP } from './http/hop-by-hop.ts'
import { sendProblem, toOutriderError } from './http/problem.ts'
import { toUpstreamError } from './upstream/errors.ts'
import { forgetResponse, markClosing } from './http/connection.ts'
import { setForwardingHeaders } from './http/forwarding.ts'
import {
  NoHealthyUpstreamError, OutriderError, PayloadTooLargeError, PluginError,
} from './errors.ts'

/** Shared, per-listener facts an exchange needs. */
export interface ExchangeEnv {
  readonly metrics: ProxyMetrics
  readonly log: Logger
  /** Value appended to `Via` (RFC 9110 §7.6.3), e.g. `outrider`. */
  readonly via: string
  /** Set while draining: responses carry `Connection: close`. */
  draining: boolean
}

const kExchange = Symbol('outrider.exchange')
type WithExchange = { [kExchange]?: Exchange }

// Listeners are module-level functions that find their exchange through a
// symbol on the emitter: no closure is allocated per request.
function onClientClose (this: ServerResponse & WithExchange): void { this[kExchange]?.clientClosed() }
function onSinkDrain (this: Writable & WithExchange): void { this[kExchange]?.resumeUpstream() }
function noop (): void {}

/**
 * One request's journey: the RequestContext the plugins see and the undici
 * DispatchHandler that streams the upstream response to the client with
 * backpressure. One object per request keeps allocation to a minimum.
 */
export class Exchange implements RequestContext, Dispatcher.DispatchHandler {
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly requestId: string
  readonly clientIp: string
  readonly scheme: string
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
  #controller: Dispatcher.DispatchController | undefined
  #endpoint: Endpoint | undefined
  #sink: Writable | undefined
  #dispatchedAt = 0
  #upstreamMs: number | undefined
  #status = 0
  #bytesIn = 0
  #bytesOut = 0
  #error: Error | undefined
  #done = false
  #bodyError: OutriderError | undefined
  /** What node decided for the connection, held back while a 100-continue is pending. */
  #keepAlive = true

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
    this.clientIp = req.socket.remoteAddress ?? ''
    const headers = head.headers
    this.upstreamHeaders = headers

    this.requestId = setForwardingHeaders(headers, req, this.clientIp, scheme, head.authority, env.via)

    this.upstreamPath = rewritePath(route, head.path, head.query)
    if (head.expectContinue) {
      // Until we send 100 the client may be holding its body back. Any final
      // answer before that leaves the body unread, so the connection cannot be
      // reused: its next bytes might be that body, not a request (§10.1.1).
      this.#keepAlive = res.shouldKeepAlive
      res.shouldKeepAlive = false
    }
    snapshot.inflight++
    env.metrics.inFlight.inc()
    ;(res as ServerResponse & WithExchange)[kExchange] = this
    res.once('close', onClientClose)
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
    if (pipeline.onRequest.length === 0) { this.#dispatch(); return }
    let r: ReturnType<typeof pipeline.runRequest>
    try {
      r = pipeline.runRequest(this)
    } catch (err) {
      this.#fail(pluginError(err)); return
    }
    if (r === undefined) { this.#dispatch(); return }
    if (typeof (r as Promise<unknown>).then === 'function') {
      (r as Promise<LocalResponse | undefined>).then(
        (v) => { if (v === undefined) this.#dispatch(); else this.#respondLocal(v) },
        (err) => { this.#fail(pluginError(err)) },
      )
      return
    }
    this.#respondLocal(r as LocalResponse)
  }

  #dispatch (): void {
    if (this.#done || this.res.destroyed) return
    const endpoint = this.#route.cluster.pick(this.upstreamHeaders, this.clientIp)
    if (endpoint === undefined) { this.#fail(new NoHealthyUpstreamError(`cluster "${this.#route.cluster.name}" has no healthy endpoint`)); return }
    this.#endpoint = endpoint
    endpoint.inflight++
    const head = this.#head
    let body: IncomingMessage | Transform | null = null
    if (head.hasBody) {
      const limit = this.#route.maxBodySize
      // A declared length was checked in start(); only chunked bodies need counting.
      body = limit > 0 && head.contentLength === -1 ? this.req.pipe(new BodyLimit(limit, this)) : this.req
    }
    if (head.expectContinue) {
      // Only now is the body wanted (RFC 9110 §10.1.1): limits, routing and
      // the request phase had their say without the client uploading it.
      this.res.writeContinue()
      this.res.shouldKeepAlive = this.#keepAlive
    }
    this.#dispatchedAt = performance.now()
    endpoint.pool.dispatch({
      origin: endpoint.id,
      path: this.upstreamPath,
      method: this.method,
      headers: this.upstreamHeaders as Record<string, string | string[]>,
      body,
      headersTimeout: this.#route.headersTimeout,
      bodyTimeout: this.#route.bodyTimeout,
    }, this)
  }

  // ---- undici DispatchHandler ------------------------------------------------

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.#controller = controller
    if (this.#done) controller.abort(new Error('client closed'))
  }

  onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, headers: HeaderMap): void {
    // undici hands over interim responses too (it refuses only 100); the
    // final one follows on the same handler, so a 1xx must not start ours.
    if (statusCode < 200) { this.#interim(statusCode, headers); return }
    const now = performance.now()
    this.#upstreamMs = now - this.#dispatchedAt
    this.#env.metrics.upstreamDuration.labels(this.#route.cluster.name).observe(this.#upstreamMs / 1000)
    stripHopByHop(headers)
    // RFC 9110 §8.6: a 204 MUST NOT carry Content-Length. undici already read
    // no body; a client trusting a stray length would eat the next response.
    if (statusCode === 204 && headers['content-length'] !== undefined) delete headers['content-length']
    const via = headers.via
    const hop = `1.1 ${this.#env.via}`
    headers.via = via === undefined ? hop : `${Array.isArray(via) ? via.join(', ') : via}, ${hop}`
    headers['x-request-id'] ??= this.requestId
    if (this.#env.draining) headers.connection = 'close'
    this.#status = statusCode
    const hooks = this.#route.pipeline
    if (hooks.onResponse.length === 0) {
      this.res.writeHead(statusCode, headers as Record<string, string | string[]>)
      this.#sink = this.res
      return
    }
    const rc = new ResponseState(statusCode, headers)
    let r: void | Promise<void>
    try {
      r = hooks.runResponse(this, rc)
    } catch (err) {
      controller.abort(pluginError(err)); return
    }
    if (r === undefined) { this.#startBody(rc); return }
    controller.pause()
    r.then(() => {
      if (this.#done) return
      this.#startBody(rc)
      controller.resume()
    }, (err) => { controller.abort(pluginError(err)) })
  }

  /**
   * 103 Early Hints are relayed (RFC 8297) so the client can preload while the
   * upstream thinks; other 1xx codes mean nothing past this hop. Never to an
   * HTTP/1.0 client (RFC 9110 §15.2).
   */
  #interim (statusCode: number, headers: HeaderMap): void {
    if (statusCode !== 103 || headers.link === undefined || this.req.httpVersionMinor === 0 || this.res.headersSent) return
    stripHopByHop(headers)
    try {
      this.res.writeEarlyHints(headers as Record<string, string | string[]>)
    } catch {
      // A Link value node will not write: the hint is optional, the response is not.
    }
  }

  #startBody (rc: ResponseState): void {
    this.#status = rc.status
    this.res.writeHead(rc.status, rc.headers as Record<string, string | string[]>)
    if (rc.transforms === undefined) { this.#sink = this.res; return }
    const first = rc.transforms[0] as Duplex
    pipeline([...rc.transforms, this.res] as unknown as [Duplex, Writable], (err) => { if (err != null) this.res.destroy(err) })
    this.#sink = first
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#bytesOut += chunk.length
    const sink = this.#sink as Writable
    if (!sink.write(chunk)) {
      controller.pause()
      const s = sink as Writable & WithExchange
      if (s[kExchange] === undefined) s[kExchange] = this
      sink.once('drain', onSinkDrain)
    }
  }

  onResponseEnd (_controller: Dispatcher.DispatchController, trailers: HeaderMap): void {
    this.#release()
    for (const _ in trailers) {
      stripHopByHop(trailers)
      this.res.addTrailers(trailers as Record<string, string>)
      break
    }
    ;(this.#sink as Writable).end()
  }

  onResponseError (_controller: Dispatcher.DispatchController, err: Error): void {
    this.#release()
    if (this.#done && this.res.destroyed) return
    const e = this.#bodyError ?? toUpstreamError(err)
    if (!(e instanceof PayloadTooLargeError)) this.#env.metrics.upstreamErrors.labels(this.#route.cluster.name, e.code).inc()
    this.#fail(e, e instanceof PayloadTooLargeError)
  }

  // ---- called by listeners ---------------------------------------------------

  resumeUpstream (): void { this.#controller?.resume() }

  /** The body limit tripped while streaming a chunked request. */
  bodyTooLarge (err: PayloadTooLargeError): void {
    this.#bodyError = err
    if (this.#controller !== undefined) this.#controller.abort(err)
    else this.#fail(err, true)
  }

  /** `close` on the response: either it finished or the client went away. */
  clientClosed (): void {
    if (!this.res.writableFinished && this.#controller !== undefined && !this.#controller.aborted) {
      // Client gone mid-exchange: stop the upstream request too (no orphaned work).
      this.#controller.abort(new Error('client closed the connection'))
    }
    this.#finish()
  }

  // ---- endings ---------------------------------------------------------------

  #release (): void {
    if (this.#endpoint !== undefined) { this.#endpoint.inflight--; this.#endpoint = undefined }
  }

  /** Answers with a local response, letting onResponse hooks see it. */
  #respondLocal (local: LocalResponse): void {
    if (this.res.headersSent || this.res.destroyed) return
    const headers: HeaderMap = {}
    if (local.headers !== undefined) for (const k in local.headers) headers[k.toLowerCase()] = local.headers[k]
    const body = local.body
    headers['x-request-id'] = this.requestId
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body))
    this.#status = local.status
    this.#writeLocal(local.status, headers, body)
  }

  #writeLocal (status: number, headers: HeaderMap, body: string | Buffer | undefined): void {
    const hooks = this.#route.pipeline
    const finish = (rc: ResponseState): void => {
      if (this.res.headersSent || this.res.destroyed) return
      this.#status = rc.status
      this.res.writeHead(rc.status, rc.headers as Record<string, string | string[]>)
      if (rc.transforms === undefined) { this.res.end(this.method === 'HEAD' ? undefined : body); return }
      pipeline([...rc.transforms, this.res] as unknown as [Duplex, Writable], (err) => { if (err != null) this.res.destroy(err) })
      ;(rc.transforms[0] as Duplex).end(this.method === 'HEAD' ? undefined : body)
    }
    const rc = new ResponseState(status, headers)
    if (hooks.onResponse.length === 0) { finish(rc); return }
    try {
      const r = hooks.runResponse(this, rc)
      if (r === undefined) finish(rc)
      else r.then(() => { finish(rc) }, (err) => { this.#plainProblem(pluginError(err), false) })
    } catch (err) {
      this.#plainProblem(pluginError(err), false)
    }
  }

  /** Turns an error into a problem response (through onResponse hooks when possible). */
  #fail (err: OutriderError, close = false): void {
    this.#error = err
    this.#env.metrics.localReplies.labels(this.routeName, err.code).inc()
    if (this.res.headersSent || this.res.destroyed) { this.res.destroy(err); return }
    if (close) {
      // Don't read an unwanted body: the connection is closed after this reply.
      this.req.unpipe()
      this.req.on('error', noop)
      markClosing(this.req.socket)
    }
    this.#plainProblem(err, close)
  }

  #plainProblem (err: OutriderError, close: boolean): void {
    this.#status = err.status
    sendProblem(this.res, err, this.requestId, close || this.#env.draining)
  }

  #finish (): void {
    if (this.#done) return
    this.#done = true
    this.#release()
    forgetResponse(this.req.socket, this.res)
    this.#snapshot.inflight--
    this.#env.metrics.inFlight.dec()
    const durationMs = performance.now() - this.startTime
    const status = this.res.writableFinished ? this.#status || this.res.statusCode : 499
    this.#route.metrics.record(this.method, status === 499 ? 499 : status, durationMs / 1000)
    const pipeline = this.#route.pipeline
    if (pipeline.onLog.length === 0) return
    this.#bytesIn = this.req.socket?.bytesRead ?? 0
    const summary: ExchangeSummary = {
      status,
      bytesIn: this.#bytesIn,
      bytesOut: this.#bytesOut,
      durationMs,
      upstreamDurationMs: this.#upstreamMs,
      endpoint: this.#endpoint?.id,
      error: this.#error,
    }
    pipeline.runLog(this, summary, (err) => { this.#env.log.warn('onLog hook failed', { route: this.routeName, err }) })
  }
}

/** The mutable response the onResponse hooks see. */
class ResponseState implements ResponseContext {
  status: number
  readonly headers: HeaderMap
  transforms: Duplex[] | undefined = undefined

  constructor (status: number, headers: HeaderMap) {
    this.status = status
    this.headers = headers
  }

  pipeThrough (transform: Duplex): void {
    if (this.transforms === undefined) this.transforms = [transform]
    else this.transforms.push(transform)
  }
}

/** Counts a streamed (chunked) request body and stops it at the route's limit. */
class BodyLimit extends Transform {
  readonly #limit: number
  readonly #exchange: Exchange
  #seen = 0

  constructor (limit: number, exchange: Exchange) {
    super()
    this.#limit = limit
    this.#exchange = exchange
  }

  override _transform (chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#seen += chunk.length
    if (this.#seen > this.#limit) {
      const err = new PayloadTooLargeError(`request body exceeds the limit of ${this.#limit} bytes`)
      this.#exchange.bodyTooLarge(err)
      cb(err)
      return
    }
    cb(null, chunk)
  }
}

function stripHopByHop (headers: HeaderMap): void {
  const conn = headers.connection
  if (conn !== undefined) {
    for (const token of String(conn).toLowerCase().split(',')) {
      const t = token.trim()
      // Never let a peer strip the framing of the message we relay.
      if (t !== '' && t !== 'content-length' && t !== 'transfer-encoding') delete headers[t]
    }
  }
  for (const name in headers) {
    if (HOP_BY_HOP.has(name)) delete headers[name]
  }
}

function pluginError (err: unknown): OutriderError {
  if (err instanceof OutriderError) return err
  return new PluginError('a plugin failed', { cause: err })
}

function rewritePath (route: CompiledRoute, path: string, query: string): string {
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
