import http from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * Upstreams for bench/resilience.ts, in their own process: one server per
 * `--spec` entry `delayMs:failRatio` (e.g. `50:0`, `0:0.5`). Controlled over
 * stdin with lines `stop <i>` / `start <i>` (refuse, then serve again on the
 * same port). Prints `{"ports":[…]}` once listening.
 */
const specs = (process.argv[process.argv.indexOf('--spec') + 1] ?? '0:0').split(',').map((s) => {
  const [delay, fail] = s.split(':')
  return { delayMs: Number(delay), failRatio: Number(fail ?? 0) }
})
const body = Buffer.alloc(1024, 'x')

const servers = specs.map((spec, i) => {
  let n = 0
  const server = http.createServer((req, res) => {
    if (req.url === '/healthz') { res.end('ok'); return }
    n++
    // Evenly spread failures (every k-th request), so runs are comparable.
    const fail = spec.failRatio > 0 && (n % Math.round(1 / spec.failRatio)) === 0
    const answer = (): void => {
      res.writeHead(fail ? 503 : 200, { 'content-type': 'application/octet-stream', 'content-length': body.length, 'x-upstream': String(i) })
      res.end(body)
    }
    if (spec.delayMs > 0) setTimeout(answer, spec.delayMs)
    else answer()
  })
  server.keepAliveTimeout = 65_000
  return server
})

await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))))
const ports = servers.map((s) => (s.address() as AddressInfo).port)
process.stdout.write(JSON.stringify({ ports }) + '\n')

let buffered = ''
process.stdin.setEncoding('utf8')
process.stdin.on('data', (chunk: string) => {
  buffered += chunk
  let nl
  while ((nl = buffered.indexOf('\n')) !== -1) {
    const [cmd, which] = buffered.slice(0, nl).trim().split(' ')
    buffered = buffered.slice(nl + 1)
    const i = Number(which)
    const s = servers[i]
    if (s === undefined) continue
    if (cmd === 'stop') { s.close(); s.closeAllConnections() }
    if (cmd === 'start') s.listen(ports[i], '127.0.0.1')
  }
})
process.stdin.on('end', () => { process.exit(0) })
