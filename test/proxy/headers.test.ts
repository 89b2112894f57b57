import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.ts'
import { startTestProxy, simpleDoc } from '../helpers/proxy.ts'
import { rawRequest, startScriptedUpstream } from '../helpers/raw-http.ts'

/**
 * Header handling on both hops: hop-by-hop fields (RFC 9110 §7.6.1) stay on
 * their hop, forwarding fields and Via (§7.6.3) are added, the request id is
 * kept or made, and repeated fields keep their multiplicity (§5.3).
 */

const H = 'Host: x.test\r\n'

/** Values of `name` in a raw header list, in order. */
function values (raw: string[] | Array<[string, string]>, name: string): string[] {
  const out: string[] = []
  if (raw.length > 0 && Array.isArray(raw[0])) {
    for (const [k, v] of raw as Array<[string, string]>) if (k.toLowerCase() === name) out.push(v)
    return out
  }
  const flat = raw as string[]
  for (let i = 0; i < flat.length; i += 2) if ((flat[i] as string).toLowerCase() === name) out.push(flat[i + 1] as string)
  return out
}

/** Resolves once `done()` holds after some data, or when the socket closes (the caller's assertions then fail). */
async function until (socket: net.Socket, done: () => boolean): Promise<void> {
  if (done()) return
  await new Promise<void>((resolve) => {
    const check = (): void => { if (done()) { socket.off('data', check); resolve() } }
    socket.on('data', check)
    socket.once('close', () => { resolve() })
  })
}

t.test('hop-by-hop request fields are not forwarded', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  const result = await rawRequest(proxy.port, `POST /h HTTP/1.1\r\n${H}` +
    'Connection: keep-alive, X-Secret, X-Other\r\n' +
    'Keep-Alive: timeout=5, max=1000\r\n' +
    'TE: trailers, deflate\r\n' +
    'Upgrade: foo/2\r\n' +
    'Proxy-Connection: keep-alive\r\n' +
    'Proxy-Authorization: Basic Zm9vOmJhcg==\r\n' +
    'X-Secret: s\r\nX-Other: o\r\nX-Kept: k\r\n' +
    'Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n')
  t.equal(result.responses[0]?.status, 200)
  const raw = up.seen[0]?.rawHeaders ?? []
  for (const name of ['keep-alive', 'te', 'upgrade', 'proxy-connection', 'proxy-authorization', 'x-secret', 'x-other', 'trailer']) {
    t.same(values(raw, name), [], `${name} not forwarded`)
  }
  // undici manages its own connection: at most its own keep-alive token.
  for (const v of values(raw, 'connection')) t.notMatch(v, /x-secret|x-other|upgrade/i, 'client Connection tokens not forwarded')
  t.same(values(raw, 'x-kept'), ['k'])
  t.notOk(values(raw, 'transfer-encoding').length > 0 && values(raw, 'content-length').length > 0, 'one framing')
  const body = JSON.parse(result.responses[0]?.body.toString() ?? '{}') as { body: string }
  t.equal(body.body, 'hello')
})

t.test('hop-by-hop response fields are not forwarded', async (t) => {
  const body = 'ok'
  const up = await startScriptedUpstream(() => 'HTTP/1.1 200 OK\r\n' +
    'Connection: X-Hop, keep-alive\r\n' +
    'Keep-Alive: timeout=7, max=3\r\n' +
    'Proxy-Connection: keep-alive\r\n' +
    'Proxy-Authenticate: Basic realm="upstream"\r\n' +
    'Upgrade: foo/2\r\n' +
    'TE: trailers\r\n' +
    'X-Hop: secret\r\n' +
    'X-Kept: k\r\n' +
    `Content-Length: ${body.length}\r\n\r\n${body}`)
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  const result = await rawRequest(proxy.port, `GET /h HTTP/1.1\r\n${H}\r\n`)
  const r = result.responses[0]
  t.equal(r?.status, 200)
  t.equal(r?.body.toString(), 'ok')
  const raw = r?.rawHeaders ?? []
  for (const name of ['proxy-connection', 'proxy-authenticate', 'upgrade', 'te', 'x-hop']) {
    t.same(values(raw, name), [], `${name} not forwarded`)
  }
  // The proxy's own hop may say keep-alive; the upstream's parameters must not leak.
  t.same(values(raw, 'keep-alive').filter((v) => v.includes('timeout=7')), [], 'the upstream\'s Keep-Alive is not forwarded')
  t.same(values(raw, 'connection').filter((v) => /x-hop/i.test(v)), [], 'the upstream\'s Connection is not forwarded')
  t.same(values(raw, 'x-kept'), ['k'])
})

t.test('the upstream closing its connection does not close the client\'s', async (t) => {
  const up = await startScriptedUpstream(() => 'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok')
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  const result = await rawRequest(proxy.port, `GET /1 HTTP/1.1\r\n${H}\r\nGET /2 HTTP/1.1\r\n${H}\r\n`, { expect: 2 })
  t.equal(result.responses.length, 2, 'both answered on one client connection')
  t.not(result.responses[0]?.headers.connection, 'close')
  t.notOk(result.closed)
})

t.test('X-Forwarded-* and Via on the request', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)

  await (await request(`${proxy.url}/f`, {
    headers: [
      'x-forwarded-for', '203.0.113.7',
      'x-forwarded-for', '198.51.100.1, 10.0.0.2',
      'x-forwarded-proto', 'https',
      'x-forwarded-host', 'spoofed.test',
      'via', '1.1 edge-cdn',
      'host', 'api.example.test:8443',
      'forwarded', 'for=6.6.6.6;proto=https;host=evil.example',
      'x-forwarded-port', '443',
      'x-forwarded-prefix', '/evil',
      'x-real-ip', '6.6.6.6',
    ],
  })).body.dump()
  const h = up.seen[0]?.rawHeaders ?? []
  t.same(values(h, 'x-forwarded-for'), ['203.0.113.7, 198.51.100.1, 10.0.0.2, 127.0.0.1'], 'client address appended to the existing chain, as one field')
  t.same(values(h, 'x-forwarded-proto'), ['http'], 'the scheme the client used with us, not its claim')
  t.same(values(h, 'x-forwarded-host'), ['api.example.test:8443'], 'the Host the client sent us')
  t.same(values(h, 'via'), ['1.1 edge-cdn, 1.1 outrider'], 'Via appended (RFC 9110 §7.6.3)')
  t.same(values(h, 'host'), ['api.example.test:8443'], 'Host preserved')
  t.same(['forwarded', 'x-forwarded-port', 'x-forwarded-prefix', 'x-real-ip'].flatMap((n) => values(h, n)), [], 'the same claims in other spellings are dropped')

  // An HTTP/1.0 client gets `1.0` in Via: the protocol of the hop it came on.
  await rawRequest(proxy.port, `GET /f HTTP/1.0\r\n${H}\r\n`)
  t.same(values(up.seen[1]?.rawHeaders ?? [], 'via'), ['1.0 outrider'])
  t.same(values(up.seen[1]?.rawHeaders ?? [], 'x-forwarded-for'), ['127.0.0.1'], 'a fresh chain when the client sent none')
})

t.test('Via on the response', async (t) => {
  const up = await startUpstream((_req, res) => {
    res.setHeader('via', ['1.1 origin-cache', '1.0 legacy'])
    res.end('ok')
  })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  const result = await rawRequest(proxy.port, `GET /v HTTP/1.1\r\n${H}\r\n`)
  t.same(values(result.responses[0]?.rawHeaders ?? [], 'via'), ['1.1 origin-cache, 1.0 legacy, 1.1 outrider'])

  const up2 = await startUpstream((_req, res) => { res.end('ok') })
  t.teardown(up2.close)
  const proxy2 = await startTestProxy(simpleDoc(up2.url), t)
  const r2 = await rawRequest(proxy2.port, `GET /v HTTP/1.1\r\n${H}\r\n`)
  t.same(values(r2.responses[0]?.rawHeaders ?? [], 'via'), ['1.1 outrider'])
})

t.test('x-request-id: kept when valid, made when absent or invalid', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

  const cases: Array<[string, string | undefined, boolean]> = [
    ['valid', 'req-42_abc.DEF:1', true],
    ['absent', undefined, false],
    ['with a space', 'a b', false],
    ['too long', 'x'.repeat(201), false],
    ['longest allowed', 'y'.repeat(200), true],
    ['empty', '', false],
    ['non-ASCII', 'caf\xe9', false],
  ]
  for (const [name, sent, kept] of cases) {
    up.seen.length = 0
    const head = sent === undefined ? '' : `X-Request-Id: ${sent}\r\n`
    const result = await rawRequest(proxy.port, Buffer.from(`GET /r HTTP/1.1\r\n${H}${head}\r\n`, 'latin1'))
    const upstreamId = values(up.seen[0]?.rawHeaders ?? [], 'x-request-id')
    t.equal(upstreamId.length, 1, `${name}: exactly one id upstream`)
    if (kept) t.equal(upstreamId[0], sent, `${name}: kept`)
    else t.match(upstreamId[0], UUID, `${name}: replaced by a generated UUID`)
    t.same(values(result.responses[0]?.rawHeaders ?? [], 'x-request-id'), upstreamId, `${name}: echoed to the client`)
  }

  // Two ids: neither is trusted.
  up.seen.length = 0
  await rawRequest(proxy.port, `GET /r HTTP/1.1\r\n${H}X-Request-Id: a\r\nX-Request-Id: b\r\n\r\n`)
  const ids = values(up.seen[0]?.rawHeaders ?? [], 'x-request-id')
  t.equal(ids.length, 1)
  t.match(ids[0], UUID, 'repeated ids: a generated one')
})

t.test('an upstream\'s own x-request-id on the response is kept', async (t) => {
  const up = await startUpstream((_req, res) => { res.setHeader('x-request-id', 'upstream-id'); res.end() })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  const res = await request(`${proxy.url}/r`)
  await res.body.dump()
  t.equal(res.headers['x-request-id'], 'upstream-id')
})

t.test('repeated fields keep their multiplicity', async (t) => {
  const up = await startUpstream((req, res) => {
    res.setHeader('set-cookie', [
      'a=1; Path=/; HttpOnly',
      'b=2; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Secure',
      'c=3',
    ])
    res.setHeader('x-multi', ['one', 'two'])
    res.end(JSON.stringify(req.rawHeaders))
  })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  const result = await rawRequest(proxy.port, `GET /m HTTP/1.1\r\n${H}X-A: 1\r\nX-B: z\r\nX-A: 2\r\nAccept: text/html\r\nAccept: application/json\r\n\r\n`)
  const r = result.responses[0]
  const upstreamRaw = JSON.parse(r?.body.toString() ?? '[]') as string[]
  t.same(values(upstreamRaw, 'x-a'), ['1', '2'], 'two x-a field lines upstream, in order')
  t.same(values(upstreamRaw, 'accept'), ['text/html', 'application/json'])
  t.same(values(r?.rawHeaders ?? [], 'set-cookie'), [
    'a=1; Path=/; HttpOnly',
    'b=2; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Secure',
    'c=3',
  ], 'each Set-Cookie on its own line, never folded (RFC 6265 §3)')
  const multi = values(r?.rawHeaders ?? [], 'x-multi')
  t.same(multi.join(', '), 'one, two', 'other repeated response fields keep their values in order')
})

t.test('Expect: 100-continue works end to end', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  const socket = net.connect(proxy.port, '127.0.0.1')
  t.teardown(() => { socket.destroy() })
  await once(socket, 'connect')
  let buf = ''
  socket.on('data', (c: Buffer) => { buf += c.toString('latin1') })
  socket.write(`POST /e HTTP/1.1\r\n${H}Content-Length: 5\r\nExpect: 100-continue\r\n\r\n`)
  // The client waits for the interim response before it sends the body (RFC 9110 §10.1.1).
  await until(socket, () => buf.includes('\r\n\r\n'))
  t.match(buf, /^HTTP\/1\.1 100 Continue\r\n/, 'an interim 100 first')
  const interim = buf.slice(0, buf.indexOf('\r\n\r\n') + 4)
  buf = buf.slice(interim.length)
  socket.write('hello')
  await until(socket, () => /\r\n\r\n[\s\S]*"body":"hello"/.test(buf))
  t.match(buf, /^HTTP\/1\.1 200 OK\r\n/, 'then the final response')
  const echoed = JSON.parse(buf.slice(buf.indexOf('\r\n\r\n') + 4)) as { body: string, headers: Record<string, string> }
  t.equal(echoed.body, 'hello', 'the body reached the upstream')
  t.equal(echoed.headers.expect, undefined, 'Expect is not relayed: the proxy answered it on its hop')

  // And with node's client, which waits for the 100 before sending the body.
  const req = http.request(`${proxy.url}/e`, { method: 'PUT', headers: { expect: '100-continue', 'content-length': '5' } })
  let continued = false
  req.on('continue', () => { continued = true; req.end('world') })
  const [res] = await once(req, 'response') as [http.IncomingMessage]
  let text = ''
  for await (const c of res) text += (c as Buffer).toString()
  t.ok(continued, 'node\'s client got its 100 Continue')
  t.equal((JSON.parse(text) as { body: string }).body, 'world')
})

t.test('Expect: 100-continue is not answered with 100 when the body is not wanted', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy({
    clusters: [{ name: 'up', endpoints: [{ url: up.url }] }],
    routes: [{ name: 'api', match: { pathPrefix: '/api' }, cluster: 'up', maxBodySize: 100 }],
  }, t)

  // Too large for the route: a 413 instead of an invitation to upload 1 MB.
  const big = await rawRequest(proxy.port, `POST /api/x HTTP/1.1\r\n${H}Content-Length: 1048576\r\nExpect: 100-continue\r\n\r\n`)
  t.equal(big.responses[0]?.status, 413, 'final status first')
  t.notMatch(big.responses.map((r) => r.status).join(','), /100/, 'no 100 Continue')
  t.ok(big.closed, 'and the connection closed: the body was never read')

  // No route: the same, and the body bytes that may follow are not read as a request.
  const none = await rawRequest(proxy.port, [`POST /nowhere HTTP/1.1\r\n${H}Content-Length: 38\r\nExpect: 100-continue\r\n\r\n`, `GET /api/smuggled HTTP/1.1\r\n${H}\r\n`], { gapMs: 50 })
  t.equal(none.responses[0]?.status, 404)
  t.equal(none.responses[0]?.headers.connection, 'close')
  t.ok(none.closed)
  t.equal(up.seen.length, 0, 'nothing reached the upstream')

  // Forwarded: 100 first, then the upstream's answer, and the connection stays usable.
  const ok = await rawRequest(proxy.port, [`POST /api/x HTTP/1.1\r\n${H}Content-Length: 2\r\nExpect: 100-continue\r\n\r\n`, 'hi', `GET /api/y HTTP/1.1\r\n${H}\r\n`], { gapMs: 100, expect: 2 })
  t.same(ok.responses.map((r) => r.status), [200, 200], 'both answered (the interim 100 is skipped by the reader)')
  t.notOk(ok.closed, 'keep-alive restored once 100 was sent')
  t.equal((JSON.parse(ok.responses[0]?.body.toString() ?? '{}') as { body: string }).body, 'hi')
})

t.test('103 Early Hints are relayed ahead of the final response', async (t) => {
  const up = await startUpstream((_req, res) => {
    res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style', 'x-hint': '1' })
    setTimeout(() => { res.end('final') }, 20)
  })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)

  /** Everything the proxy sends back for one request, until the final body. */
  async function exchange (version: string): Promise<string> {
    const socket = net.connect(proxy.port, '127.0.0.1')
    t.teardown(() => { socket.destroy() })
    await once(socket, 'connect')
    let buf = ''
    socket.on('data', (c: Buffer) => { buf += c.toString('latin1') })
    socket.write(`GET /hints HTTP/${version}\r\n${H}\r\n`)
    await until(socket, () => buf.endsWith('final'))
    return buf
  }

  const buf = await exchange('1.1')
  t.match(buf, /^HTTP\/1\.1 103 Early Hints\r\n/, 'the interim response comes first')
  t.match(buf, /\r\nLink: <\/style\.css>; rel=preload; as=style\r\n/i)
  t.match(buf, /\r\n\r\nHTTP\/1\.1 200 OK\r\n/, 'then the final response')
  t.equal(buf.match(/^HTTP\/1\.1 200/gm)?.length, 1, 'exactly one final response')

  // Not to an HTTP/1.0 client (RFC 9110 §15.2).
  t.match(await exchange('1.0'), /^HTTP\/1\.1 200 OK\r\n/)
})

t.test('fields with underscores are dropped (CGI would read them as their dashed twins)', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  const res = await request(proxy.url, { headers: { x_forwarded_for: '6.6.6.6', transfer_encoding: 'chunked', 'x-ok': '1' } })
  const body = await res.body.json() as { headers: Record<string, string> }
  t.equal(body.headers.x_forwarded_for, undefined)
  t.equal(body.headers.transfer_encoding, undefined)
  t.equal(body.headers['x-ok'], '1')
})
