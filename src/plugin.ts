import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { z } from 'zod'
import type { Registry } from 'prom-client'
import type { Logger } from './log.ts'

/**
 * Headers as Outrider passes them between phases: lower-case names; repeated
 * headers as arrays. Plugins mutate these objects in place, but replace an
 * array value rather than push to it: the array may be shared (a cached
 * response's, say).
 */
export type HeaderMap = Record<string, string | string[] | undefined>

/** A response made at the proxy (a plugin short-circuit, a CORS preflight …). */
export interface LocalResponse {
  status: number
  headers?: HeaderMap
  body?: string | Buffer
}

/**
 * Per-request state handed to every hook. One object per request, created by the
 * listener; plugins keep their own per-request data in `state` under their name.
 */
export interface RequestContext {
  readonly req: IncomingMessage
  /** The id sent upstream and back as `x-request-id`. */
  readonly requestId: string
  /** The peer address of the client connection (not X-Forwarded-For). */
  readonly clientIp: string
  /** `http` or `https`: the scheme the client used. */
  readonly scheme: string
  /** The request's target host as the client sent it (`Host`, `:authority` or the absolute-form target). */
  readonly authority: string
  readonly method: string
  /** Path without the query string. */
  readonly path: string
  /** The raw query string without `?`, or '' when absent. */
  readonly query: string
  /** The route name (also the metric label). */
  readonly routeName: string
  /** Headers that will go upstream (hop-by-hop already removed). Mutable. */
  readonly upstreamHeaders: HeaderMap
  /** Path and query sent upstream; plugins may rewrite it. */
  upstreamPath: string
  /** Plugin-owned per-request data, keyed by plugin name. */
  readonly state: Record<string, unknown>
  /**
   * Reads the request body for inspection (WAF, body-based auth), at most
   * `limit` bytes. Resolves to the whole body, or `undefined` when the body is
   * larger than `limit` (or absent: then an empty Buffer). Either way the body
   * is still forwarded upstream unchanged and complete. Idempotent: a second
   * call returns the first call's result.
   */
  readBody (limit: number): Promise<Buffer | undefined>
  /**
   * Records a decision for the access log (and trace events): e.g.
   * `annotate('waf', 'blocked')`, `annotate('rateLimit', 'deny')`. Keys are
   * plugin-chosen, values small.
   */
  annotate (key: string, value: string | number | boolean): void
  /** Set by auth plugins; read by e.g. rate limiting. */
  identity: { subject: string, claims?: Record<string, unknown>, scopes?: string[] } | undefined
  readonly startTime: number
}

/**
 * The upstream (or local) response as the response phase sees it. `headers` are
 * mutable. A plugin that must rewrite the body stream adds a transform with
 * `pipeThrough`; transforms run in the order they were added.
 */
export interface ResponseContext {
  status: number
  readonly headers: HeaderMap
  /**
   * True when the response was made at the proxy (a plugin's answer or an
   * error problem such as 502/504), false when it came from the upstream.
   */
  readonly local: boolean
  /** Insert a body transform (compression, capture for a cache …). */
  pipeThrough (transform: Duplex): void
  /**
   * Sends `body` instead of the response's own body, which is read and
   * discarded (a cache answering a 304 revalidation or a failure with its
   * stored copy). Sets Content-Length; transforms added later still apply.
   */
  replaceBody (body: Buffer): void
}

/** A request a plugin sends to its route's cluster on its own (a cache's background revalidation). */
export interface SubrequestOptions {
  method: string
  /** Path and query as sent upstream. */
  path: string
  /** Sent as given: pass a copy of `ctx.upstreamHeaders` plus changes. */
  headers: HeaderMap
  /** A larger response body is not kept: `body` is then undefined. */
  maxBodySize: number
}

export interface SubrequestReply {
  status: number
  headers: HeaderMap
  body: Buffer | undefined
}

/** Sends subrequests through the route's cluster: its balancer, health and timeouts, no retries. */
export interface UpstreamClient {
  request (options: SubrequestOptions): Promise<SubrequestReply>
}

/** What to purge from a cache: one URL (`host/path?query`), every URL under a prefix, or a tag. */
export type PurgeSelector = { url: string } | { prefix: string } | { tag: string }

/** What `onLog` sees once the last byte went out (or the exchange failed). */
export interface ExchangeSummary {
  status: number
  bytesIn: number
  bytesOut: number
  durationMs: number
  upstreamDurationMs: number | undefined
  endpoint: string | undefined
  error: Error | undefined
}

export interface PluginHooks {
  /** Route order. Return a response to short-circuit; throw an OutriderError to fail. */
  onRequest?(ctx: RequestContext): void | LocalResponse | Promise<void | LocalResponse>
  /** Reverse route order, before the status line goes to the client. */
  onResponse?(ctx: RequestContext, res: ResponseContext): void | Promise<void>
  /** Reverse route order, after the exchange; cannot change anything. */
  onLog?(ctx: RequestContext, summary: ExchangeSummary): void
  /** Admin purge (caches): drops matching stored responses; returns how many. */
  purge?(selector: PurgeSelector): number | Promise<number>
  /** When the snapshot that created this instance retires. */
  close?(): void | Promise<void>
}

/** Shared facilities a plugin may use while it is created. */
export interface PluginContext {
  readonly routeName: string
  readonly metrics: Registry
  readonly log: Logger
  /** The route's cluster, for subrequests. */
  readonly upstream: UpstreamClient
}

export interface PluginDefinition<S extends z.ZodType = z.ZodType> {
  /** The config `name`; also the folder name under `plugins/`. */
  readonly name: string
  readonly schema: S
  /** Runs once per snapshot per route: compile, open stores, declare metrics. */
  create (config: z.output<S>, ctx: PluginContext): PluginHooks | Promise<PluginHooks>
}

/**
 * Declares a plugin. Typed identity so `create` sees its config type.
 *
 * @example
 * export default definePlugin({
 *   name: 'hello',
 *   schema: z.strictObject({ greeting: z.string().default('hi') }),
 *   create (config) {
 *     return { onRequest: () => ({ status: 200, body: config.greeting }) }
 *   },
 * })
 */
export function definePlugin<S extends z.ZodType> (def: PluginDefinition<S>): PluginDefinition<S> {
  return def
}
