import t from 'tap'
import { readFile } from 'node:fs/promises'
import { Agent, request } from 'undici'
import { startUpstream } from '../helpers/upstream.ts'
import { startTestProxy, simpleDoc } from '../helpers/proxy.ts'
import { hasOpenssl, makePki, startMtlsServer } from '../helpers/certs.ts'

t.test('TLS termination', async (t) => {
  if (!await hasOpenssl()) { t.plan(0, 'openssl is not installed: no certificates to test with'); return }
  const pki = await makePki()
  const ca = await readFile(pki.caCert)
  const up = await startUpstream()
  t.teardown(up.close)
  const doc = { ...simpleDoc(up.url), listen: { host: '127.0.0.1', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey } } }
  const proxy = await startTestProxy(doc, t)
  const agent = new Agent({ connect: { ca } })
  t.teardown(() => agent.close())
  const res = await request(`https://localhost:${proxy.port}/x`, { dispatcher: agent })
  t.equal(res.statusCode, 200)
  const body = await res.body.json() as { headers: Record<string, string> }
  t.equal(body.headers['x-forwarded-proto'], 'https', 'the upstream learns the client used https')

  await t.rejects(request(`https://localhost:${proxy.port}/x`, { dispatcher: new Agent({ connect: { rejectUnauthorized: true } }) }), Error, 'an untrusted certificate is refused by a strict client')

  // A reload re-reads the files (a renewed certificate needs no restart).
  const pki2 = await makePki()
  await proxy.reload({ ...doc, listen: { ...doc.listen, tls: { cert: pki2.serverCert, key: pki2.serverKey } } })
  const ca2 = await readFile(pki2.caCert)
  const agent2 = new Agent({ connect: { ca: ca2 } })
  t.teardown(() => agent2.close())
  t.equal((await request(`https://localhost:${proxy.port}/x`, { dispatcher: agent2 })).statusCode, 200, 'new handshakes use the new certificate')

  await t.rejects(proxy.reload({ ...doc, listen: { ...doc.listen, tls: { cert: '/nonexistent.pem', key: pki.serverKey } } }), /listen\.tls\.cert/, 'a missing certificate file keeps the old config')
})

t.test('mTLS: clients need a certificate from the configured CA', async (t) => {
  if (!await hasOpenssl()) { t.plan(0, 'openssl is not installed'); return }
  const pki = await makePki()
  const ca = await readFile(pki.caCert)
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy({ ...simpleDoc(up.url), listen: { host: '127.0.0.1', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey, clientCa: pki.caCert } } }, t)
  const withCert = new Agent({ connect: { ca, cert: await readFile(pki.clientCert), key: await readFile(pki.clientKey) } })
  const without = new Agent({ connect: { ca } })
  t.teardown(() => Promise.all([withCert.close(), without.close()]))
  t.equal((await request(`https://localhost:${proxy.port}/`, { dispatcher: withCert })).statusCode, 200)
  await t.rejects(request(`https://localhost:${proxy.port}/`, { dispatcher: without }), Error, 'no client certificate, no connection')
})

t.test('upstream TLS: a CA bundle and a client certificate (mTLS to the endpoint)', async (t) => {
  if (!await hasOpenssl()) { t.plan(0, 'openssl is not installed'); return }
  const pki = await makePki()
  const { port } = await startMtlsServer(t, pki, (req, res) => { res.end(`hello ${(req.socket as import('node:tls').TLSSocket).getPeerCertificate().subject.CN}`) })
  const upstream = `https://localhost:${port}`

  const mtls = await startTestProxy(simpleDoc(upstream, {}, { tls: { ca: pki.caCert, cert: pki.clientCert, key: pki.clientKey } }), t)
  const ok = await request(mtls.url)
  t.equal(ok.statusCode, 200)
  t.equal(await ok.body.text(), 'hello test-client', 'the endpoint saw our client certificate')

  const noCert = await startTestProxy(simpleDoc(upstream, {}, { tls: { ca: pki.caCert } }), t)
  const refused = await request(noCert.url)
  t.equal(refused.statusCode, 502, 'the endpoint refuses a proxy without a client certificate')
  await refused.body.dump()

  const untrusted = await startTestProxy(simpleDoc(upstream, {}, { tls: { cert: pki.clientCert, key: pki.clientKey } }), t)
  const bad = await request(untrusted.url)
  t.equal(bad.statusCode, 502, 'an endpoint certificate outside the trusted CAs is refused')
  t.match(await bad.body.json(), { code: 'UPSTREAM_CONNECT_FAILED', phase: 'connect' }, 'a failed handshake is a connect failure (retriable)')
})

t.test('HTTP/2 by ALPN, HTTP/1.1 on the same port', async (t) => {
  if (!await hasOpenssl()) { t.plan(0, 'openssl is not installed'); return }
  const http2 = await import('node:http2')
  const pki = await makePki()
  const ca = await readFile(pki.caCert)
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy({ ...simpleDoc(up.url), listen: { host: '127.0.0.1', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey } } }, t)
  const session = http2.connect(`https://localhost:${proxy.port}`, { ca })
  t.teardown(() => { session.destroy() })
  const h2 = (headers: Record<string, string>, body?: string): Promise<{ status: number, headers: Record<string, unknown>, body: string }> => new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === undefined })
    let text = ''
    let head: Record<string, unknown> = {}
    stream.setEncoding('utf8')
    stream.on('response', (h) => { head = h })
    stream.on('data', (c: string) => { text += c })
    stream.on('end', () => { resolve({ status: head[':status'] as number, headers: head, body: text }) })
    stream.on('error', reject)
    if (body !== undefined) stream.end(body)
  })
  const get = await h2({ ':path': '/h2?x=1', ':method': 'GET', cookie: 'a=1', 'x-custom': 'yes' })
  t.equal(get.status, 200)
  const seen = JSON.parse(get.body) as { method: string, url: string, headers: Record<string, string> }
  t.equal(seen.url, '/h2?x=1')
  t.equal(seen.headers.host, `localhost:${proxy.port}`, ':authority becomes Host')
  t.equal(seen.headers['x-forwarded-proto'], 'https')
  t.equal(seen.headers['x-custom'], 'yes')
  t.match(seen.headers.via, /^2\.0 outrider/, 'Via names the protocol the client spoke')
  t.equal(get.headers.connection, undefined, 'no connection-specific field in an HTTP/2 response')

  const post = await h2({ ':path': '/upload', ':method': 'POST', 'content-type': 'text/plain' }, 'hello over h2')
  t.equal((JSON.parse(post.body) as { body: string }).body, 'hello over h2', 'the body streams to an HTTP/1.1 upstream')

  const missing = await h2({ ':path': '/nope', ':method': 'GET' })
  t.equal(missing.status, 200, 'catch-all route')

  const agent = new Agent({ connect: { ca } })
  t.teardown(() => agent.close())
  const h1 = await request(`https://localhost:${proxy.port}/h1`, { dispatcher: agent })
  t.equal(h1.statusCode, 200, 'HTTP/1.1 clients still served')
  await h1.body.dump()
})

t.test('active health checks reach https endpoints with the cluster\'s CA bundle and client certificate', async (t) => {
  if (!await hasOpenssl()) { t.plan(0, 'openssl is not installed'); return }
  const pki = await makePki()
  const { port } = await startMtlsServer(t, pki, (_req, res) => { res.end('ok') })
  const proxy = await startTestProxy(simpleDoc(`https://localhost:${port}`, {}, {
    tls: { ca: pki.caCert, cert: pki.clientCert, key: pki.clientKey },
    healthCheck: { path: '/', interval: 50, timeout: 1000, jitter: 0 },
  }), t)
  let check: { state?: string, last?: string } | undefined
  for (let i = 0; i < 100; i++) {
    const body = await (await request(`${proxy.adminUrl}/clusters`)).body.json() as { clusters: Array<{ endpoints: Array<{ activeCheck?: { state?: string, last?: string } }> }> }
    check = body.clusters[0]?.endpoints[0]?.activeCheck
    if (check?.state === 'healthy') break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.equal(check?.state, 'healthy', `probes pass over mTLS (last: ${check?.last ?? 'none'})`)
})

t.test('WebSocket to an https endpoint uses the cluster\'s CA bundle and client certificate', async (t) => {
  if (!await hasOpenssl()) { t.plan(0, 'openssl is not installed'); return }
  const { startWsEcho } = await import('../helpers/ws-echo.ts')
  const { rawRequest } = await import('../helpers/raw-http.ts')
  const pki = await makePki()
  const echo = await startWsEcho({
    cert: await readFile(pki.serverCert),
    key: await readFile(pki.serverKey),
    ca: await readFile(pki.caCert),
    requestCert: true,
    rejectUnauthorized: true,
  })
  t.teardown(echo.close)
  const proxy = await startTestProxy(simpleDoc(`https://localhost:${echo.port}`, {}, { tls: { ca: pki.caCert, cert: pki.clientCert, key: pki.clientKey } }), t)
  const r = await rawRequest(proxy.port, 'GET /ws HTTP/1.1\r\nHost: x.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
    'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n', { expect: 1 })
  t.equal(r.responses[0]?.status, 101, 'the tunnel opens over mTLS to the endpoint')
  t.equal(echo.upgrades.length, 1)
})
