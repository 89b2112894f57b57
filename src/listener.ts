import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import https from 'node:https'
import http2 from 'node:http2'
import type { SecureContextOptions } from 'node:tls'
import type { Duplex } from 'node:stream'
import { Socket } from 'node:net'
import type { ProxyServer, ServerOptions } from 'http-proxy-3'
import type { Snapshot, CompiledRoute } from './snapshot.ts'
import type { Config } from './config/schema.ts'
import { Exchange, rewritePath, type ExchangeEnv } from './exchange.ts'
import { connectNotAllowed, readH2RequestHead, readRequestHead, type RequestHead } from './http/request-head.ts'
import { AMBIGUOUS_PATH, normalizePath } from './http/normalize-path.ts'
import { problemBody, sendProblem } from './http/problem.ts'
import { UpgradeRequest } from './upgrade-request.ts'
import type { LocalResponse } from './plugin.ts'
import { isClosing, lastResponse, markClosing, trackResponse } from './http/connection.ts'
import {
  BadRequestError, HeadersTooLargeError, NoHealthyUpstreamError, NoRouteError,
  OutriderError, PluginError, RequestTimeoutError, UpstreamConnectError, UpstreamTimeoutError, pluginError,
} from './errors.ts'
import type { ProxyMetrics } from './metrics.ts'
import type { Logger } from './log.ts'
import type { Tracing } from './tracing.ts'
import type { Endpoint } from './upstream/cluster.ts'

/**
 * The client-facing HTTP/1.1 listener. Reads `current` once per request, so a
 * snapshot swap never changes a request that already started.
 */
export class ProxyListener {
  current: Snapshot
  /** Typed as node's HTTP/1 server: the TLS and HTTP/2 servers share what is used of it. */
  readonly server: http.Server
  /** HTTP/2 sessions, closed gracefully (GOAWAY) on drain. */
  readonly #sessions = new Set<http2.ServerHttp2Session>()
  /** `https` when this listener terminates TLS. */
  readonly #scheme: string
  readonly #env: ExchangeEnv
  readonly #log: Logger
  readonly #metrics: ProxyMetrics
  /** The WebSocket relay, made on the first handshake (see #loadWsProxy). */
  #ws: ProxyServer | undefined
  #wsLoading: Promise<ProxyServer> | undefined
  /** HTTP/2 sessions without a stream are closed after this long without a frame (limits.keepAliveTimeout). */
  #sessionIdleTimeout: number
  /** A client connection (HTTP/1.1) or stream (HTTP/2) with no byte moving this long is cut (limits.streamIdleTimeout). */
  #streamIdleTimeout: number
  /** A WebSocket tunnel with no byte moving this long is closed (limits.tunnelIdleTimeout). */
  #tunnelIdleTimeout: number
  /** An HTTP/2 server (h2c, or TLS with ALPN): its sessions must not get `server.timeout`. */
  readonly #http2: boolean
  /** Open WebSocket tunnels: closed on shutdown. */
  readonly #tunnels = new Set<Duplex>()
  /** limits.maxHeaderSize as started with (a change takes a restart, as node's HTTP/1.1 parser has it for good). */
  readonly #maxHeaderSize: number

  constructor (snapshot: Snapshot, options: { metrics: ProxyMetrics, log: Logger, tls?: SecureContextOptions & { requestCert: boolean }, http2?: boolean, h2c?: boolean, tracer?: Tracing }) {
    this.current = snapshot
    this.#log = options.log
    this.#metrics = options.metrics
    this.#env = { metrics: options.metrics, log: options.log, via: 'outrider', responseVia: '1.1 outrider', draining: false, tracer: options.tracer }
    const limits = snapshot.config.limits
    this.#sessionIdleTimeout = limits.keepAliveTimeout
    this.#streamIdleTimeout = limits.streamIdleTimeout
    this.#tunnelIdleTimeout = limits.tunnelIdleTimeout
    this.#http2 = options.h2c === true || (options.tls !== undefined && options.http2 === true)
    this.#scheme = options.tls === undefined ? 'http' : 'https'
    // 0 is node's default for HTTP/1.1, so it is for HTTP/2 too.
    this.#maxHeaderSize = limits.maxHeaderSize > 0 ? limits.maxHeaderSize : http.maxHeaderSize
    const serverOptions: http.ServerOptions = {
      maxHeaderSize: limits.maxHeaderSize,
      headersTimeout: limits.headersTimeout,
      requestTimeout: limits.requestTimeout,
      keepAliveTimeout: limits.keepAliveTimeout,
      // node only looks for expired heads/requests this often (30 s by default),
      // which would stretch a 10 s slowloris guard to 40 s.
      connectionsCheckingInterval: checkingInterval(limits.headersTimeout, limits.requestTimeout),
      // readRequestHead checks Host itself (on handshakes too), and its 400
      // closes the connection: node's own lets a pipelined request through.
      requireHostHeader: false,
      // Only WebSocket upgrades leave the request path; `h2c` and the rest are
      // served as plain requests with Upgrade stripped (no tunnels past routing).
      shouldUpgradeCallback: isWebSocketUpgrade,
      // A request with neither Content-Length nor Transfer-Encoding has no
      // body (RFC 9112 §6.3): node hands it over already ended, so no
      // 'end'/'close' events and no dump on finish. About 12 % of the
      // instructions per GET (callgrind, bench/RESULTS.md session 10).
      // Nothing here waits on such a request's stream (readBody checks
      // head.hasBody first).
      optimizeEmptyRequests: true,
    }
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => { this.#handle(req, res) }
    const h2Request = onRequest as unknown as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void
    const h2Settings = http2Settings(snapshot.config, this.#maxHeaderSize)
    // node resets a stream with more fields than this (ENHANCE_YOUR_CALM;
    // 128 by default) whatever their size, where HTTP/1.1 only counts octets.
    // A field costs at least 33 octets (RFC 9113 §6.5.2): a head with more
    // is over maxHeaderSize anyway, so the count never refuses one the size allows.
    const maxHeaderListPairs = Math.ceil(this.#maxHeaderSize / 32)
    if (options.tls === undefined && options.h2c === true) {
      // Cleartext HTTP/2 with prior knowledge: gRPC clients next to a sidecar.
      // There is no ALPN to fall back on, so no HTTP/1.1 here.
      this.server = this.#trackSessions(http2.createServer({ settings: h2Settings, maxHeaderListPairs }, h2Request)) as unknown as http.Server
    } else if (options.tls === undefined) {
      this.server = http.createServer(serverOptions, onRequest)
    } else if (options.http2 === true) {
      // HTTP/2 by ALPN, HTTP/1.1 for everyone else on the same port. HTTP/1.1
      // connections there are served by node's HTTP/1 code, which takes the
      // same options as http.createServer (connectionsCheckingInterval
      // included: without it a slow head waited up to 30 s for its 408).
      const h2 = http2.createSecureServer({
        ...serverOptions,
        ...options.tls,
        rejectUnauthorized: options.tls.requestCert,
        allowHTTP1: true,
        settings: h2Settings,
        maxHeaderListPairs,
      }, h2Request)
      // The constructor sets its own; HTTP/1.1 upgrades are decided as on the other listeners.
      Object.assign(h2, { shouldUpgradeCallback: isWebSocketUpgrade })
      this.server = this.#trackSessions(h2) as unknown as http.Server
    } else {
      // With a client CA, clients without a certificate it signed are refused in the handshake.
      this.server = https.createServer({ ...serverOptions, ...options.tls, rejectUnauthorized: options.tls.requestCert }, onRequest)
    }
    // With a listener here node no longer sends `100 Continue` on its own: the
    // exchange sends it once the request is really going upstream.
    this.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => { this.#handle(req, res) })
    this.server.maxRequestsPerSocket = limits.maxRequestsPerSocket
    // HTTP/1.1: node arms it on every connection and destroys the socket when
    // it fires (no 'timeout' listener anywhere); its timer is refreshed by I/O.
    if (!this.#http2) this.server.timeout = limits.streamIdleTimeout
    // node would drop fields past the 2000th from rawHeaders while llhttp still
    // frames by them: readRequestHead must see every field the parser saw.
    // maxHeaderSize bounds the head anyway.
    this.server.maxHeadersCount = 0
    // Both leave node's HTTP handling with the raw socket: what they write
    // waits for the responses still owed to requests pipelined before them.
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', ignore)
      afterOwedResponses(socket, this.#streamIdleTimeout, () => { this.#upgrade(req, socket, head) })
    })
    this.server.on('connect', (req: IncomingMessage, socket: Duplex) => {
      socket.on('error', ignore)
      afterOwedResponses(socket, this.#streamIdleTimeout, () => { this.#rejectRaw(socket, connectNotAllowed(), req) })
    })
    this.server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => { this.#clientError(err, socket) })
  }

  /**
   * http-proxy-3 (and what it pulls in) is loaded on the first WebSocket
   * handshake, not at start: most sidecars never relay one, and every module
   * loaded stays in the heap that each major GC marks.
   */
  #loadWsProxy (): Promise<ProxyServer> {
    this.#wsLoading ??= import('http-proxy-3').then(({ createProxyServer }) => {
      const ws = createProxyServer({ ws: true, xfwd: false })
      ws.on('proxyReqWs', (proxyReq: http.ClientRequest, req: IncomingMessage) => { this.#watchUpstreamHandshake(proxyReq, req) })
      ws.on('error', (err: Error, _req: unknown, target: unknown) => {
        this.#log.debug('websocket proxy error', { err })
        // A client we already answered (a 502 or 504 problem) is left to
        // receive it: http-proxy-3 closes it once that is sent.
        if (target !== undefined && typeof (target as Socket).destroy === 'function' && !(target as Socket).writableEnded) (target as Socket).destroy()
      })
      this.#ws = ws
      return ws
    })
    return this.#wsLoading
  }

  /** HTTP/2 sessions are remembered so a drain can send them GOAWAY. */
  #trackSessions<S extends http2.Http2Server | http2.Http2SecureServer> (server: S): S {
    server.on('session', (s: http2.ServerHttp2Session) => {
      this.#sessions.add(s)
      s.once('close', () => { this.#sessions.delete(s) })
      if (this.#env.draining) { s.close(); return }
      // An idle session is closed (GOAWAY) like an idle keep-alive connection.
      // One with a stream open is left alone here: each stream is held to
      // limits.streamIdleTimeout on its own.
      let open = 0
      s.on('stream', (stream: http2.ServerHttp2Stream) => {
        open++
        stream.once('close', () => { open-- })
        // Frames either way refresh it; when it fires the stream is reset
        // (RST_STREAM CANCEL), which the exchange sees as the client leaving.
        // (node allocates the stream's timer either way; the listener is shared.)
        // node emits 'request' from its own 'stream' listener, before this one:
        // a stream whose route has its own timeout already has it.
        const streamIdle = this.#streamIdleTimeout
        if (streamIdle > 0 && (stream as RouteIdleMarked)[kRouteIdle] === undefined) {
          stream.setTimeout(streamIdle)
          stream.on('timeout', onStreamIdle)
        }
      })
      const idle = this.#sessionIdleTimeout
      if (idle > 0) s.setTimeout(idle, () => { if (open === 0) s.close() })
    })
    return server
  }

  /** Applies the limits a reload can change without a restart. */
  applyLimits (config: Config): void {
    const l = config.limits
    this.#sessionIdleTimeout = l.keepAliveTimeout
    this.#streamIdleTimeout = l.streamIdleTimeout
    this.#tunnelIdleTimeout = l.tunnelIdleTimeout
    if (!this.#http2) this.server.timeout = l.streamIdleTimeout
    else (this.server as unknown as http2.Http2Server).updateSettings(http2Settings(config, this.#maxHeaderSize))
    this.server.headersTimeout = l.headersTimeout
    this.server.requestTimeout = l.requestTimeout
    this.server.keepAliveTimeout = l.keepAliveTimeout
    this.server.maxRequestsPerSocket = l.maxRequestsPerSocket
  }

  /** New certificate material (a reload): new handshakes use it, open connections keep theirs. */
  setTls (tls: SecureContextOptions): void {
    const server = this.server as unknown as { setSecureContext?: (o: SecureContextOptions) => void }
    server.setSecureContext?.(tls)
  }

  /** Stops accepting; keep-alive connections close after their current response. */
  beginDrain (): void {
    this.#env.draining = true
    this.server.close()
    this.server.closeIdleConnections?.()
    // GOAWAY: streams in flight finish, no new ones start.
    for (const s of this.#sessions) s.close()
  }

  /** After the drain deadline: whatever is still open is cut. */
  closeAll (): void {
    this.server.closeAllConnections?.()
    for (const s of this.#sessions) s.destroy()
  }

  destroyTunnels (): void {
    for (const t of this.#tunnels) t.destroy()
  }

  #handle (req: IncomingMessage, res: ServerResponse): void {
    // Read in the same packet as a request we answered with `close`: not ours to serve.
    const h2 = req.httpVersionMajor === 2
    if (!h2) {
      if (isClosing(req.socket)) return
      trackResponse(req.socket, res)
      // Each request starts on the listener's streamIdleTimeout: the previous
      // one on this connection may have had its route's own. (On the TLS
      // listener that also speaks HTTP/2, `server.timeout` stays 0, or node
      // would time out whole sessions, quiet streams and all: it is only ever
      // armed here.)
      if (req.socket.timeout !== this.#streamIdleTimeout) req.socket.setTimeout(this.#streamIdleTimeout)
    }
    const snapshot = this.current
    const head = h2 ? readH2RequestHead(req, this.#maxHeaderSize) : readRequestHead(req)
    if (head instanceof OutriderError) { this.#reject(snapshot, req, res, head, true); return }
    // A request that asked to upgrade reaches here only when it is not one we
    // relay (h2c, HTTP/1.0, a body): node's parser has stopped at it and drops
    // what followed in the same read, so the next bytes would be parsed from
    // the middle of a message. The connection ends with this response.
    if (head.upgradeRefused && !h2) { markClosing(req.socket); res.shouldKeepAlive = false }
    if (head.lastHop) { this.#answerLastHop(snapshot, req, res); return }
    const path = normalizePath(head.path)
    if (path === undefined) { this.#reject(snapshot, req, res, new BadRequestError(AMBIGUOUS_PATH), head.expectContinue); return }
    if (path !== head.path) head.path = path
    const route = snapshot.router.match({ method: req.method as string, host: head.authority, path, query: head.query, headers: head.headers })
    if (route === undefined) {
      // A body held back for `100 Continue` is never coming: close rather than read the next request from it.
      this.#reject(snapshot, req, res, new NoRouteError('no route matches this request'), head.expectContinue)
      return
    }
    if (route.streamIdleTimeout !== undefined) holdToRouteIdle(req, h2, route.streamIdleTimeout)
    new Exchange(snapshot, route, req, res, head, this.#env, this.#scheme).start()
  }

  /**
   * `Max-Forwards: 0` on OPTIONS or TRACE: answered here, as the final
   * recipient. OPTIONS gets the methods a proxy relays; TRACE is not
   * reflected (it would echo credentials back to a script, "cross-site tracing").
   */
  #answerLastHop (snapshot: Snapshot, req: IncomingMessage, res: ServerResponse): void {
    const start = performance.now()
    req.resume()
    const status = req.method === 'OPTIONS' ? 200 : 405
    res.writeHead(status, { allow: 'GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS', 'content-length': '0' })
    res.end()
    const durationMs = performance.now() - start
    snapshot.unmatched.record(req.method as string, status, durationMs / 1000)
    const traceId = this.#env.tracer?.traceRejected(req, this.#scheme, status, undefined)
    this.#logUnrouted(snapshot, req, status, durationMs, undefined, traceId)
  }

  #reject (snapshot: Snapshot, req: IncomingMessage, res: ServerResponse, err: OutriderError, close: boolean): void {
    const start = performance.now()
    this.#metrics.localReplies.labels('__unmatched__', err.code).inc()
    const id = req.headers['x-request-id']
    // HTTP/2 has no connection to close per request: the stream ends, that is all.
    const h1 = req.httpVersionMajor !== 2
    if (close && h1) {
      req.on('error', () => {})
      markClosing(req.socket)
    }
    sendProblem(res, err, typeof id === 'string' && id.length <= 200 ? id : undefined, h1 && (close || this.#env.draining))
    if (close && h1) res.once('finish', () => { req.socket.destroySoon() })
    this.#recordUnrouted(snapshot, req, err, start)
  }

  /**
   * Counted, traced (a SERVER span of its own) and access-logged like any
   * request: scanners and misrouted callers are what an operator looks for.
   */
  #recordUnrouted (snapshot: Snapshot, req: IncomingMessage, err: OutriderError, start: number): void {
    const durationMs = performance.now() - start
    snapshot.unmatched.record(req.method as string, err.status, durationMs / 1000)
    const traceId = this.#env.tracer?.traceRejected(req, this.#scheme, err.status, err)
    this.#logUnrouted(snapshot, req, err.status, durationMs, err.code, traceId)
  }

  /** The access-log line of a request answered here, before any route took it. */
  #logUnrouted (snapshot: Snapshot, req: IncomingMessage, status: number, durationMs: number, error: string | undefined, traceId: string | undefined): void {
    if (snapshot.accessLog === undefined) return
    const id = req.headers['x-request-id']
    const url = req.url ?? ''
    const q = url.indexOf('?')
    snapshot.accessLog.write({
      requestId: typeof id === 'string' ? id : '', traceId, route: '__unmatched__', cluster: undefined, endpoint: undefined,
      method: req.method as string, path: q === -1 ? url : url.slice(0, q), query: q === -1 ? '' : url.slice(q + 1),
      status, bytesIn: 0, bytesOut: 0, durationMs, upstreamMs: undefined, attempts: 0,
      clientIp: req.socket.remoteAddress ?? '', error, annotations: undefined,
    })
  }

  /**
   * WebSocket: routed, checked and put through the route's request phase like
   * any request (auth, WAF, rate limits decide on the handshake), then relayed
   * by http-proxy-3.
   */
  #upgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.#ws !== undefined) { this.#routeUpgrade(req, socket, head); return }
    // The first handshake waits for the relay to load, then is served by
    // whichever snapshot is current by then.
    this.#loadWsProxy().then(() => { this.#routeUpgrade(req, socket, head) }, (err: unknown) => {
      this.#log.error('the websocket relay could not be loaded', { err })
      this.#rejectRaw(socket, new UpstreamConnectError('the websocket relay is unavailable', { cause: err }), req)
    })
  }

  #routeUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const snapshot = this.current
    if (isClosing(socket) || !socket.writable) { socket.destroy(); return }
    const parsed = readRequestHead(req)
    if (parsed instanceof OutriderError) { this.#rejectRaw(socket, parsed, req); return }
    const path = normalizePath(parsed.path)
    if (path === undefined) { this.#rejectRaw(socket, new BadRequestError(AMBIGUOUS_PATH), req); return }
    const route = snapshot.router.match({ method: req.method as string, host: parsed.authority, path, query: parsed.query, headers: parsed.headers })
    if (route === undefined) { this.#rejectRaw(socket, new NoRouteError('no route matches this request'), req); return }
    const tracer = this.#env.tracer
    const ctx = new UpgradeRequest(req, parsed, path, rewritePath(route, path, parsed.query), route.name, this.#scheme, this.#env.via, tracer)
    if (tracer !== undefined) ctx.span = tracer.startServer(ctx, parsed.authority, route)
    const pipeline = route.pipeline
    if (pipeline.onRequest.length === 0) { this.#relayWebSocket(route, ctx, socket, head); return }
    let r: ReturnType<typeof pipeline.runRequest>
    try {
      r = pipeline.runRequest(ctx)
    } catch (err) {
      this.#refuseUpgrade(route, ctx, socket, pluginError(err)); return
    }
    if (r === undefined) { this.#relayWebSocket(route, ctx, socket, head); return }
    if (typeof (r as Promise<unknown>).then === 'function') {
      // Counted as in flight while its plugins decide: a reload waits for it
      // before closing them (see Snapshot.retire).
      snapshot.inflight++
      ;(r as Promise<LocalResponse | undefined>).then(
        (v) => {
          snapshot.inflight--
          if (v === undefined) this.#relayWebSocket(route, ctx, socket, head); else this.#answerUpgrade(route, ctx, socket, v)
        },
        (err: unknown) => { snapshot.inflight--; this.#refuseUpgrade(route, ctx, socket, pluginError(err)) },
      )
      return
    }
    this.#answerUpgrade(route, ctx, socket, r as LocalResponse)
  }

  #relayWebSocket (route: CompiledRoute, ctx: UpgradeRequest, socket: Duplex, head: Buffer): void {
    // The client may have left while an asynchronous plugin decided.
    if (socket.destroyed) { this.#logUpgrade(route, ctx, 499, 'CLIENT_CLOSED'); return }
    const req = ctx.req
    const endpoint = route.cluster.pick(ctx.upstreamHeaders, ctx.clientIp)
    if (endpoint === undefined) { this.#refuseUpgrade(route, ctx, socket, new NoHealthyUpstreamError('no healthy endpoint')); return }
    // The same header policy as any request: hop-by-hop fields (and whatever
    // the client's Connection named) stay here; forwarding fields were added
    // before the plugins ran, and their changes go upstream.
    const headers = ctx.upstreamHeaders
    headers.connection = 'Upgrade'
    headers.upgrade = 'websocket'
    // The upstream's handshake continues the trace (traceparent injected here).
    if (ctx.span !== undefined) ctx.upstreamSpan = (ctx.tracer as Tracing).startAttempt(ctx.span, endpoint, ctx.method, ctx.upstreamPath, 0, false, headers)
    try {
      // node's client throws on a field it will not send (a plugin's value
      // with a control character, say) and refuses undefined values, which
      // undici simply skips: checked here, where it can still be answered.
      for (const k in headers) {
        const v = headers[k]
        if (v === undefined) { delete headers[k]; continue }
        http.validateHeaderName(k)
        for (const x of Array.isArray(v) ? v : [v]) http.validateHeaderValue(k, x)
      }
    } catch (err) {
      this.#refuseUpgrade(route, ctx, socket, new PluginError('a plugin set a request header that cannot be sent', { cause: err }))
      return
    }
    req.url = ctx.upstreamPath
    req.headers = headers as IncomingMessage['headers']
    // The tunnel's byte counts start here: `head` was read with the handshake
    // but belongs to the tunnel; what is written from now on is the
    // upstream's 101 head and the tunnel.
    const s = socket as Socket
    ;(req as IncomingMessage & WithUpgrade)[kUpgrade] = { route, ctx, rx0: s.bytesRead - head.length, tx0: s.bytesWritten }
    try {
      ;(this.#ws as ProxyServer).ws(req, socket, head, wsOptions(endpoint))
    } catch (err) {
      this.#log.warn('websocket relay failed to start', { route: route.name, err })
      this.#refuseUpgrade(route, ctx, socket, new UpstreamConnectError('the upstream handshake could not be sent', { cause: err }))
      return
    }
    this.#tunnels.add(socket)
    socket.once('close', () => { this.#tunnels.delete(socket) })
  }

  /**
   * The upstream said 101: a tunnel, counted open until it closes, then its
   * bytes each way from the socket's own totals (nothing per frame).
   */
  #countTunnel (route: CompiledRoute, socket: Socket, rx0: number, tx0: number): void {
    const open = this.#metrics.tunnelsOpen.labels(route.name)
    open.inc()
    socket.once('close', () => {
      open.dec()
      this.#metrics.tunnelBytes.labels(route.name, 'from_client').inc(Math.max(0, socket.bytesRead - rx0))
      this.#metrics.tunnelBytes.labels(route.name, 'to_client').inc(Math.max(0, socket.bytesWritten - tx0))
    })
  }

  /**
   * The client socket's own timer covers both directions: bytes from the
   * upstream are written to it, bytes from the client are read from it, and
   * either refreshes it. http-proxy-3 cleared it (setTimeout(0)) before the
   * handshake; set from the limits current when the tunnel opened.
   */
  #closeWhenIdle (client: Socket, upstream: Socket, route: CompiledRoute): void {
    const idle = this.#tunnelIdleTimeout
    if (idle <= 0) return
    client.setTimeout(idle, () => {
      this.#log.debug('websocket tunnel closed after its idle timeout', { route: route.name, idleMs: idle })
      client.destroy()
      upstream.destroy()
    })
  }

  /**
   * Watches a relayed handshake until the upstream answers it (counted and
   * logged then; after a 101 the tunnel is http-proxy-3's). Until then it is
   * held to the cluster's timeouts like any request — `connect`, then the
   * route's or cluster's `request` for the answer's head — and failing is a
   * problem response; a client that leaves first takes the upstream request
   * with it (499). http-proxy-3 itself does neither.
   */
  #watchUpstreamHandshake (proxyReq: http.ClientRequest, req: IncomingMessage): void {
    const u = (req as IncomingMessage & WithUpgrade)[kUpgrade]
    if (u === undefined) return
    const { route, ctx } = u
    const client = req.socket
    let waiting = true
    let timer: NodeJS.Timeout | undefined
    const settle = (): boolean => {
      if (!waiting) return false
      waiting = false
      clearTimeout(timer)
      client.off('end', onClientGone)
      client.off('close', onClientGone)
      return true
    }
    const answered = (status: number): void => {
      if (!settle()) return
      const span = ctx.upstreamSpan
      if (span !== undefined) { (ctx.tracer as Tracing).attemptStatus(span, status); span.end(); ctx.upstreamSpan = undefined }
      this.#logUpgrade(route, ctx, status, undefined)
    }
    const failed = (err: OutriderError): void => {
      if (!settle()) return
      proxyReq.destroy()
      this.#metrics.upstreamErrors.labels(route.cluster.name, err.code).inc()
      this.#metrics.localReplies.labels(route.name, err.code).inc()
      const span = ctx.upstreamSpan
      if (span !== undefined) { (ctx.tracer as Tracing).attemptFailed(span, err); span.end(); ctx.upstreamSpan = undefined }
      const sent = this.#endProblem(client, err, ctx.requestId)
      this.#logUpgrade(route, ctx, sent ? err.status : 499, sent ? err.code : 'CLIENT_CLOSED', err)
    }
    // A client that half-closes cannot use a tunnel either: 'end' counts
    // (node's HTTP sockets allow half-open ones, so 'close' may never come).
    const onClientGone = (): void => {
      if (!settle()) return
      proxyReq.destroy()
      client.destroy()
      const span = ctx.upstreamSpan
      if (span !== undefined) { (ctx.tracer as Tracing).attemptCancelled(span, 'client_closed'); span.end(); ctx.upstreamSpan = undefined }
      this.#logUpgrade(route, ctx, 499, 'CLIENT_CLOSED')
    }
    client.once('end', onClientGone)
    client.once('close', onClientGone)
    const timeouts = route.cluster.config.timeouts
    const headersTimeout = route.headersTimeout ?? timeouts.request
    const awaitHead = (): void => {
      clearTimeout(timer)
      if (waiting && headersTimeout > 0) timer = setTimeout(failed, headersTimeout, new UpstreamTimeoutError('the upstream did not answer the handshake in time', { extensions: { phase: 'headers' } }))
    }
    // (With TLS, the handshake counts as waiting for the head, after the TCP connect.)
    proxyReq.once('socket', (s: Socket) => { if (s.connecting) s.once('connect', awaitHead); else awaitHead() })
    if (timeouts.connect > 0) timer = setTimeout(failed, timeouts.connect, new UpstreamTimeoutError('timed out connecting to the upstream', { extensions: { phase: 'connect' } }))
    proxyReq.once('upgrade', (_res: IncomingMessage, upstream: Socket) => {
      answered(101)
      if (client.destroyed) return
      this.#countTunnel(route, client, u.rx0, u.tx0)
      this.#closeWhenIdle(client, upstream, route)
    })
    proxyReq.once('response', (res: IncomingMessage) => { answered(res.statusCode ?? 502) })
    proxyReq.once('error', (cause: Error) => { failed(new UpstreamConnectError('the upstream handshake failed', { cause })) })
  }

  /** A plugin answered the handshake itself (a redirect, say): that answer, then close. */
  #answerUpgrade (route: CompiledRoute, ctx: UpgradeRequest, socket: Duplex, local: LocalResponse): void {
    const lines = [`HTTP/1.1 ${local.status} ${http.STATUS_CODES[local.status] ?? ''}`]
    let hasType = false
    if (local.headers !== undefined) {
      for (const [k, v] of Object.entries(local.headers)) {
        if (v === undefined) continue
        const name = k.toLowerCase()
        if (name === 'content-length' || name === 'connection' || name === 'transfer-encoding') continue
        if (name === 'content-type') hasType = true
        for (const x of Array.isArray(v) ? v : [v]) pushField(lines, name, x)
      }
    }
    const body = local.body ?? ''
    if (!hasType && body.length > 0) lines.push('content-type: text/plain; charset=utf-8')
    if (ctx.span !== undefined) (ctx.tracer as Tracing).pluginReply(ctx.span, local.status, undefined)
    const sent = this.#endRaw(socket, lines, ctx.requestId, body)
    this.#logUpgrade(route, ctx, sent ? local.status : 499, sent ? undefined : 'CLIENT_CLOSED')
  }

  /** A plugin refused the handshake (401, 403, 429 …) or failed: a problem, then close. */
  #refuseUpgrade (route: CompiledRoute, ctx: UpgradeRequest, socket: Duplex, err: OutriderError): void {
    this.#metrics.localReplies.labels(route.name, err.code).inc()
    if (ctx.span !== undefined) (ctx.tracer as Tracing).pluginReply(ctx.span, err.status, err)
    const sent = this.#endProblem(socket, err, ctx.requestId)
    this.#logUpgrade(route, ctx, sent ? err.status : 499, sent ? err.code : 'CLIENT_CLOSED', err)
  }

  /** Ends a raw socket with `err` as a problem response; false if the client is gone. */
  #endProblem (socket: Duplex, err: OutriderError, requestId: string | undefined, head = false): boolean {
    const lines = [`HTTP/1.1 ${err.status} ${http.STATUS_CODES[err.status] ?? ''}`, 'content-type: application/problem+json']
    if (err.headers !== undefined) for (const [k, v] of Object.entries(err.headers)) pushField(lines, k, v)
    return this.#endRaw(socket, lines, requestId, problemBody(err, requestId), head)
  }

  /**
   * Ends a raw socket with a response (status and fields in `lines`, then
   * ours); false if the client is gone. An answer to HEAD carries no content
   * (RFC 9110 §9.3.2), only the length GET would get.
   */
  #endRaw (socket: Duplex, lines: string[], requestId: string | undefined, body: string | Buffer, head = false): boolean {
    if (!socket.writable) { socket.destroy(); return false }
    if (requestId !== undefined) lines.push(`x-request-id: ${requestId}`)
    lines.push(`content-length: ${Buffer.byteLength(body)}`, 'connection: close', '', '')
    // Field values are octets (RFC 9110 §5.5): latin1, as node writes heads.
    socket.write(lines.join('\r\n'), 'latin1')
    socket.end(head ? undefined : body)
    return true
  }

  /** Handshakes are counted per route (status 101 when relayed) and access-logged like requests, once. */
  #logUpgrade (route: CompiledRoute, ctx: UpgradeRequest, status: number, error: string | undefined, err?: OutriderError): void {
    if (ctx.logged) return
    ctx.logged = true
    const durationMs = performance.now() - ctx.startTime
    // An upstream handshake that was never sent (refused after the span began) ends with the exchange.
    if (ctx.upstreamSpan !== undefined) { ctx.upstreamSpan.end(); ctx.upstreamSpan = undefined }
    if (ctx.span !== undefined) (ctx.tracer as Tracing).endServer(ctx.span, status === 499 ? 0 : status, status !== 499, err)
    route.metrics.record(ctx.method, status, durationMs / 1000)
    route.accessLog?.write({
      requestId: ctx.requestId, traceId: ctx.span?.spanContext().traceId, route: route.name, cluster: route.cluster.name, endpoint: undefined,
      method: ctx.method, path: ctx.path, query: ctx.query, status, bytesIn: 0, bytesOut: 0, durationMs, upstreamMs: undefined,
      attempts: status === 101 ? 1 : 0, clientIp: ctx.clientIp, error, annotations: ctx.annotations,
    })
  }

  /**
   * A response on a raw socket (upgrade/CONNECT paths have no ServerResponse).
   * Without `req` (node's parser refused the bytes) there is no request to
   * count, trace or log, only the reply.
   */
  #rejectRaw (socket: Duplex, err: OutriderError, req: IncomingMessage | undefined, head = req?.method === 'HEAD'): void {
    const start = performance.now()
    this.#metrics.localReplies.labels('__unmatched__', err.code).inc()
    this.#endProblem(socket, err, undefined, head)
    if (req !== undefined) this.#recordUnrouted(this.current, req, err, start)
  }

  /**
   * Requests node's parser refused (or timeouts): answered with a problem and
   * the connection closed — but never ahead of a response still owed on it.
   */
  #clientError (err: Error & { code?: string }, socket: Duplex): void {
    if (err.code === 'ECONNRESET' || !socket.writable) { socket.destroy(); return }
    markClosing(socket)
    let e: OutriderError
    switch (err.code) {
      case 'HPE_HEADER_OVERFLOW': e = new HeadersTooLargeError('request head too large'); break
      case 'ERR_HTTP_REQUEST_TIMEOUT': e = new RequestTimeoutError('the request was not received in time'); break
      default: e = new BadRequestError('malformed request', { extensions: { parser: err.code ?? 'unknown' } })
    }
    const last = lastResponse(socket)
    if (last !== undefined && !last.writableFinished) {
      if (last.req.complete) {
        // The bad bytes follow complete requests whose responses are still
        // owed (pipelining, or data after `Connection: close`): a status line
        // now would answer the wrong request. Answer those first (RFC 9112
        // §9.3.2); after a `close` response the socket is gone and nothing
        // more is sent (§9.6).
        last.once('finish', () => { if (socket.writable) this.#rejectRaw(socket, e, undefined, false) })
        return
      }
      // The error is inside the last request (its body, or it timed out). It
      // can only be answered if nothing of an earlier or its own response is
      // on the wire yet.
      const current = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage
      if (current !== last || last.headersSent) { socket.destroy(); return }
    }
    // The parser failed inside this request, so there is no request object.
    // With nothing owed before it, its bytes start the packet and name its method.
    const head = (last === undefined || last.writableFinished) && (err as { rawPacket?: Buffer }).rawPacket?.subarray(0, 5).toString('latin1') === 'HEAD '
    this.#rejectRaw(socket, e, undefined, head)
  }
}

/**
 * Often enough that a head/request timeout fires within half its length of
 * expiring, and at least every second (so a reload that shortens a timeout
 * stays within a second of it). 0 disables a timeout.
 */
function checkingInterval (headersTimeout: number, requestTimeout: number): number {
  let shortest = Infinity
  if (headersTimeout > 0) shortest = headersTimeout
  if (requestTimeout > 0 && requestTimeout < shortest) shortest = requestTimeout
  return shortest === Infinity ? 1000 : Math.max(50, Math.min(1000, Math.floor(shortest / 2)))
}

/**
 * http-proxy-3's options for one endpoint. An https:// endpoint with cluster
 * TLS settings gets an agent carrying them (CA bundle, client certificate)
 * and the SNI name undici would use: the endpoint's host or `tls.servername`,
 * not the client's Host, which node would otherwise send.
 */
const wsAgents = new WeakMap<Endpoint, https.Agent>()
function wsOptions (endpoint: Endpoint): ServerOptions {
  const tls = endpoint.tls
  if (tls === undefined || !endpoint.url.startsWith('https:')) return { target: endpoint.url }
  let agent = wsAgents.get(endpoint)
  if (agent === undefined) {
    agent = new https.Agent({ ca: tls.ca, cert: tls.cert, key: tls.key, servername: tls.servername ?? new URL(endpoint.url).hostname, rejectUnauthorized: tls.rejectUnauthorized })
    wsAgents.set(endpoint, agent)
  }
  return { target: endpoint.url, agent, secure: tls.rejectUnauthorized }
}

function ignore (): void {}

const kUpgrade = Symbol('outrider.upgrade')
type WithUpgrade = { [kUpgrade]?: { route: CompiledRoute, ctx: UpgradeRequest, rx0: number, tx0: number } }

/**
 * Adds `name: value` to a raw response head, unless node would refuse to
 * write it (a plugin's value with CR or LF would split the response).
 */
function pushField (lines: string[], name: string, value: string): void {
  try {
    http.validateHeaderName(name)
    http.validateHeaderValue(name, value)
  } catch { return }
  lines.push(`${name}: ${value}`)
}

/**
 * What an HTTP/2 listener announces in its SETTINGS (new sessions take a
 * reload's values; maxHeaderSize only changes on restart).
 */
function http2Settings (config: Config, maxHeaderSize: number): http2.Settings {
  return { maxHeaderListSize: maxHeaderSize, maxConcurrentStreams: config.limits.maxConcurrentStreams, enablePush: false }
}

const kRouteIdle = Symbol('outrider.routeIdle')
type RouteIdleMarked = http2.ServerHttp2Stream & { [kRouteIdle]?: number }

/** A route's own streamIdle: on the connection (HTTP/1.1, until the next request re-arms it) or the stream (HTTP/2). */
function holdToRouteIdle (req: IncomingMessage, h2: boolean, ms: number): void {
  if (!h2) {
    if (req.socket.timeout !== ms) req.socket.setTimeout(ms)
    return
  }
  const stream = (req as unknown as http2.Http2ServerRequest).stream
  ;(stream as RouteIdleMarked)[kRouteIdle] = ms
  stream.setTimeout(ms)
  if (ms > 0 && stream.listenerCount('timeout', onStreamIdle) === 0) stream.on('timeout', onStreamIdle)
}

/** A stream that moved nothing for limits.streamIdleTimeout. Module-level: no closure per stream. */
function onStreamIdle (this: http2.ServerHttp2Stream): void {
  if (!this.destroyed) this.close(http2.constants.NGHTTP2_CANCEL)
}

/**
 * Runs `then` once every response still owed on `socket` has gone out (RFC
 * 9112 §9.3.2: responses in request order), or the connection ended.
 */
function afterOwedResponses (socket: Duplex, idleMs: number, then: () => void): void {
  const last = lastResponse(socket)
  if (last === undefined || last.writableFinished) { then(); return }
  // node took its own 'drain' and 'timeout' listeners off the socket when it
  // handed it over: a response larger than the socket buffer would never be
  // told to go on, and nothing would end a stalled client.
  const onDrain = (): void => {
    const m = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage
    if (m != null && m.writableNeedDrain) m.emit('drain')
  }
  const onTimeout = (): void => { socket.destroy() }
  socket.on('drain', onDrain)
  if (idleMs > 0 && socket instanceof Socket) socket.setTimeout(idleMs, onTimeout)
  let done = false
  const go = (): void => {
    if (done) return
    done = true
    socket.off('drain', onDrain)
    if (socket instanceof Socket) { socket.off('timeout', onTimeout); socket.setTimeout(0) }
    if (socket.destroyed) return
    then()
  }
  last.once('finish', go)
  last.once('close', go)
}

/**
 * A WebSocket handshake: GET with `Upgrade: websocket`, on HTTP/1.1 (an
 * HTTP/1.0 Upgrade MUST be ignored, RFC 9110 §7.8) and without a body (a
 * handshake has none; its bytes would be read as the tunnel's). Anything
 * else stays a request, and readRequestHead drops its Upgrade.
 */
function isWebSocketUpgrade (req: IncomingMessage): boolean {
  const u = req.headers.upgrade
  if (typeof u !== 'string' || u.toLowerCase() !== 'websocket' || req.method !== 'GET' || req.httpVersionMinor < 1) return false
  const h = req.headers
  return h['transfer-encoding'] === undefined && (h['content-length'] === undefined || h['content-length'] === '0')
}
