/**
 * The raw-Node ceiling: the least a correct streaming reverse proxy can do on
 * node:http + undici. One Pool, `dispatch` with undici 8's handler API,
 * backpressure both ways, hop-by-hop headers dropped (RFC 9110 §7.6.1). No
 * routing, no plugins, no metrics, no X-Forwarded-*: whatever Outrider costs
 * above this is the price of its features.
 *
 *   node bench/undici-min.ts --upstream http://127.0.0.1:9001 [--port 0]
 */
import http, { type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseArgs } from 'node:util'
import { Pool, type Dispatcher } from 'undici'
import { announceReady, exitWithParent, intFlag } from './child.ts'

const { values } = parseArgs({ options: { port: { type: 'string' }, upstream: { type: 'string' } } })
if (values.upstream === undefined) throw new Error('--upstream URL is required')

const pool = new Pool(values.upstream, { connections: 128, keepAliveTimeout: 60_000 })
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade'])

/** The names a `Connection` header lists are hop-by-hop too. */
function connectionListed (value: string | string[] | undefined): Set<string> | null {
  if (value === undefined) return null
  return new Set(String(value).toLowerCase().split(',').map((s) => s.trim()))
}

function requestHeaders (req: http.IncomingMessage): string[] {
  const raw = req.rawHeaders
  const listed = connectionListed(req.headers.connection)
  const out: string[] = []
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    if (HOP.has(name) || listed?.has(name) === true) continue
    out.push(name, raw[i + 1]!)
  }
  return out
}

class Forward implements Dispatcher.DispatchHandler {
  readonly #res: http.ServerResponse

  constructor (res: http.ServerResponse) { this.#res = res }

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.#res.once('close', () => { if (!this.#res.writableFinished) controller.abort(new Error('client went away')) })
  }

  onResponseStart (_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    const listed = connectionListed(headers.connection)
    const out: OutgoingHttpHeaders = {}
    for (const name in headers) if (!HOP.has(name) && listed?.has(name) !== true) out[name] = headers[name]
    this.#res.writeHead(statusCode, out)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.#res.write(chunk)) {
      controller.pause()
      this.#res.once('drain', () => { controller.resume() })
    }
  }

  onResponseEnd (): void { this.#res.end() }

  onResponseError (_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.#res.headersSent) { this.#res.destroy(err); return }
    this.#res.writeHead(502, { 'content-type': 'text/plain' }).end('bad gateway\n')
  }
}

const server = http.createServer((req, res) => {
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined
  pool.dispatch({ path: req.url ?? '/', method: req.method ?? 'GET', headers: requestHeaders(req), body: hasBody ? req : null }, new Forward(res))
})
server.keepAliveTimeout = 65_000

server.listen(intFlag(values.port, 'port', 0), '127.0.0.1', () => {
  announceReady({ ready: 'undici-min', port: (server.address() as AddressInfo).port, pids: [process.pid] })
})
exitWithParent(() => { server.closeAllConnections() })
