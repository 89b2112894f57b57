/**
 * The origin every experiment talks to: node:http, keep-alive, a fixed 1 KiB
 * body for any request (request bodies are drained and ignored), cacheable
 * for an hour.
 *
 *   node bench/upstream.ts [--port 0] [--size 1024]
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseArgs } from 'node:util'
import { announceReady, exitWithParent, intFlag } from './child.ts'

const { values } = parseArgs({ options: { port: { type: 'string' }, size: { type: 'string' } } })
const size = intFlag(values.size, 'size', 1024)

// Built once: the origin should cost as little as possible so the load side
// (which shares its core) has the most room.
const body = Buffer.alloc(size, 'x')
// Cacheable for an hour: only the cache experiments (f, g) make use of it.
const headers = ['content-type', 'text/plain', 'content-length', String(size), 'cache-control', 'max-age=3600']

const server = http.createServer((req, res) => {
  if (req.method !== 'GET' && req.method !== 'HEAD') req.resume()
  res.writeHead(200, headers)
  res.end(req.method === 'HEAD' ? undefined : body)
})
server.keepAliveTimeout = 65_000

server.listen(intFlag(values.port, 'port', 0), '127.0.0.1', () => {
  announceReady({ ready: 'upstream', port: (server.address() as AddressInfo).port, pids: [process.pid] })
})
exitWithParent(() => { server.closeAllConnections() })
