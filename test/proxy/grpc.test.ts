import t from 'tap'
import { readFile } from 'node:fs/promises'
import * as grpc from '@grpc/grpc-js'
import { startTestProxy, simpleDoc } from '../helpers/proxy.ts'
import { hasOpenssl, makePki } from '../helpers/certs.ts'

/**
 * gRPC through the proxy: a grpc-js client speaks HTTP/2 to the TLS listener,
 * the cluster speaks HTTP/2 (h2c) to a grpc-js server. What gRPC needs of a
 * proxy: HTTP/2 on both legs, `te: trailers` upstream, trailers (grpc-status,
 * grpc-message, metadata) relayed, and "trailers-only" error answers intact.
 */

const raw = { serialize: (b: Buffer): Buffer => b, deserialize: (b: Buffer): Buffer => b }
const service = {
  say: { path: '/test.Echo/Say', requestStream: false, responseStream: false, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
  count: { path: '/test.Echo/Count', requestStream: false, responseStream: true, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
  chat: { path: '/test.Echo/Chat', requestStream: true, responseStream: true, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
} satisfies grpc.ServiceDefinition

interface EchoClient extends grpc.Client {
  say (req: Buffer, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res?: Buffer) => void): grpc.ClientUnaryCall
  count (req: Buffer, md: grpc.Metadata): grpc.ClientReadableStream<Buffer>
  chat (md: grpc.Metadata): grpc.ClientDuplexStream<Buffer, Buffer>
}

async function startGrpcServer (seen: string[]): Promise<{ port: number, close: () => void }> {
  const server = new grpc.Server()
  server.addService(service, {
    say: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      seen.push(call.getPath())
      const text = call.request.toString()
      if (text === 'missing') { cb({ code: grpc.status.NOT_FOUND, details: 'no such thing' }); return }
      const trailer = new grpc.Metadata()
      trailer.set('x-served-by', 'echo')
      cb(null, Buffer.from(`echo: ${text}`), trailer)
    },
    count: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      const n = Number(call.request.toString())
      for (let i = 1; i <= n; i++) call.write(Buffer.from(String(i)))
      call.end()
    },
    // Answers each message as it comes: the client waits for each answer before it sends the next.
    chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (b: Buffer) => { call.write(Buffer.from(`re: ${b.toString()}`)) })
      call.on('end', () => { call.end() })
    },
  })
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => { if (err !== null) reject(err); else resolve(p) })
  })
  return { port, close: () => { server.forceShutdown() } }
}

t.test('unary, server streaming, errors and trailers through an HTTP/2 route', async (t) => {
  if (!await hasOpenssl()) { t.plan(0, 'openssl is not installed'); return }
  const pki = await makePki()
  const seen: string[] = []
  const up = await startGrpcServer(seen)
  t.teardown(up.close)
  const proxy = await startTestProxy({
    ...simpleDoc(`http://127.0.0.1:${up.port}`, {}, { protocol: 'http2' }),
    listen: { host: '127.0.0.1', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey } },
  }, t)
  const Client = grpc.makeGenericClientConstructor(service, 'Echo') as unknown as new (addr: string, creds: grpc.ChannelCredentials) => EchoClient
  const client = new Client(`localhost:${proxy.port}`, grpc.credentials.createSsl(await readFile(pki.caCert)))
  t.teardown(() => { client.close() })

  const md = new grpc.Metadata()
  md.set('x-tenant', 'blue')
  const trailers = new Promise<grpc.Metadata>((resolve) => {
    const call = client.say(Buffer.from('hi'), md, (err, res) => {
      t.equal(err, null, 'the call succeeds')
      t.equal(res?.toString(), 'echo: hi')
    })
    call.on('status', (s: grpc.StatusObject) => { resolve(s.metadata) })
  })
  t.same((await trailers).get('x-served-by'), ['echo'], 'trailing metadata relayed')

  const err = await new Promise<grpc.ServiceError | null>((resolve) => { client.say(Buffer.from('missing'), new grpc.Metadata(), (e) => { resolve(e) }) })
  t.equal(err?.code, grpc.status.NOT_FOUND, 'a trailers-only error keeps its status')
  t.equal(err?.details, 'no such thing', 'and its message')

  const got: string[] = []
  const stream = client.count(Buffer.from('5'), new grpc.Metadata())
  stream.on('data', (b: Buffer) => { got.push(b.toString()) })
  const status = await new Promise<grpc.StatusObject>((resolve) => { stream.on('status', resolve) })
  t.equal(status.code, grpc.status.OK)
  t.same(got, ['1', '2', '3', '4', '5'], 'five streamed messages, in order')

  // Bidirectional: each answer must come back through the proxy before the
  // next message is sent, so neither direction may be buffered to its end.
  const chat = client.chat(new grpc.Metadata())
  const replies: string[] = []
  for (const word of ['one', 'two', 'three']) {
    const reply = new Promise<string>((resolve) => { chat.once('data', (b: Buffer) => { resolve(b.toString()) }) })
    chat.write(Buffer.from(word))
    replies.push(await reply)
  }
  const chatStatus = new Promise<grpc.StatusObject>((resolve) => { chat.on('status', resolve) })
  chat.end()
  t.same(replies, ['re: one', 're: two', 're: three'], 'a bidirectional stream, message by message')
  t.equal((await chatStatus).code, grpc.status.OK)

  const metrics = await fetch(`${proxy.adminUrl}/metrics`).then(async (r) => await r.text())
  t.match(metrics, /outrider_requests_total\{route="all",method="POST",status_class="2xx"\} 4/, 'each call is one POST on the route')
})

t.test('an http2 cluster over h2c answers plain HTTP/1.1 clients too', async (t) => {
  const seen: string[] = []
  const up = await startGrpcServer(seen)
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(`http://127.0.0.1:${up.port}`, {}, { protocol: 'http2' }), t)
  // Not a gRPC request: grpc-js answers it with an HTTP/2 error status, which
  // must arrive as an ordinary HTTP/1.1 response.
  const res = await fetch(`${proxy.url}/test.Echo/Say`, { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' } })
  await res.arrayBuffer()
  t.ok(res.status >= 400 && res.status < 500, `relayed as a 4xx (${res.status})`)
})

t.test('te: trailers reaches an HTTP/2 upstream only when the client accepts trailers', async (t) => {
  const http2 = await import('node:http2')
  const te: Array<string | undefined> = []
  const server = http2.createServer((req, res) => {
    te.push(req.headers.te as string | undefined)
    res.addTrailers({ 'x-checksum': 'abc' })
    res.end('body')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const port = (server.address() as { port: number }).port
  const proxy = await startTestProxy(simpleDoc(`http://127.0.0.1:${port}`, {}, { protocol: 'http2' }), t)
  const { rawRequest } = await import('../helpers/raw-http.ts')
  const withTe = await rawRequest(proxy.port, 'GET /a HTTP/1.1\r\nHost: x.test\r\nConnection: TE\r\nTE: trailers\r\n\r\n', { expect: 1 })
  t.equal(withTe.responses[0]?.body.toString(), 'body')
  t.same(withTe.responses[0]?.trailers, [['x-checksum', 'abc']], 'the upstream\'s trailers reach an HTTP/1.1 client (chunked)')
  await rawRequest(proxy.port, 'GET /b HTTP/1.1\r\nHost: x.test\r\n\r\n', { expect: 1 })
  t.same(te, ['trailers', undefined], 'te: trailers on the client\'s behalf, and only then')
})

t.test('a cleartext HTTP/2 (h2c) listener: gRPC without TLS, as beside a service in a mesh', async (t) => {
  const up = await startGrpcServer([])
  t.teardown(up.close)
  const proxy = await startTestProxy({
    ...simpleDoc(`http://127.0.0.1:${up.port}`, {}, { protocol: 'http2' }),
    listen: { host: '127.0.0.1', port: 0, h2c: true },
  }, t)
  const Client = grpc.makeGenericClientConstructor(service, 'Echo') as unknown as new (addr: string, creds: grpc.ChannelCredentials) => EchoClient
  const client = new Client(`127.0.0.1:${proxy.port}`, grpc.credentials.createInsecure())
  t.teardown(() => { client.close() })
  const reply = await new Promise<Buffer | undefined>((resolve, reject) => {
    client.say(Buffer.from('plain'), new grpc.Metadata(), (err, res) => { if (err !== null) reject(err); else resolve(res) })
  })
  t.equal(reply?.toString(), 'echo: plain')
  const err = await new Promise<grpc.ServiceError | null>((resolve) => { client.say(Buffer.from('missing'), new grpc.Metadata(), (e) => { resolve(e) }) })
  t.equal(err?.code, grpc.status.NOT_FOUND)
})

t.test('h2c and tls together is a config error', async (t) => {
  const { configSchema } = await import('../../src/config/schema.ts')
  const r = configSchema.safeParse({ ...simpleDoc('http://127.0.0.1:1'), listen: { h2c: true, tls: { cert: 'c.pem', key: 'k.pem' } } })
  t.notOk(r.success)
  t.match(JSON.stringify(r.error?.issues), /h2c or tls, not both/)
})

t.test('gRPC-Web keeps its status in the head (browsers cannot read HTTP/2 trailers)', async (t) => {
  const http2 = await import('node:http2')
  const server = http2.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/grpc-web+proto', 'grpc-status': '5', 'grpc-message': 'gone' })
    res.end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const port = (server.address() as { port: number }).port
  const proxy = await startTestProxy({ ...simpleDoc(`http://127.0.0.1:${port}`, {}, { protocol: 'http2' }), listen: { host: '127.0.0.1', port: 0, h2c: true } }, t)
  const session = http2.connect(`http://127.0.0.1:${proxy.port}`)
  t.teardown(() => { session.close() })
  const head = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const stream = session.request({ ':method': 'POST', ':path': '/shop.Orders/Get', 'content-type': 'application/grpc-web+proto' })
    stream.on('response', (h) => { resolve(h) })
    stream.on('error', reject)
    stream.resume()
    stream.end()
  })
  t.equal(head['grpc-status'], '5')
  t.equal(head['grpc-message'], 'gone')
})

t.test('HTTP/2 sessions: an idle one is closed after keepAliveTimeout, one with a stream open is not', async (t) => {
  const http2 = await import('node:http2')
  let finish: (() => void) | undefined
  const server = http2.createServer((req, res) => {
    if (req.url === '/slow') { finish = () => { res.end('late') }; return }
    res.end('quick')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const port = (server.address() as { port: number }).port
  const proxy = await startTestProxy({
    ...simpleDoc(`http://127.0.0.1:${port}`, {}, { protocol: 'http2' }),
    listen: { host: '127.0.0.1', port: 0, h2c: true },
    limits: { keepAliveTimeout: 200 },
  }, t)
  const get = (session: import('node:http2').ClientHttp2Session, path: string): Promise<string> => new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path })
    let body = ''
    stream.setEncoding('utf8')
    stream.on('data', (c: string) => { body += c })
    stream.on('end', () => { resolve(body) })
    stream.on('error', reject)
    stream.end()
  })

  const idle = http2.connect(`http://127.0.0.1:${proxy.port}`)
  t.teardown(() => { idle.destroy() })
  const idleClosed = new Promise<void>((resolve) => { idle.once('close', () => { resolve() }); idle.once('goaway', () => { resolve() }) })
  t.equal(await get(idle, '/quick'), 'quick')
  await idleClosed
  t.pass('the idle session was sent away')

  const busy = http2.connect(`http://127.0.0.1:${proxy.port}`)
  t.teardown(() => { busy.destroy() })
  let busyGone = false
  busy.once('goaway', () => { busyGone = true })
  const slow = get(busy, '/slow')
  await new Promise((resolve) => setTimeout(resolve, 600))
  t.notOk(busyGone, 'a session waiting on a stream is kept past the idle timeout')
  finish?.()
  t.equal(await slow, 'late')
})

t.test('Outrider\'s own errors reach gRPC clients as gRPC statuses, trailers-only (gRPC-Web: in the head); metrics keep the HTTP status', async (t) => {
  const http2 = await import('node:http2')
  const { hashApiKey } = await import('../../plugins/api-key/hash.ts')
  const { metric } = await import('../helpers/resilience.ts')
  // Answers nothing, ever: only the route deadline ends a call to it.
  const silent = http2.createServer(() => {})
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { silent.close() })
  const sink = http2.createServer(() => {})
  await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { sink.close() })
  const proxy = await startTestProxy({
    clusters: [
      { name: 'down', endpoints: [{ url: 'http://127.0.0.1:1' }], protocol: 'http2' },
      { name: 'silent', endpoints: [{ url: `http://127.0.0.1:${(silent.address() as { port: number }).port}` }], protocol: 'http2' },
      { name: 'sink', endpoints: [{ url: `http://127.0.0.1:${(sink.address() as { port: number }).port}` }], protocol: 'http2' },
    ],
    routes: [
      { name: 'down', match: { pathPrefix: '/', headers: { 'x-case': 'down' } }, cluster: 'down' },
      { name: 'locked', match: { pathPrefix: '/', headers: { 'x-case': 'locked' } }, cluster: 'silent', plugins: [{ name: 'api-key', config: { keys: [{ id: 'svc', hash: hashApiKey('k-123456789') }] } }] },
      { name: 'small', match: { pathPrefix: '/', headers: { 'x-case': 'small' } }, cluster: 'sink', maxBodySize: 1024 },
      { name: 'slow', match: { pathPrefix: '/' }, cluster: 'silent', timeouts: { overall: 200 } },
    ],
    listen: { host: '127.0.0.1', port: 0, h2c: true },
  }, t)
  const Client = grpc.makeGenericClientConstructor(service, 'Echo') as unknown as new (addr: string, creds: grpc.ChannelCredentials) => EchoClient
  const client = new Client(`127.0.0.1:${proxy.port}`, grpc.credentials.createInsecure())
  t.teardown(() => { client.close() })
  const call = (kase: string): Promise<grpc.ServiceError | null> => new Promise((resolve) => {
    const md = new grpc.Metadata()
    md.set('x-case', kase)
    client.say(Buffer.from('hi'), md, (err) => { resolve(err) })
  })

  const down = await call('down')
  t.equal(down?.code, grpc.status.UNAVAILABLE, 'no upstream to connect to: UNAVAILABLE')
  t.equal(down?.details, 'could not connect to the upstream', 'with what happened, not "Received HTTP status code 502"')
  t.equal((await call('slow'))?.code, grpc.status.DEADLINE_EXCEEDED, 'the route deadline: DEADLINE_EXCEEDED')
  t.equal((await call('locked'))?.code, grpc.status.UNAUTHENTICATED, 'a plugin\'s 401: UNAUTHENTICATED')

  // A client stream over the body limit: the answer ends the upload too.
  const md = new grpc.Metadata()
  md.set('x-case', 'small')
  const chat = client.chat(md)
  chat.on('error', () => {})
  chat.resume()
  const status = new Promise<grpc.StatusObject>((resolve) => { chat.on('status', resolve) })
  chat.write(Buffer.alloc(4096))
  t.equal((await status).code, grpc.status.RESOURCE_EXHAUSTED, 'a 413: RESOURCE_EXHAUSTED')

  t.equal(await metric(proxy.adminUrl, 'outrider_requests_total', { route: 'down', status_class: '5xx' }), 1, 'counted as the 502 it stands for')
  t.equal(await metric(proxy.adminUrl, 'outrider_requests_total', { route: 'slow', status_class: '5xx' }), 1)

  // gRPC-Web over HTTP/1.1: the status in the head of an empty 200.
  const plain = await startTestProxy({
    clusters: [{ name: 'down', endpoints: [{ url: 'http://127.0.0.1:1' }] }],
    routes: [{ name: 'down', match: { pathPrefix: '/' }, cluster: 'down' }],
  }, t)
  const web = await fetch(`${plain.url}/test.Echo/Say`, { method: 'POST', body: 'x', headers: { 'content-type': 'application/grpc-web+proto' } })
  t.equal(web.status, 200)
  t.equal(web.headers.get('content-type'), 'application/grpc-web+proto')
  t.equal(web.headers.get('grpc-status'), String(grpc.status.UNAVAILABLE))
  t.equal(await web.text(), '')
  // Anything else still gets a problem.
  const json = await fetch(`${plain.url}/x`, { method: 'POST', body: 'x', headers: { 'content-type': 'application/json' } })
  t.equal(json.status, 502)
  t.equal(json.headers.get('content-type'), 'application/problem+json')
  await json.text()
})

t.test('grpc-message is percent-encoded as gRPC over HTTP/2 says', async (t) => {
  const { grpcMessage } = await import('../../src/http/problem.ts')
  t.equal(grpcMessage('plain text, (ok)'), 'plain text, (ok)')
  t.equal(grpcMessage('100% done\nnext'), '100%25 done%0Anext')
  t.equal(grpcMessage('Zoë'), 'Zo%C3%AB', 'UTF-8 bytes')
})
