import t from 'tap'
import http2 from 'node:http2'
import http from 'node:http'
import type net from 'node:net'
import { mkdtemp, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { startTestProxy, simpleDoc } from '../helpers/proxy.ts'
import { rawRequest, startScriptedUpstream } from '../helpers/raw-http.ts'
import { flushAccessLogs } from '../../src/access-log.ts'

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

interface Upload extends H2Answer {
  /** Bytes the client had written when its stream closed. */
  sent: number
}

/** A POST without Content-Length whose body never ends: the client writes until its stream closes. */
function endlessUpload (session: http2.ClientHttp2Session, path: string): Promise<Upload> {
  return new Promise((resolve) => {
    const stream = session.request({ ':method': 'POST', ':path': path, te: 'trailers' }, { endStream: false })
    let headers: http2.IncomingHttpHeaders = {}
    let trailers: http2.IncomingHttpHeaders | undefined
    let body = ''
    let sent = 0
    stream.setEncoding('utf8')
    stream.on('response', (h) => { headers = h })
    stream.on('trailers', (h) => { trailers = h })
    stream.on('data', (c: string) => { body += c })
    stream.on('error', () => {})
    stream.on('close', () => { resolve({ headers, trailers, body, rstCode: stream.rstCode, sent }) })
    const chunk = Buffer.alloc(16 * 1024)
    const write = (): void => {
      while (!stream.closed && !stream.destroyed) {
        sent += chunk.length
        if (!stream.write(chunk)) { stream.once('drain', write); return }
      }
    }
    write()
  })
}

/** The access log's records once at least `atLeast` were written (async destination: poll, bounded). */
async function records (file: string, atLeast: number): Promise<Array<Record<string, unknown>>> {
  let recs: Array<Record<string, unknown>> = []
  for (let i = 0; i < 100 && recs.length < atLeast; i++) {
    flushAccessLogs()
    const text = await readFile(file, 'utf8').catch(() => '')
    recs = text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>)
    if (recs.length < atLeast) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return recs
}

t.test('HTTP/2: a complete answer before the upload ends (413, an upstream\'s early 401 or gRPC status) ends the stream with NO_ERROR, and is logged as answered', async (t) => {
  // An HTTP/1.1 upstream that refuses without reading the body, and an
  // HTTP/2 one that ends a gRPC-like answer, trailers and all, mid-upload.
  const h1 = http.createServer((req, res) => { res.writeHead(401, { 'content-length': '6' }); res.end('denied') })
  await new Promise<void>((resolve) => h1.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { h1.close() })
  const h2 = http2.createServer((req, res) => {
    req.on('error', () => {})
    res.writeHead(200, { 'content-type': 'application/grpc' })
    res.addTrailers({ 'grpc-status': '0' })
    res.end('early')
  })
  await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { h2.close() })
  const dir = await mkdtemp(path.join(tmpdir(), 'outrider-h2-'))
  const file = path.join(dir, 'access.log')
  const proxy = await startTestProxy({
    clusters: [
      { name: 'h1', endpoints: [{ url: `http://127.0.0.1:${(h1.address() as net.AddressInfo).port}` }] },
      { name: 'h2', endpoints: [{ url: `http://127.0.0.1:${(h2.address() as net.AddressInfo).port}` }], protocol: 'http2' },
    ],
    routes: [
      { name: 'limited', match: { pathPrefix: '/limited' }, cluster: 'h1', maxBodySize: 1024 },
      { name: 'grpc', match: { pathPrefix: '/grpc' }, cluster: 'h2' },
      { name: 'refused', match: { pathPrefix: '/' }, cluster: 'h1' },
    ],
    listen: { host: '127.0.0.1', port: 0, h2c: true },
    accessLog: { destination: file },
    // Without the reset, the stream would wait for this (and be logged as 499).
    limits: { streamIdleTimeout: 3000 },
  }, t)
  const session = http2.connect(proxy.url)
  session.on('error', () => {})
  t.teardown(() => { session.destroy() })

  const tooLarge = await endlessUpload(session, '/limited')
  t.equal(tooLarge.headers[':status'], 413)
  t.match(JSON.parse(tooLarge.body), { code: 'PAYLOAD_TOO_LARGE' }, 'the whole problem body')
  t.equal(tooLarge.rstCode, http2.constants.NGHTTP2_NO_ERROR, 'then the client is asked to stop sending (RFC 9113 §8.1)')

  const refused = await endlessUpload(session, '/refused')
  t.equal(refused.headers[':status'], 401)
  t.equal(refused.body, 'denied')
  t.equal(refused.rstCode, http2.constants.NGHTTP2_NO_ERROR)

  const grpc = await endlessUpload(session, '/grpc')
  t.equal(grpc.body, 'early')
  t.equal(grpc.trailers?.['grpc-status'], '0', 'the trailers go out before the reset')
  t.equal(grpc.rstCode, http2.constants.NGHTTP2_NO_ERROR)

  const recs = await records(file, 3)
  t.same(recs.map((r) => r.status), [413, 401, 200], 'each logged with the status sent, not as a client that left (499)')
})
