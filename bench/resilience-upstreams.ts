import http from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * Upstreams for bench/resilience.ts, in their own process (so they neither
 * share an event loop with the proxy nor with the load generator): one server
 * per `--spec` entry `delayMs:failRatio[:utilization]` (e.g. `50:0`, `0:0.5`,
 * `0:0:0.9`). A utilization is sent as an ORCA `endpoint-load-metrics`
 * header on every answer. Every answer carries `x-upstream: <index>`, so the
 * load generator can count each endpoint's share.
 *
 * Controlled over stdin, one command a line:
 *   stop <i> / start <i>        refuse connections, then serve again on the same port
 *   delay <i> <ms>              change the added delay
 *   util <i> <fraction>         change the reported ORCA utilization (0: no header)
 * Prints `{"ports":[…]}` once listening.
 */
const specs = (process.argv[process.argv.indexOf('--spec') + 1] ?? '0:0').split(',').map((s) => {
  const [delay, fail, util] = s.split(':')
  return { delayMs: Number(delay), failRatio: Number(fail ?? 0), utilization: Number(util ?? 0) }
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
      const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/octet-stream', 'content-length': body.length, 'x-upstream': String(i) }
      if (spec.utilization > 0) headers['endpoint-load-metrics'] = `TEXT application_utilization=${spec.utilization}`
      res.writeHead(fail ? 503 : 200, headers)
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
    const [cmd, which, value] = buffered.slice(0, nl).trim().split(' ')
    buffered = buffered.slice(nl + 1)
    const i = Number(which)
    const s = servers[i]
    const spec = specs[i]
    if (s === undefined || spec === undefined) continue
    if (cmd === 'stop') { s.close(); s.closeAllConnections() }
    if (cmd === 'start') s.listen(ports[i], '127.0.0.1')
    if (cmd === 'delay') spec.delayMs = Number(value)
    if (cmd === 'util') spec.utilization = Number(value)
  }
})
process.stdin.on('end', () => { process.exit(0) })
