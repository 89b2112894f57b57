import t from 'tap'
import { once } from 'node:events'
import net from 'node:net'
import { mkdtemp, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { startTestProxy, simpleDoc } from '../helpers/proxy.ts'
import { startWsEcho } from '../helpers/ws-echo.ts'
import { rawRequest } from '../helpers/raw-http.ts'
import { startOtlpReceiver, SPAN_KIND, STATUS_CODE, type OtlpReceiver } from '../helpers/otlp-receiver.ts'
import { flushAccessLogs } from '../../src/access-log.ts'

/**
 * WebSocket upgrades (RFC 6455, RFC 9110 §7.8) are routed like any request,
 * then relayed as a tunnel. The client is Node's global WebSocket (undici's).
 */

const H = 'Host: x.test\r\n'

/** Opens a WebSocket and resolves once it is open (or rejects on error/close). */
async function open (url: string): Promise<WebSocket> {
  const ws = new WebSocket(url)
  ws.binaryType = 'arraybuffer'
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => { resolve() }, { once: true })
    ws.addEventListener('error', () => { reject(new Error('websocket error')) }, { once: true })
  })
  return ws
}

const HANDSHAKE = `GET /ws HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: websocket\r\n` +
  'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'

/** An upstream that takes connections and the handshake, and never answers; `connections` resolve as they come. */
async function hungUpstream (t: { teardown (fn: () => unknown): void }): Promise<{ url: string, next: () => Promise<net.Socket> }> {
  const waiting: Array<(s: net.Socket) => void> = []
  const arrived: net.Socket[] = []
  const server = net.createServer((s) => {
    s.resume()
    const w = waiting.shift()
    if (w !== undefined) w(s); else arrived.push(s)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.close() })
  const next = (): Promise<net.Socket> => {
    const s = arrived.shift()
    return s !== undefined ? Promise.resolve(s) : new Promise((resolve) => { waiting.push(resolve) })
  }
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, next }
}

/** The access-log file's records once at least `atLeast` were written (asynchronous destination: polled). */
async function accessLines (file: string, atLeast: number): Promise<Array<Record<string, unknown>>> {
  let recs: Array<Record<string, unknown>> = []
  for (let i = 0; i < 100 && recs.length < atLeast; i++) {
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, 20))
    flushAccessLogs()
    const text = await readFile(file, 'utf8').catch(() => '')
    recs = text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>)
  }
  return recs
}

async function receiver (t: { teardown (fn: () => unknown): void }): Promise<OtlpReceiver> {
  const r = await startOtlpReceiver()
  t.teardown(r.close)
  return r
}

/** The next message on `ws`. */
async function next (ws: WebSocket): Promise<string | ArrayBuffer> {
  // Both listeners go once either fires: a close listener per message would pile up.
  const done = new AbortController()
  return await new Promise((resolve, reject) => {
    ws.addEventListener('message', (e) => { done.abort(); resolve(e.data as string | ArrayBuffer) }, { signal: done.signal })
    ws.addEventListener('close', () => { done.abort(); reject(new Error('closed before a message')) }, { signal: done.signal })
  })
}

t.test('echo through the proxy: text, binary, large and many messages', async (t) => {
  const echo = await startWsEcho()
  t.teardown(echo.close)
  const proxy = await startTestProxy(simpleDoc(`http://127.0.0.1:${echo.port}`), t)

  const ws = await open(`ws://127.0.0.1:${proxy.port}/chat/../socket?room=1`)
  t.teardown(() => { ws.close() })
  ws.send('hello')
  t.equal(await next(ws), 'hello', 'text echoed')

  ws.send(new Uint8Array([0, 1, 2, 255]))
  const bin = await next(ws)
  t.same([...new Uint8Array(bin as ArrayBuffer)], [0, 1, 2, 255], 'binary echoed')

  const big = 'x'.repeat(200_000) // a 64-bit payload length (RFC 6455 §5.2)
  ws.send(big)
  t.equal((await next(ws) as string).length, big.length, 'a 200 kB message echoed whole')

  const got: string[] = []
  const all = new Promise<void>((resolve) => {
    ws.addEventListener('message', function onMessage (e) {
      got.push(e.data as string)
      if (got.length === 50) { ws.removeEventListener('message', onMessage); resolve() }
    })
  })
  for (let i = 0; i < 50; i++) ws.send(`m${i}`)
  await all
  t.same(got, Array.from({ length: 50 }, (_, i) => `m${i}`), 'fifty messages, in order')

  const closed = new Promise<CloseEvent>((resolve) => { ws.addEventListener('close', (e) => { resolve(e) }, { once: true }) })
  ws.close(1000, 'done')
  const ev = await closed
  t.equal(ev.code, 1000, 'clean close handshake through the tunnel')

  const u = echo.upgrades[0]
  t.equal(u?.url, '/socket?room=1', 'the path was normalised before routing and relaying')
  t.equal(u?.headers['x-forwarded-for'], '127.0.0.1', 'X-Forwarded-For on the upgrade')
  t.equal(u?.headers.upgrade?.toLowerCase(), 'websocket')
})

t.test('the upgrade request gets the same header policy as any request', async (t) => {
  const echo = await startWsEcho()
  t.teardown(echo.close)
  const proxy = await startTestProxy(simpleDoc(`http://127.0.0.1:${echo.port}`), t)
  const r = await rawRequest(proxy.port, `GET /ws HTTP/1.1\r\n${H}Connection: Upgrade, X-Secret\r\nUpgrade: websocket\r\n` +
    'X-Secret: s\r\nProxy-Authorization: Basic Zm9v\r\nKeep-Alive: timeout=5\r\nX-Forwarded-For: 10.1.1.1\r\nX-Forwarded-Proto: https\r\n' +
    'Via: 1.1 edge\r\nX-Request-Id: ws-1\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n', { expect: 1 })
  t.equal(r.responses[0]?.status, 101)
  t.equal(r.responses[0]?.headers['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=', 'RFC 6455 §1.3 example key')
  const h = echo.upgrades[0]?.headers ?? {}
  t.equal(h['x-secret'], undefined, 'a field named in Connection is dropped')
  t.equal(h['proxy-authorization'], undefined)
  t.equal(h['keep-alive'], undefined)
  t.equal(h['x-forwarded-for'], '10.1.1.1, 127.0.0.1')
  t.equal(h['x-forwarded-proto'], 'http')
  t.equal(h['x-forwarded-host'], 'x.test')
  t.equal(h.via, '1.1 edge, 1.1 outrider')
  t.equal(h['x-request-id'], 'ws-1')
  t.equal(h.host, 'x.test')
  t.match(h.connection, /upgrade/i)
  t.equal(h['sec-websocket-key'], 'dGhlIHNhbXBsZSBub25jZQ==')
})

t.test('no route for the upgrade → 404 and no tunnel', async (t) => {
  const echo = await startWsEcho()
  t.teardown(echo.close)
  const proxy = await startTestProxy({
    clusters: [{ name: 'ws', endpoints: [{ url: `http://127.0.0.1:${echo.port}` }] }],
    routes: [{ name: 'ws', match: { pathPrefix: '/ws' }, cluster: 'ws' }],
  }, t)
  const r = await rawRequest(proxy.port, `GET /other HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: websocket\r\n` +
    'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
  t.equal(r.responses[0]?.status, 404)
  t.equal(r.responses[0]?.headers.connection, 'close')
  t.ok(r.closed)
  t.equal(echo.upgrades.length, 0, 'nothing reached the upstream')

  await t.rejects(open(`ws://127.0.0.1:${proxy.port}/other`), 'the client sees the handshake fail')
})

t.test('an upgrade with a bad request head is refused', async (t) => {
  const echo = await startWsEcho()
  t.teardown(echo.close)
  const proxy = await startTestProxy(simpleDoc(`http://127.0.0.1:${echo.port}`), t)
  const r = await rawRequest(proxy.port, `GET /ws HTTP/1.1\r\n${H}Host: evil.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
    'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
  t.equal(r.responses[0]?.status, 400, 'two Host headers')
  t.ok(r.closed)
  t.equal(echo.upgrades.length, 0)
})

t.test('upstream down → the handshake fails, the proxy survives', async (t) => {
  const s = net.createServer()
  s.listen(0, '127.0.0.1')
  await once(s, 'listening')
  const port = (s.address() as net.AddressInfo).port
  s.close()
  const proxy = await startTestProxy(simpleDoc(`http://127.0.0.1:${port}`), t)
  await t.rejects(open(`ws://127.0.0.1:${proxy.port}/ws`))
  const h = await rawRequest(proxy.port, HANDSHAKE)
  t.equal(h.responses[0]?.status, 502, 'the handshake is answered with a problem')
  t.match(JSON.parse(h.responses[0]?.body.toString() ?? '{}'), { code: 'UPSTREAM_CONNECT_FAILED' })
  const r = await rawRequest(proxy.port, `GET /plain HTTP/1.1\r\n${H}\r\n`)
  t.equal(r.responses[0]?.status, 502, 'ordinary requests still answered')
})

t.test('an upstream that never answers the handshake: 504 after the cluster\'s request timeout, the upstream request closed, counted and logged', async (t) => {
  const up = await hungUpstream(t)
  const file = path.join(await mkdtemp(path.join(tmpdir(), 'outrider-ws-')), 'access.log')
  const otlp = await receiver(t)
  const proxy = await startTestProxy({ ...simpleDoc(up.url, {}, { timeouts: { request: '300ms' } }), accessLog: { destination: file }, tracing: { endpoint: otlp.url, exportDelay: 20 } }, t)
  const [r, upstream] = await Promise.all([rawRequest(proxy.port, HANDSHAKE), up.next()])
  t.equal(r.responses[0]?.status, 504)
  t.match(JSON.parse(r.responses[0]?.body.toString() ?? '{}'), { code: 'UPSTREAM_TIMEOUT' })
  t.ok(r.closed)
  if (!upstream.destroyed) await once(upstream, 'close')
  t.pass('the upstream connection was closed')
  const metrics = await proxy.metrics.registry.metrics()
  t.match(metrics, /^outrider_requests_total\{route="all",method="GET",status_class="5xx"\} 1$/m)
  t.match(metrics, /^outrider_upstream_errors_total\{cluster="up",code="UPSTREAM_TIMEOUT"\} 1$/m)
  t.match((await accessLines(file, 1))[0], { route: 'all', status: 504, error: 'UPSTREAM_TIMEOUT' })
  const spans = await otlp.waitForSpans(2)
  t.match(spans.find((s) => s.kind === SPAN_KIND.SERVER), { attributes: { 'http.response.status_code': 504, 'outrider.error.code': 'UPSTREAM_TIMEOUT' }, status: { code: STATUS_CODE.ERROR } })
  t.match(spans.find((s) => s.kind === SPAN_KIND.CLIENT), { attributes: { 'error.type': 'UPSTREAM_TIMEOUT', 'outrider.error.phase': 'headers' } })
})

t.test('a client that leaves before the upstream answers the handshake takes the upstream request with it (499)', async (t) => {
  const up = await hungUpstream(t)
  const file = path.join(await mkdtemp(path.join(tmpdir(), 'outrider-ws-')), 'access.log')
  const otlp = await receiver(t)
  const proxy = await startTestProxy({ ...simpleDoc(up.url, {}, { timeouts: { request: '1h' } }), accessLog: { destination: file }, tracing: { endpoint: otlp.url, exportDelay: 20 } }, t)
  const client = net.connect(proxy.port, '127.0.0.1')
  client.on('error', () => {})
  client.write(HANDSHAKE)
  const upstream = await up.next()
  // The handshake is with the upstream before the client goes.
  if (upstream.bytesRead === 0) await once(upstream, 'data')
  client.destroy()
  if (!upstream.destroyed) await once(upstream, 'close')
  t.pass('the upstream connection was closed')
  t.match((await accessLines(file, 1))[0], { route: 'all', status: 499, error: 'CLIENT_CLOSED' })
  t.match(await proxy.metrics.registry.metrics(), /^outrider_requests_total\{route="all",method="GET",status_class="4xx"\} 1$/m)
  const spans = await otlp.waitForSpans(2)
  t.match(spans.find((s) => s.kind === SPAN_KIND.SERVER), { attributes: { 'outrider.client_closed': true } })
  t.match(spans.find((s) => s.kind === SPAN_KIND.CLIENT), { attributes: { 'outrider.attempt.cancelled': 'client_closed' } })
})

t.test('open tunnels are closed on shutdown', async (t) => {
  const echo = await startWsEcho()
  t.teardown(echo.close)
  const proxy = await startTestProxy(simpleDoc(`http://127.0.0.1:${echo.port}`))
  const ws = await open(`ws://127.0.0.1:${proxy.port}/ws`)
  const closed = new Promise<void>((resolve) => { ws.addEventListener('close', () => { resolve() }, { once: true }) })
  await proxy.shutdown(200)
  await closed
  t.equal(ws.readyState, WebSocket.CLOSED)
})

t.test('tunnels are counted per route: open now, and bytes each way when they close', async (t) => {
  const echo = await startWsEcho()
  t.teardown(echo.close)
  const proxy = await startTestProxy(simpleDoc(`http://127.0.0.1:${echo.port}`), t)
  const metric = async (name: string, labels: string): Promise<number | undefined> => {
    const m = new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm').exec(await proxy.metrics.registry.metrics())
    return m === null ? undefined : Number(m[1])
  }
  const ws = await open(`ws://127.0.0.1:${proxy.port}/socket`)
  t.equal(await metric('outrider_tunnels_open', 'route="all"'), 1, 'one tunnel open')
  const payload = new Uint8Array(100_000).fill(7)
  ws.send(payload)
  const back = await next(ws)
  t.equal((back as ArrayBuffer).byteLength, payload.length, 'echoed whole')
  const closed = once(ws as unknown as EventTarget, 'close')
  ws.close()
  await closed
  // The proxy's side of the tunnel closes just after the client's.
  for (let i = 0; i < 100 && (await metric('outrider_tunnels_open', 'route="all"')) !== 0; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(await metric('outrider_tunnels_open', 'route="all"'), 0, 'none open after close')
  const fromClient = await metric('outrider_tunnel_bytes_total', 'route="all",direction="from_client"') ?? 0
  const toClient = await metric('outrider_tunnel_bytes_total', 'route="all",direction="to_client"') ?? 0
  // A frame adds a few bytes of header (and 4 of mask from the client); the
  // handshake request is not counted, the upstream's 101 head is.
  t.ok(fromClient >= payload.length && fromClient < payload.length + 200, `from_client ${fromClient}: the message, framed`)
  t.ok(toClient >= payload.length && toClient < payload.length + 600, `to_client ${toClient}: the echo, framed, and the 101 head`)
})

t.test('a tunnel with no byte moving for limits.tunnelIdleTimeout is closed, both sides; traffic keeps it open', async (t) => {
  const echo = await startWsEcho()
  t.teardown(echo.close)
  const proxy = await startTestProxy({ ...simpleDoc(`http://127.0.0.1:${echo.port}`), limits: { tunnelIdleTimeout: '1s' } }, t)

  const ws = await open(`ws://127.0.0.1:${proxy.port}/chat`)
  let closedAt = 0
  const closed = new Promise<void>((resolve) => { ws.addEventListener('close', () => { closedAt = performance.now(); resolve() }, { once: true }) })
  // Busy for one and a half idle periods: a message every 100 ms resets the
  // clock (a 1 s timeout, so a busy machine's pauses do not look quiet).
  for (let i = 0; i < 15; i++) {
    ws.send(`m${i}`)
    t.equal(await next(ws), `m${i}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.equal(closedAt, 0, 'a tunnel with traffic stays open past the idle timeout')
  const [upstream] = echo.sockets
  t.ok(upstream !== undefined && !upstream.readableEnded, 'its upstream connection is open')

  const quietFrom = performance.now()
  await closed
  t.ok(closedAt - quietFrom >= 500, `closed once quiet for the timeout (after ${Math.round(closedAt - quietFrom)} ms)`)
  // The upstream's side goes too, not just the client's (the echo server
  // keeps its half open, so what it sees is the proxy's FIN).
  for (let i = 0; i < 100 && upstream?.readableEnded !== true; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(upstream?.readableEnded, true, 'the upstream connection was closed as well')
})
