import type http from 'node:http'
import { request } from 'undici'
import { startUpstream, type Upstream } from '../../test/helpers/upstream.ts'
import { startTestProxy, simpleDoc, type TestProxy } from '../../test/helpers/proxy.ts'

/** What the origin answers for the n-th request (1-based) to a path. */
export type Script = (req: http.IncomingMessage, n: number) => { status?: number, headers?: Record<string, string | string[] | undefined>, body?: string | Buffer, delayMs?: number }

/**
 * An origin whose answers tests script per path, counting the requests it
 * gets: "was it served from cache" is "did the origin see it", as in the
 * HTTP caching conformance suites.
 */
export class ScriptedOrigin {
  readonly upstream: Upstream
  readonly #scripts = new Map<string, Script>()
  readonly #hits = new Map<string, number>()
  readonly requests: Array<{ path: string, headers: http.IncomingHttpHeaders, method: string }> = []

  private constructor (upstream: Upstream, scripts: Map<string, Script>, hits: Map<string, number>) {
    this.upstream = upstream
    this.#scripts = scripts
    this.#hits = hits
  }

  static async start (): Promise<ScriptedOrigin> {
    const scripts = new Map<string, Script>()
    const hits = new Map<string, number>()
    const requests: ScriptedOrigin['requests'] = []
    const upstream = await startUpstream((req, res) => {
      const path = (req.url ?? '/').split('?')[0] as string
      const n = (hits.get(path) ?? 0) + 1
      hits.set(path, n)
      requests.push({ path, headers: req.headers, method: req.method ?? '' })
      req.resume()
      const script = scripts.get(path)
      const out = script === undefined ? { status: 404, body: 'no script' } : script(req, n)
      const send = (): void => {
        const body = out.body ?? (out.status === 304 || out.status === 204 ? undefined : `body ${n} of ${path}`)
        const headers: Record<string, string | string[]> = {}
        for (const [k, v] of Object.entries(out.headers ?? {})) if (v !== undefined) headers[k] = v
        if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body))
        res.writeHead(out.status ?? 200, headers)
        res.end(req.method === 'HEAD' ? undefined : body)
      }
      if (out.delayMs !== undefined) setTimeout(send, out.delayMs)
      else send()
    })
    const origin = new ScriptedOrigin(upstream, scripts, hits)
    ;(origin as { requests: ScriptedOrigin['requests'] }).requests = requests
    return origin
  }

  on (path: string, script: Script): void { this.#scripts.set(path, script) }
  hits (path: string): number { return this.#hits.get(path) ?? 0 }
  close (): Promise<void> { return this.upstream.close() }
}

let seq = 0
/** A path no other test uses (the cache is keyed by URL). */
export function uniquePath (name: string): string {
  return `/${name}-${process.pid}-${++seq}`
}

export async function startCachingProxy (origin: ScriptedOrigin, config: Record<string, unknown> = {}, t?: { teardown (fn: () => unknown): void }, extraPlugins: unknown[] = []): Promise<TestProxy> {
  return startTestProxy(simpleDoc(origin.upstream.url, { plugins: [{ name: 'cache', config }, ...extraPlugins] }), t)
}

export interface Reply { status: number, headers: Record<string, string | string[] | undefined>, body: string }

export async function get (proxy: TestProxy, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Reply> {
  const r = await request(`${proxy.url}${path}`, { method: method as 'GET', headers })
  const body = await r.body.text()
  return { status: r.statusCode, headers: r.headers, body }
}

/** An HTTP-date `offsetSec` seconds from now. */
export function httpDate (offsetSec = 0): string {
  return new Date(Date.now() + offsetSec * 1000).toUTCString()
}

export function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
