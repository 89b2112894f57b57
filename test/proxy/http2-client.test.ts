import t from 'tap'
import http2 from 'node:http2'
import { startTestProxy, simpleDoc } from '../helpers/proxy.ts'
import { rawRequest, startScriptedUpstream } from '../helpers/raw-http.ts'

/**
 * What an HTTP/2 client needs of the proxy beyond relaying: heads and
 * trailers node's HTTP/2 layer will send.
 */

interface H2Answer {
  headers: http2.IncomingHttpHeaders
  trailers: http2.IncomingHttpHeaders | undefined
  body: string
  rstCode: number | undefined
}

function h2get (session: http2.ClientHttp2Session, path: string): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path, te: 'trailers' })
    let headers: http2.IncomingHttpHeaders = {}
    let trailers: http2.IncomingHttpHeaders | undefined
    let body = ''
    stream.setEncoding('utf8')
    stream.on('response', (h) => { headers = h })
    stream.on('trailers', (h) => { trailers = h })
    stream.on('data', (c: string) => { body += c })
    stream.on('error', reject)
    stream.on('close', () => { resolve({ headers, trailers, body, rstCode: stream.rstCode }) })
    stream.end()
  })
}

t.test('HTTP/2: an upstream repeating a single-value field (Content-Type, ETag) is relayed with the first value, head and trailers', async (t) => {
  // HTTP/1.1 lets an upstream send these twice; node's HTTP/2 layer refuses
  // to send a repeated Content-Type, ETag, Date… (ERR_HTTP2_HEADER_SINGLE_VALUE).
  const up = await startScriptedUpstream((head) => {
    if (head.startsWith('GET /trailers')) {
      return 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTrailer: etag\r\nTransfer-Encoding: chunked\r\n\r\n' +
        '2\r\nok\r\n0\r\nETag: "a"\r\nETag: "b"\r\nX-Sum: 1\r\n\r\n'
    }
    return 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Type: text/html\r\nETag: "a"\r\nETag: "b"\r\n' +
      'Cache-Control: max-age=60\r\nVary: accept\r\nVary: origin\r\nContent-Length: 2\r\n\r\nok'
  })
  t.teardown(up.close)
  const proxy = await startTestProxy({
    clusters: [{ name: 'up', endpoints: [{ url: up.url }] }],
    routes: [
      // A response hook: the head goes out from a map, not a flat list.
      { name: 'hooked', match: { pathPrefix: '/hooked' }, cluster: 'up', plugins: [{ name: 'headers', config: { response: { add: { 'x-hooked': '1' } } } }] },
      // A stored response is answered locally, with the fields it was stored with.
      { name: 'cached', match: { pathPrefix: '/cached' }, cluster: 'up', plugins: [{ name: 'cache', config: {} }] },
      { name: 'all', match: { pathPrefix: '/' }, cluster: 'up' },
    ],
    listen: { host: '127.0.0.1', port: 0, h2c: true },
  }, t)
  const session = http2.connect(proxy.url)
  t.teardown(() => { session.destroy() })

  for (const path of ['/plain', '/hooked', '/cached', '/cached']) {
    const r = await h2get(session, path)
    t.equal(r.headers[':status'], 200, `${path}: 200, not a 502`)
    t.equal(r.headers['content-type'], 'text/plain', `${path}: the first Content-Type`)
    t.equal(r.headers.etag, '"a"', `${path}: the first ETag`)
    t.equal(r.headers.vary, 'accept, origin', `${path}: a list field keeps all its values`)
    t.equal(r.body, 'ok')
  }

  const tr = await h2get(session, '/trailers')
  t.equal(tr.body, 'ok')
  t.equal(tr.trailers?.etag, '"a"', 'trailers too (node threw from its own listener: the stream hung, the process could die)')
  t.equal(tr.trailers?.['x-sum'], '1')
  t.equal(tr.rstCode, http2.constants.NGHTTP2_NO_ERROR)

  // HTTP/1.1 clients are not touched: they get every line.
  const plain = await startTestProxy(simpleDoc(up.url), t)
  const h1 = await rawRequest(plain.port, 'GET /plain HTTP/1.1\r\nHost: x\r\n\r\n')
  t.same(h1.responses[0]?.rawHeaders.filter(([n]) => n.toLowerCase() === 'content-type').map(([, v]) => v), ['text/plain', 'text/html'])
})
