import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { z } from 'zod'
import type { Registry } from 'prom-client'
import type { Logger } from './log.ts'

/**
 * Headers as Outrider passes them between phases: lower-case names; repeated
 * headers as arrays. Plugins mutate these objects in place.
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
  /** Insert a body transform (compression, capture for a cache …). */
  pipeThrough (transform: Duplex): void
}

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
  /** When the snapshot that created this instance retires. */
  close?(): void | Promise<void>
}

/** Shared facilities a plugin may use while it is created. */
export interface PluginContext {
  readonly routeName: string
  readonly metrics: Registry
  readonly log: Logger
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
