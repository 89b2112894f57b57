import type { IncomingMessage } from 'node:http'
import type { Span } from '@opentelemetry/api'
import type { Tracing } from './tracing.ts'
import type { HeaderMap, RequestContext } from './plugin.ts'
import type { RequestHead } from './http/request-head.ts'
import { clientAddress, setForwardingHeaders } from './http/forwarding.ts'

const EMPTY = Buffer.alloc(0)

/**
 * The request phase's view of a WebSocket upgrade. Plugins see it like any
 * request (auth, WAF, rate limits decide on the handshake); what they leave
 * in `upstreamHeaders` and `upstreamPath` is what the tunnel opens with. There
 * is no response phase: after a 101 the connection is no longer HTTP.
 */
export class UpgradeRequest implements RequestContext {
  readonly req: IncomingMessage
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
  readonly startTime = performance.now()
  /** Decisions plugins recorded (`annotate`): logged with the handshake's outcome. */
  annotations: Record<string, string | number | boolean> | undefined
  #state: Record<string, unknown> | undefined

  /** Counted and logged once: when the tunnel opens or fails, or the handshake is answered here. */
  logged = false
  /** The handshake's SERVER span (tracing on only), ended when it is logged. */
  span: Span | undefined = undefined
  /** The CLIENT span of the upstream handshake, once relayed. */
  upstreamSpan: Span | undefined = undefined
  readonly tracer: Tracing | undefined

  constructor (req: IncomingMessage, head: RequestHead, path: string, upstreamPath: string, routeName: string, scheme: string, via: string, tracer: Tracing | undefined) {
    this.tracer = tracer
    this.req = req
    this.method = req.method as string
    this.path = path
    this.query = head.query
    this.authority = head.authority
    this.routeName = routeName
    this.scheme = scheme
    this.clientIp = clientAddress(req)
    this.upstreamHeaders = head.headers
    this.requestId = setForwardingHeaders(head.headers, req, this.clientIp, scheme, head.authority, via)
    this.upstreamPath = upstreamPath
  }

  get state (): Record<string, unknown> {
    if (this.#state === undefined) this.#state = {}
    return this.#state
  }

  /** A handshake has no body: node only hands over GET upgrades. */
  readBody (): Promise<Buffer> { return Promise.resolve(EMPTY) }

  annotate (key: string, value: string | number | boolean): void {
    if (this.annotations === undefined) this.annotations = {}
    this.annotations[key] = value
    if (this.span !== undefined) (this.tracer as Tracing).decision(this.span, key, value)
  }
}
