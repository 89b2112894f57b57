import t from 'tap'
import http from 'node:http'
import http2 from 'node:http2'
import net from 'node:net'
import tls from 'node:tls'
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import { startTestProxy, simpleDoc } from '../helpers/proxy.ts'
import { hasOpenssl, makePki } from '../helpers/certs.ts'

/**
 * What one client may hold. limits.streamIdleTimeout: a client that stops
 * reading the response, or stops sending its body, is cut once nothing has
 * moved for that long, and the upstream request is cancelled with it (no
 * orphaned upstream work, no connection held forever).
 * limits.maxConcurrentStreams: how many HTTP/2 streams one connection may
 * open. Outcomes are asserted, never durations.
 */

const IDLE = { streamIdleTimeout: '300ms' }

/** An upstream that streams 64 KiB chunks, respecting backpressure, until the proxy goes away; `ended` says how. */
async function endlessUpstream (t: { teardown (fn: () => unknown): void }): Promise<Upstream & { ended: Promise<'finished' | 'cut'> }> {
  let report: (how: 'finished' | 'cut') => void = () => {}
  const ended = new Promise<'finished' | 'cut'>((resolve) => { report = resolve })
  const chunk = Buffer.alloc(64 * 1024, 'x')
  const up = await startUpstream((req, res) => {
    if (req.url === '/small') { res.end('ok'); return }
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    res.on('close', () => { report(res.writableFinished ? 'finished' : 'cut') })
    const pump = (): void => {
      while (!res.destroyed) if (!res.write(chunk)) { res.once('drain', pump); return }
    }
    pump()
  })
  t.teardown(up.close)
  return Object.assign(up, { ended })
}

/** An upstream that waits for a request body; `ended` says whether it ever completed. */
async function waitingUpstream (t: { teardown (fn: () => unknown): void }): Promise<Upstream & { ended: Promise<'complete' | 'cut'> }> {
  let report: (how: 'complete' | 'cut') => void = () => {}
  const ended = new Promise<'complete' | 'cut'>((resolve) => { report = resolve })
  const up = await startUpstream((req, res) => {
    req.resume()
    req.on('end', () => { report('complete'); res.end('ok') })
    req.on('close', () => { if (!req.complete) report('cut') })
  })
  t.teardown(up.close)
  return Object.assign(up, { ended })
}

/** A raw client connection to `port` whose errors (the proxy cutting it) are expected. */
async function connect (port: number): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  await once(socket, 'connect')
  return socket
}

/** A paused socket sees no FIN or reset: read what is buffered, then the close. */
async function closedByProxy (socket: net.Socket): Promise<void> {
  const closed = once(socket, 'close')
  socket.resume()
  await closed
}

/**
 * A small request answered in full, a moment of keep-alive quiet, then a big
 * one that is never read: the second exchange on the connection.
 */
async function firstThenBig (socket: net.Socket): Promise<void> {
  socket.setEncoding('latin1')
  socket.write('GET /small HTTP/1.1\r\nHost: x.test\r\n\r\n')
  let got = ''
  while (!got.endsWith('\r\n\r\nok')) got += (await once(socket, 'data'))[0] as string
  await new Promise((resolve) => setTimeout(resolve, 50))
  socket.write('GET /big HTTP/1.1\r\nHost: x.test\r\n\r\n')
  socket.pause()
}

t.test('HTTP/1.1: a client that stops reading the response is cut, and so is the upstream response', async (t) => {
  const up = await endlessUpstream(t)
  const proxy = await startTestProxy({ ...simpleDoc(up.url), limits: IDLE }, t)
  const socket = await connect(proxy.port)
  socket.write('GET /big HTTP/1.1\r\nHost: x.test\r\n\r\n')
  socket.pause() // and never read
  t.equal(await up.ended, 'cut', 'the upstream response was cancelled, not left streaming')
  await closedByProxy(socket)
  t.pass('the proxy closed the stalled connection')
})

t.test('HTTP/1.1: the second request on a keep-alive connection is held to it too', async (t) => {
  const up = await endlessUpstream(t)
  const proxy = await startTestProxy({ ...simpleDoc(up.url), limits: IDLE }, t)
  const socket = await connect(proxy.port)
  await firstThenBig(socket)
  t.equal(await up.ended, 'cut', 'the upstream response was cancelled')
  await closedByProxy(socket)
})

t.test('HTTP/1.1: a client that stops sending its body is cut, and so is the upstream request', async (t) => {
  const up = await waitingUpstream(t)
  const proxy = await startTestProxy({ ...simpleDoc(up.url), limits: IDLE }, t)
  const socket = net.connect(proxy.port, '127.0.0.1')
  socket.on('error', () => {})
  socket.resume()
  await once(socket, 'connect')
  socket.write('POST /upload HTTP/1.1\r\nHost: x.test\r\nContent-Length: 1000\r\n\r\nonly ten b')
  await once(socket, 'close')
  t.pass('the proxy closed the stalled connection')
  t.equal(await up.ended, 'cut', 'the upstream never got a complete body and its request was cancelled')
})

t.test('HTTP/1.1: a response that trickles for longer than the timeout, never quiet that long, is not cut; the connection serves the next one', async (t) => {
  const up = await startUpstream((_req, res) => {
    // Trickles for longer than the idle timeout, but never goes quiet for that long.
    // A byte every 100 ms against a 1 s timeout: a busy machine's pauses are
    // not mistaken for a quiet stream.
    let n = 0
    res.writeHead(200)
    const tick = setInterval(() => { res.write('.'); if (++n === 14) { clearInterval(tick); res.end() } }, 100)
    res.on('close', () => { clearInterval(tick) })
  })
  t.teardown(up.close)
  const proxy = await startTestProxy({ ...simpleDoc(up.url), limits: { streamIdleTimeout: '1s' } }, t)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => { agent.destroy() })
  for (let i = 0; i < 2; i++) {
    const body = await new Promise<string>((resolve, reject) => {
      http.get(`${proxy.url}/trickle`, { agent }, (res) => {
        let b = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => { b += c })
        res.on('end', () => { resolve(b) })
        res.on('error', reject)
      }).on('error', reject)
    })
    t.equal(body, '.'.repeat(14), `response ${i + 1} arrived whole`)
  }
})

t.test('HTTP/2: a stalled stream is reset and the upstream request cancelled; the session goes on', async (t) => {
  const up = await waitingUpstream(t)
  const proxy = await startTestProxy({ ...simpleDoc(up.url), listen: { host: '127.0.0.1', port: 0, h2c: true }, limits: IDLE }, t)
  const session = http2.connect(`http://127.0.0.1:${proxy.port}`)
  t.teardown(() => { session.destroy() })
  const stalled = session.request({ ':method': 'POST', ':path': '/upload', 'content-length': '1000' })
  stalled.on('error', () => {})
  stalled.write('only ten b') // and never more
  await once(stalled, 'close')
  t.not(stalled.rstCode, http2.constants.NGHTTP2_NO_ERROR, 'the stream was reset')
  t.equal(await up.ended, 'cut', 'the upstream request was cancelled')

  const next = session.request({ ':method': 'POST', ':path': '/again' })
  next.end('done')
  const [headers] = await once(next, 'response') as [http2.IncomingHttpHeaders]
  next.resume()
  t.equal(headers[':status'], 200, 'the same session still serves')
})

t.test('TLS with HTTP/2 by ALPN: HTTP/1.1 connections on that port get the timeout too', async (t) => {
  if (!await hasOpenssl()) { t.plan(0, 'openssl is not installed: no certificates to test with'); return }
  const pki = await makePki()
  const up = await endlessUpstream(t)
  const proxy = await startTestProxy({ ...simpleDoc(up.url), listen: { host: '127.0.0.1', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey, http2: true } }, limits: IDLE }, t)
  const socket = tls.connect({ port: proxy.port, host: '127.0.0.1', servername: 'localhost', ca: await readFile(pki.caCert), ALPNProtocols: ['http/1.1'] })
  socket.on('error', () => {})
  await once(socket, 'secureConnect')
  t.equal(socket.alpnProtocol, 'http/1.1')
  // The second request on the connection: node re-arms socket timeouts per request.
  await firstThenBig(socket)
  t.equal(await up.ended, 'cut', 'the upstream response was cancelled')
  await closedByProxy(socket)
})

t.test('TLS with HTTP/2 by ALPN: HTTP/1.1 connections on that port are held to headersTimeout as promptly as elsewhere (408)', async (t) => {
  if (!await hasOpenssl()) { t.plan(0, 'openssl is not installed: no certificates to test with'); return }
  const pki = await makePki()
  const up = await startUpstream((_req, res) => { res.end('ok') })
  t.teardown(up.close)
  const proxy = await startTestProxy({ ...simpleDoc(up.url), listen: { host: '127.0.0.1', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey, http2: true } }, limits: { headersTimeout: '300ms', keepAliveTimeout: '3s' } }, t)
  const ca = await readFile(pki.caCert)
  const open = async (): Promise<tls.TLSSocket> => {
    const socket = tls.connect({ port: proxy.port, host: '127.0.0.1', servername: 'localhost', ca, ALPNProtocols: ['http/1.1'] })
    socket.on('error', () => {})
    await once(socket, 'secureConnect')
    t.equal(socket.alpnProtocol, 'http/1.1')
    socket.setEncoding('latin1')
    return socket
  }
  // The clock: a connection left idle after a request, which node closes
  // after keepAliveTimeout on its own timer. node looks for expired heads
  // only every 30 s unless told otherwise: the slow head's 408 would come
  // long after it.
  const idle = await open()
  idle.write('GET /a HTTP/1.1\r\nHost: x.test\r\n\r\n')
  let answer = ''
  while (!answer.endsWith('\r\n\r\nok')) answer += (await once(idle, 'data'))[0] as string
  const slow = await open()
  let got = ''
  slow.on('data', (d: string) => { got += d })
  slow.write('GET /b HTTP/1.1\r\nHost: x.test\r\n') // and never the rest
  const first = await Promise.race([once(slow, 'close').then(() => 'slow head'), once(idle, 'close').then(() => 'idle connection')])
  t.equal(first, 'slow head', 'the slow head is cut before an idle connection times out')
  t.match(got, /^HTTP\/1\.1 408 /)
  slow.destroy()
  idle.destroy()
  t.equal(up.seen.length, 1)
})

t.test('a reload changes the timeout for new connections', async (t) => {
  const up = await endlessUpstream(t)
  const doc = simpleDoc(up.url)
  const proxy = await startTestProxy({ ...doc, limits: { streamIdleTimeout: 0 } }, t)
  await proxy.reload({ ...doc, limits: IDLE })
  const socket = await connect(proxy.port)
  socket.write('GET /big HTTP/1.1\r\nHost: x.test\r\n\r\n')
  socket.pause()
  t.equal(await up.ended, 'cut')
  await closedByProxy(socket)
})

t.test('HTTP/2: the listener announces how many streams a connection may open, and a reload changes it for new connections', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const doc = { ...simpleDoc(up.url), listen: { host: '127.0.0.1', port: 0, h2c: true } }
  const proxy = await startTestProxy(doc, t)
  const announced = async (): Promise<number | undefined> => {
    const session = http2.connect(`http://127.0.0.1:${proxy.port}`)
    try {
      await once(session, 'remoteSettings')
      return session.remoteSettings.maxConcurrentStreams
    } finally {
      session.destroy()
    }
  }
  t.equal(await announced(), 250, 'the default, not node\'s 2^32-1')
  await proxy.reload({ ...doc, limits: { maxConcurrentStreams: 8 } })
  t.equal(await announced(), 8, 'after a reload')
})

/** requests_total for the route `all` and `status_class`, as scraped. */
async function answered (proxy: { metrics: { registry: { metrics (): Promise<string> } } }, statusClass: string): Promise<number> {
  const m = new RegExp(`^outrider_requests_total\\{route="all",method="GET",status_class="${statusClass}"\\} (\\S+)$`, 'm').exec(await proxy.metrics.registry.metrics())
  return m === null ? 0 : Number(m[1])
}

t.test('HTTP/2: a stream reset while the upstream thinks cancels the upstream request and is counted as the client leaving', async (t) => {
  for (const how of ['idle timeout', 'client cancel'] as const) {
    let report: (how: 'answered' | 'cut') => void = () => {}
    const ended = new Promise<'answered' | 'cut'>((resolve) => { report = resolve })
    const up = await startUpstream((_req, res) => {
      const timer = setTimeout(() => { res.end('late') }, 2_000)
      res.on('close', () => { clearTimeout(timer); report(res.writableFinished ? 'answered' : 'cut') })
    })
    t.teardown(up.close)
    const proxy = await startTestProxy({ ...simpleDoc(up.url), listen: { host: '127.0.0.1', port: 0, h2c: true }, limits: how === 'idle timeout' ? IDLE : {} }, t)
    const session = http2.connect(`http://127.0.0.1:${proxy.port}`)
    t.teardown(() => { session.destroy() })
    const stream = session.request({ ':method': 'GET', ':path': '/slow' })
    stream.on('error', () => {})
    stream.end()
    if (how === 'client cancel') setTimeout(() => { stream.close(http2.constants.NGHTTP2_CANCEL) }, 100)
    await once(stream, 'close')
    t.equal(stream.rstCode, http2.constants.NGHTTP2_CANCEL, `${how}: the stream was reset`)
    t.equal(await ended, 'cut', `${how}: the upstream request was cancelled, not waited for`)
    t.equal(await answered(proxy, '4xx'), 1, `${how}: counted as the client leaving (499)`)
    t.equal(await answered(proxy, '2xx'), 0, `${how}: not as an answer`)
  }
})

/** Two routes to an upstream that answers, goes quiet for 700 ms, then ends: /slow has its own streamIdle. */
async function quietDoc (t: { teardown (fn: () => unknown): void }, slowIdle: string | number, listen?: Record<string, unknown>): Promise<Record<string, unknown>> {
  const up = await startUpstream((_req, res) => {
    res.writeHead(200)
    res.write('a')
    const timer = setTimeout(() => { res.end('b') }, 700)
    res.on('close', () => { clearTimeout(timer) })
  })
  t.teardown(up.close)
  return {
    ...(listen === undefined ? {} : { listen }),
    limits: IDLE,
    clusters: [{ name: 'up', endpoints: [{ url: up.url }] }],
    routes: [
      { name: 'slow', match: { pathPrefix: '/slow' }, cluster: 'up', timeouts: { streamIdle: slowIdle } },
      { name: 'fast', match: { pathPrefix: '/' }, cluster: 'up' },
    ],
  }
}

t.test('HTTP/1.1: a route\'s timeouts.streamIdle replaces the listener\'s for its requests; the next request on the connection is back on the listener\'s', async (t) => {
  const proxy = await startTestProxy(await quietDoc(t, '5s'), t)
  const socket = await connect(proxy.port)
  socket.setEncoding('latin1')
  let got = ''
  socket.on('data', (c: string) => { got += c })
  socket.write('GET /slow/feed HTTP/1.1\r\nHost: x.test\r\n\r\n')
  while (!got.endsWith('\r\n0\r\n\r\n')) await once(socket, 'data')
  t.match(got, /^HTTP\/1\.1 200 [^]*\r\n1\r\na\r\n1\r\nb\r\n0\r\n\r\n$/, 'quiet for longer than limits.streamIdleTimeout, the /slow response arrived whole')
  got = ''
  socket.write('GET /other HTTP/1.1\r\nHost: x.test\r\n\r\n')
  await once(socket, 'close')
  t.match(got, /^HTTP\/1\.1 200 /, 'the next request started')
  t.notMatch(got, /\r\n0\r\n\r\n$/, 'and was cut when it went quiet: the connection is on the listener\'s timeout again')
})

t.test('HTTP/2: a route\'s timeouts.streamIdle (0: none) holds its streams; other streams keep the listener\'s', async (t) => {
  const proxy = await startTestProxy(await quietDoc(t, 0, { host: '127.0.0.1', port: 0, h2c: true }), t)
  const session = http2.connect(`http://127.0.0.1:${proxy.port}`)
  t.teardown(() => { session.destroy() })
  const get = async (path: string): Promise<{ body: string, rstCode: number | undefined }> => {
    const s = session.request({ ':path': path })
    s.on('error', () => {})
    let body = ''
    s.setEncoding('utf8')
    s.on('data', (c: string) => { body += c })
    await once(s, 'close')
    return { body, rstCode: s.rstCode }
  }
  const [slow, fast] = await Promise.all([get('/slow/watch'), get('/other')])
  t.equal(slow.body, 'ab', 'the /slow stream, quiet for longer than limits.streamIdleTimeout, completed')
  t.equal(slow.rstCode, http2.constants.NGHTTP2_NO_ERROR)
  t.equal(fast.body, 'a', 'the other stream got its first byte only')
  t.not(fast.rstCode, http2.constants.NGHTTP2_NO_ERROR, 'and was reset when it went quiet')
})
