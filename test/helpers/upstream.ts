import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { UpstreamClient } from '../../src/plugin.ts'

export interface Upstream {
  readonly url: string
  readonly port: number
  readonly server: http.Server
  /** Requests seen, in order (head only). */
  readonly seen: Array<{ method: string, url: string, headers: http.IncomingHttpHeaders, rawHeaders: string[] }>
  close (): Promise<void>
}

/**
 * A real HTTP server on 127.0.0.1:0. Without a handler it echoes the request
 * head as JSON: `{ method, url, headers, body }` (body as utf8, read fully).
 */
export async function startUpstream (handler?: http.RequestListener, options: http.ServerOptions = {}): Promise<Upstream> {
  const seen: Upstream['seen'] = []
  const server = http.createServer(options, (req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders })
    if (handler !== undefined) { handler(req, res); return }
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), trailers: req.trailers })
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    seen,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}

/** A PluginContext `upstream` for unit tests of plugins that never send subrequests. */
export const noSubrequests: UpstreamClient = {
  request: () => Promise.reject(new Error('this test gives the plugin no upstream')),
}
