import t from 'tap'
import { startTestProxy, simpleDoc } from '../helpers/proxy.ts'
import { startWsEcho } from '../helpers/ws-echo.ts'
import { rawRequest } from '../helpers/raw-http.ts'
import { hashApiKey } from '../../plugins/api-key/plugin.ts'

/**
 * A WebSocket handshake goes through the route's request phase like any
 * request: plugins decide whether the tunnel opens, and what they change in
 * the request is what the upstream's handshake carries.
 */

const KEY = 'ws_5c1f8a2e9d7b4063b1e4f0a9c8d2e7f1'
const handshake = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: x.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
  `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${extra}\r\n`

t.test('api-key: no key → 401 and no tunnel; a valid key → 101, the id forwarded, the key not', async (t) => {
  const echo = await startWsEcho()
  t.teardown(echo.close)
  const proxy = await startTestProxy(simpleDoc(`http://127.0.0.1:${echo.port}`, {
    plugins: [
      { name: 'api-key', config: { keys: [{ id: 'chat-client', hash: hashApiKey(KEY), scopes: [] }], forwardId: 'x-consumer-id' } },
      { name: 'headers', config: { request: { set: { 'x-via-plugin': 'yes' } } } },
    ],
  }), t)

  const denied = await rawRequest(proxy.port, handshake('/chat'))
  const r = denied.responses[0]
  t.equal(r?.status, 401, 'refused in the handshake')
  t.match(r?.headers['www-authenticate'], /outrider/, 'with the challenge')
  t.equal(r?.headers['content-type'], 'application/problem+json')
  t.match(r?.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'and the request id')
  t.match(JSON.parse(r?.body.toString() ?? '{}'), { status: 401, code: 'UNAUTHORIZED' })
  t.ok(denied.closed, 'the connection is closed')
  t.equal(echo.upgrades.length, 0, 'nothing reached the upstream')

  const ok = await rawRequest(proxy.port, handshake('/chat?room=2', `X-Api-Key: ${KEY}\r\n`), { expect: 1 })
  t.equal(ok.responses[0]?.status, 101, 'the tunnel opens')
  const seen = echo.upgrades[0]?.headers ?? {}
  t.equal(seen['x-consumer-id'], 'chat-client', 'the upstream learns who it is')
  t.equal(seen['x-api-key'], undefined, 'not the credential')
  t.equal(seen['x-via-plugin'], 'yes', 'later plugins ran too')
  t.equal(echo.upgrades[0]?.url, '/chat?room=2')
})

t.test('the echo works end to end with a key, from a WebSocket client', async (t) => {
  const echo = await startWsEcho()
  t.teardown(echo.close)
  const proxy = await startTestProxy(simpleDoc(`http://127.0.0.1:${echo.port}`, {
    plugins: [{ name: 'api-key', config: { keyFrom: { from: 'query', name: 'key' }, keys: [{ id: 'c', hash: hashApiKey(KEY), scopes: [] }] } }],
  }), t)
  const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/socket?key=${KEY}`)
  t.teardown(() => { ws.close() })
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => { resolve() }, { once: true })
    ws.addEventListener('error', () => { reject(new Error('handshake failed')) }, { once: true })
  })
  const reply = new Promise<unknown>((resolve) => { ws.addEventListener('message', (e) => { resolve(e.data) }, { once: true }) })
  ws.send('ping through auth')
  t.equal(await reply, 'ping through auth')
  const bad = new WebSocket(`ws://127.0.0.1:${proxy.port}/socket?key=wrong`)
  await t.resolves(new Promise<void>((resolve) => { bad.addEventListener('error', () => { resolve() }, { once: true }) }), 'a wrong key fails the handshake')
})

t.test('rate-limit counts handshakes: over the limit → 429 with Retry-After, no tunnel', async (t) => {
  const echo = await startWsEcho()
  t.teardown(echo.close)
  const proxy = await startTestProxy(simpleDoc(`http://127.0.0.1:${echo.port}`, {
    plugins: [{ name: 'rate-limit', config: { limits: [{ points: 1, duration: '1m' }] } }],
  }), t)
  const first = await rawRequest(proxy.port, handshake('/live'), { expect: 1 })
  t.equal(first.responses[0]?.status, 101)
  const second = await rawRequest(proxy.port, handshake('/live'))
  t.equal(second.responses[0]?.status, 429)
  t.ok(Number(second.responses[0]?.headers['retry-after']) > 0, 'Retry-After says when to try again')
  t.ok(second.closed)
  t.equal(echo.upgrades.length, 1, 'only the first handshake reached the upstream')
  const metrics = await fetch(`${proxy.adminUrl}/metrics`).then(async (r) => await r.text())
  t.match(metrics, /outrider_requests_total\{route="all",method="GET",status_class="4xx"\} 1/, 'the refusal is counted on its route')
  t.match(metrics, /outrider_requests_total\{route="all",method="GET",status_class="1xx"\} 1/, 'and the tunnel too')
})

t.test('cache: a stored GET for the same URL never answers a handshake', async (t) => {
  const http = await import('node:http')
  let upgrades = 0
  const server = http.createServer((_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': '6' }).end('stored') })
  server.on('upgrade', (_req, socket) => {
    upgrades++
    socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const port = (server.address() as { port: number }).port
  const proxy = await startTestProxy(simpleDoc(`http://127.0.0.1:${port}`, { plugins: [{ name: 'cache', config: {} }] }), t)
  for (let i = 0; i < 2; i++) {
    const r = await rawRequest(proxy.port, 'GET /feed HTTP/1.1\r\nHost: x.test\r\n\r\n', { expect: 1 })
    t.equal(r.responses[0]?.body.toString(), 'stored')
    if (i === 1) t.equal(r.responses[0]?.headers['x-cache'], 'HIT', 'stored and served from the cache')
  }
  const hs = await rawRequest(proxy.port, handshake('/feed'), { expect: 1 })
  t.equal(hs.responses[0]?.status, 101, 'the handshake reached the upstream')
  t.equal(upgrades, 1)
})

t.test('a header value node will not send → 500 for that handshake, the proxy keeps serving', async (t) => {
  const echo = await startWsEcho()
  t.teardown(echo.close)
  const proxy = await startTestProxy(simpleDoc(`http://127.0.0.1:${echo.port}`, {
    plugins: [{ name: 'api-key', config: { keys: [{ id: 'Zoë ☃', hash: hashApiKey(KEY), scopes: [] }], forwardId: 'x-consumer-id' } }],
  }), t)
  const r = await rawRequest(proxy.port, handshake('/chat', `X-Api-Key: ${KEY}\r\n`))
  t.equal(r.responses[0]?.status, 500, 'refused here, not thrown inside the relay')
  t.ok(r.closed)
  t.equal(echo.upgrades.length, 0)
  const again = await rawRequest(proxy.port, handshake('/chat'))
  t.equal(again.responses[0]?.status, 401, 'the next handshake is served as usual')
})

t.test('the route\'s path rewrite applies to the handshake; an upstream that refuses it is counted as such', async (t) => {
  const echo = await startWsEcho()
  t.teardown(echo.close)
  const proxy = await startTestProxy({
    clusters: [{ name: 'ws', endpoints: [{ url: `http://127.0.0.1:${echo.port}` }] }],
    routes: [{ name: 'ws', match: { pathPrefix: '/public/ws' }, rewrite: { pathPrefix: '/internal' }, cluster: 'ws' }],
  }, t)
  const ok = await rawRequest(proxy.port, handshake('/public/ws/room?x=1'), { expect: 1 })
  t.equal(ok.responses[0]?.status, 101)
  t.equal(echo.upgrades[0]?.url, '/internal/room?x=1')
  // No Sec-WebSocket-Key: the echo server answers 400 instead of switching.
  const bad = await rawRequest(proxy.port, 'GET /public/ws/x HTTP/1.1\r\nHost: x.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n')
  t.equal(bad.responses[0]?.status, 400, 'the upstream\'s refusal reaches the client')
  const metrics = await fetch(`${proxy.adminUrl}/metrics`).then(async (r) => await r.text())
  t.match(metrics, /outrider_requests_total\{route="ws",method="GET",status_class="1xx"\} 1/)
  t.match(metrics, /outrider_requests_total\{route="ws",method="GET",status_class="4xx"\} 1/, 'counted by what the upstream answered')
  // Only the switched handshake became a tunnel (rawRequest half-closed it;
  // it stays until the upstream ends its side), and the refusal added nothing.
  t.match(metrics, /^outrider_tunnels_open\{route="ws"\} 1$/m, 'one tunnel open: the refusal never opened one')
  await echo.close()
  let after = metrics
  for (let i = 0; i < 100 && !/^outrider_tunnels_open\{route="ws"\} 0$/m.test(after); i++) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    after = await fetch(`${proxy.adminUrl}/metrics`).then(async (r) => await r.text())
  }
  t.match(after, /^outrider_tunnels_open\{route="ws"\} 0$/m, 'none open once the upstream ended it')
  const tunnelBytes = Number(/^outrider_tunnel_bytes_total\{route="ws",direction="to_client"\} (\d+)$/m.exec(after)?.[1])
  t.ok(tunnelBytes > 0 && tunnelBytes < 180, `to_client ${tunnelBytes}: the one tunnel's 101 head (~130 bytes), not the refusal (~70 more)`)
})
