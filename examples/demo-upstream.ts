import http from 'node:http'

/**
 * A tiny demo service: answers JSON describing what it received, so a `curl`
 * through the proxy shows the forwarding headers and which endpoint served it.
 */
export function startDemoUpstream (port: number, name: string): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const body = JSON.stringify({
      servedBy: name,
      method: req.method,
      path: req.url,
      headers: {
        'x-request-id': req.headers['x-request-id'],
        'x-forwarded-for': req.headers['x-forwarded-for'],
        'x-forwarded-proto': req.headers['x-forwarded-proto'],
        'x-forwarded-host': req.headers['x-forwarded-host'],
        'x-gateway': req.headers['x-gateway'],
        via: req.headers.via,
      },
    }, null, 2) + '\n'
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-powered-by': 'demo' })
    res.end(req.method === 'HEAD' ? undefined : body)
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => { resolve(server) })
  })
}
