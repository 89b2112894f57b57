import t from 'tap'
import type http from 'node:http'
import { request } from 'undici'
import { startUpstream, type Upstream } from '../../test/helpers/upstream.ts'
import { startTestProxy, simpleDoc, type TestProxy } from '../../test/helpers/proxy.ts'
import { startWsEcho } from '../../test/helpers/ws-echo.ts'
import { rawRequest } from '../../test/helpers/raw-http.ts'

/** A backend with its own (too permissive) CORS opinion and a Vary of its own. */
const permissive: http.RequestListener = (req, res) => {
  const body = JSON.stringify({ method: req.method, headers: req.headers })
  res.writeHead(200, {
    'content-type': 'application/json',
    vary: 'Accept-Encoding',
    'access-control-allow-origin': '*',
    'access-control-allow-credentials': 'true',
    'x-total-count': '42',
  })
  res.end(body)
}

async function setup (t: { teardown (fn: () => unknown): void }, config: Record<string, unknown>, handler?: http.RequestListener, extra: unknown[] = []): Promise<{ up: Upstream, proxy: TestProxy }> {
  const up = await startUpstream(handler)
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url, { plugins: [{ name: 'cors', config }, ...extra] }), t)
  return { up, proxy }
}

async function preflight (proxy: TestProxy, headers: Record<string, string>): Promise<{ status: number, headers: Record<string, string | string[] | undefined> }> {
  const res = await request(`${proxy.url}/api/items`, { method: 'OPTIONS', headers })
  await res.body.dump()
  return { status: res.statusCode, headers: res.headers }
}

const APP = 'https://app.example.com'
const policy = {
  allowOrigins: [APP, 'https://*.example.org'],
  allowMethods: ['GET', 'POST', 'PUT', 'DELETE'],
  allowHeaders: ['Authorization', 'Content-Type'],
  exposeHeaders: ['X-Total-Count', 'X-Request-Id'],
  maxAge: 600,
}

t.test('answers an allowed preflight at the proxy', async (t) => {
  const { up, proxy } = await setup(t, policy)
  const res = await preflight(proxy, { origin: APP, 'access-control-request-method': 'PUT', 'access-control-request-headers': 'authorization,content-type' })
  t.equal(res.status, 204)
  t.equal(res.headers['access-control-allow-origin'], APP)
  t.equal(res.headers['access-control-allow-methods'], 'GET, POST, PUT, DELETE')
  t.equal(res.headers['access-control-allow-headers'], 'authorization, content-type')
  t.equal(res.headers['access-control-max-age'], '600')
  t.equal(res.headers.vary, 'Origin')
  t.equal(res.headers['access-control-allow-credentials'], undefined)
  t.equal(res.headers['access-control-expose-headers'], undefined, 'exposure belongs on actual responses')
  t.equal(res.headers['content-length'], undefined, 'no Content-Length on a 204 (RFC 9110 §8.6)')
  t.equal(up.seen.length, 0, 'never forwarded')
})

t.test('answers a disallowed preflight without CORS headers', async (t) => {
  const { up, proxy } = await setup(t, policy)
  for (const origin of ['https://evil.example', 'https://example.org', 'http://app.example.com', 'null']) {
    const res = await preflight(proxy, { origin, 'access-control-request-method': 'GET' })
    t.equal(res.status, 204, origin)
    t.equal(res.headers['access-control-allow-origin'], undefined, origin)
    t.equal(res.headers['access-control-allow-methods'], undefined, origin)
    t.equal(res.headers.vary, 'Origin', origin)
  }
  t.equal(up.seen.length, 0)
})

t.test('leaves method and header checks to the browser, which names what is missing', async (t) => {
  const { up, proxy } = await setup(t, policy)
  const res = await preflight(proxy, { origin: APP, 'access-control-request-method': 'PATCH', 'access-control-request-headers': 'x-custom' })
  t.equal(res.status, 204)
  t.equal(res.headers['access-control-allow-origin'], APP)
  t.equal(res.headers['access-control-allow-methods'], 'GET, POST, PUT, DELETE', 'PATCH is absent: the browser fails the preflight')
  t.equal(res.headers['access-control-allow-headers'], 'authorization, content-type')
  t.equal(up.seen.length, 0)
})

t.test('with credentials, echoes the origin and the requested method and headers for *', async (t) => {
  const { up, proxy } = await setup(t, { allowOrigins: [APP], allowCredentials: true, allowMethods: ['*'], allowHeaders: ['*'] })
  const res = await preflight(proxy, { origin: APP, 'access-control-request-method': 'PATCH', 'access-control-request-headers': 'authorization,x-custom' })
  t.equal(res.status, 204)
  t.equal(res.headers['access-control-allow-origin'], APP, 'never * with credentials')
  t.equal(res.headers['access-control-allow-credentials'], 'true')
  t.equal(res.headers['access-control-allow-methods'], 'PATCH', 'not a literal *')
  t.equal(res.headers['access-control-allow-headers'], 'authorization,x-custom', 'covers Authorization, which * never does')
  t.equal(res.headers.vary, 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers')
  t.equal(res.headers['access-control-max-age'], undefined, 'no maxAge configured')
  const bare = await preflight(proxy, { origin: APP, 'access-control-request-method': 'GET' })
  t.equal(bare.headers['access-control-allow-headers'], undefined, 'nothing requested, nothing echoed')
  t.equal(up.seen.length, 0)
})

t.test('answers Private Network Access preflights when allowed', async (t) => {
  const on = await setup(t, { allowOrigins: [APP], allowPrivateNetwork: true })
  const res = await preflight(on.proxy, { origin: APP, 'access-control-request-method': 'GET', 'access-control-request-private-network': 'true' })
  t.equal(res.headers['access-control-allow-private-network'], 'true')
  t.equal(res.headers.vary, 'Origin, Access-Control-Request-Private-Network')
  const plain = await preflight(on.proxy, { origin: APP, 'access-control-request-method': 'GET' })
  t.equal(plain.headers['access-control-allow-private-network'], undefined, 'only when asked')

  const off = await setup(t, { allowOrigins: [APP] })
  const res2 = await preflight(off.proxy, { origin: APP, 'access-control-request-method': 'GET', 'access-control-request-private-network': 'true' })
  t.equal(res2.headers['access-control-allow-private-network'], undefined)
})

t.test('adds the allow headers to an allowed actual request and merges Vary', async (t) => {
  const { up, proxy } = await setup(t, { ...policy, allowCredentials: true }, permissive)
  const res = await request(`${proxy.url}/api/items`, { headers: { origin: APP, cookie: 'session=1' } })
  t.equal(res.statusCode, 200)
  const body = await res.body.json() as { headers: Record<string, string> }
  t.equal(res.headers['access-control-allow-origin'], APP, 'the upstream\'s * is replaced by the echoed origin')
  t.equal(res.headers['access-control-allow-credentials'], 'true')
  t.equal(res.headers['access-control-expose-headers'], 'x-total-count, x-request-id')
  t.equal(res.headers.vary, 'Accept-Encoding, Origin')
  t.equal(res.headers['x-total-count'], '42')
  t.equal(body.headers.origin, APP, 'the request goes upstream untouched')
  t.equal(body.headers.cookie, 'session=1')
  t.equal(up.seen.length, 1)
})

t.test('a disallowed origin gets no CORS headers, whatever the upstream sent', async (t) => {
  const { up, proxy } = await setup(t, policy, permissive)
  const res = await request(`${proxy.url}/api/items`, { headers: { origin: 'https://evil.example' } })
  t.equal(res.statusCode, 200, 'forwarded: the browser, not the proxy, withholds the response')
  await res.body.dump()
  t.equal(res.headers['access-control-allow-origin'], undefined)
  t.equal(res.headers['access-control-allow-credentials'], undefined)
  t.equal(res.headers['access-control-expose-headers'], undefined)
  t.equal(res.headers.vary, 'Accept-Encoding, Origin')
  t.equal(up.seen.length, 1)
})

t.test('matches wildcard subdomain patterns', async (t) => {
  const { proxy } = await setup(t, policy)
  for (const [origin, allowed] of [
    ['https://a.example.org', true],
    ['https://deep.sub.example.org', true],
    ['https://example.org', false],
    ['http://a.example.org', false],
    ['https://a.example.org.evil.example', false],
  ] as const) {
    const res = await request(`${proxy.url}/x`, { headers: { origin } })
    await res.body.dump()
    t.equal(res.headers['access-control-allow-origin'], allowed ? origin : undefined, origin)
  }
})

t.test('a request without Origin gets no CORS headers, only Vary: Origin', async (t) => {
  const { up, proxy } = await setup(t, policy, permissive)
  const res = await request(`${proxy.url}/api/items`)
  const body = await res.body.json() as { headers: Record<string, string> }
  t.equal(res.statusCode, 200)
  t.equal(res.headers['access-control-allow-origin'], undefined)
  t.equal(res.headers['access-control-expose-headers'], undefined)
  // Fetch §3.2.5: a cache must not serve this response to a CORS request.
  t.equal(res.headers.vary, 'Accept-Encoding, Origin')
  t.equal(body.headers.origin, undefined)
  t.equal(Object.keys(body.headers).some((k) => k.startsWith('access-control-')), false, 'the request is untouched')
  t.equal(up.seen.length, 1)
})

t.test('a * policy answers * on every response and varies on nothing', async (t) => {
  const { proxy } = await setup(t, { exposeHeaders: ['x-total-count'] })
  for (const headers of [{ origin: 'https://anyone.example' }, {}] as Array<Record<string, string>>) {
    const res = await request(`${proxy.url}/x`, { headers })
    await res.body.dump()
    t.equal(res.headers['access-control-allow-origin'], '*')
    t.equal(res.headers['access-control-expose-headers'], 'x-total-count')
    t.equal(res.headers.vary, undefined)
  }
  const pre = await preflight(proxy, { origin: 'https://anyone.example', 'access-control-request-method': 'POST' })
  t.equal(pre.headers['access-control-allow-origin'], '*')
  t.equal(pre.headers['access-control-allow-methods'], 'GET, HEAD, POST')
  t.equal(pre.headers.vary, undefined)
})

t.test('an OPTIONS request without Access-Control-Request-Method is forwarded', async (t) => {
  const { up, proxy } = await setup(t, policy)
  const res = await request(`${proxy.url}/x`, { method: 'OPTIONS', headers: { origin: APP } })
  await res.body.dump()
  t.equal(res.statusCode, 200)
  t.equal(up.seen.length, 1)
  t.equal(up.seen[0]?.method, 'OPTIONS')
  t.equal(res.headers['access-control-allow-origin'], APP)
})

t.test('answers what the browser sent even when Origin is removed before the upstream', async (t) => {
  const { up, proxy } = await setup(t, policy, undefined, [{ name: 'headers', config: { request: { remove: ['origin'] } } }])
  const res = await request(`${proxy.url}/x`, { headers: { origin: APP } })
  await res.body.dump()
  t.equal(up.seen[0]?.headers.origin, undefined)
  t.equal(res.headers['access-control-allow-origin'], APP)
})

t.test('a preflight is answered by the route that serves the requested method', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const cors = (config: Record<string, unknown>): unknown[] => [{ name: 'cors', config }]
  const routes = [
    { name: 'api', match: { pathPrefix: '/api', methods: ['GET', 'PUT'] }, cluster: 'up', plugins: cors({ allowOrigins: [APP], allowMethods: ['GET', 'PUT'], allowCredentials: true }) },
    { name: 'plain', match: { pathPrefix: '/plain', methods: ['GET', 'PUT'] }, cluster: 'up' },
  ]
  const open = { name: 'open', match: { pathPrefix: '/' }, cluster: 'up', plugins: cors({ allowMethods: ['DELETE'] }) }
  const proxy = await startTestProxy({ clusters: [{ name: 'up', endpoints: [{ url: up.url }] }], routes }, t)
  const ask = async (path: string, method: string): Promise<{ status: number, headers: Record<string, string | string[] | undefined> }> => {
    const res = await request(`${proxy.url}${path}`, { method: 'OPTIONS', headers: { origin: APP, 'access-control-request-method': method } })
    await res.body.dump()
    return { status: res.statusCode, headers: res.headers }
  }

  const put = await ask('/api/items', 'PUT')
  t.equal(put.status, 204, 'OPTIONS is not in the route\'s methods, yet its cors answers')
  t.equal(put.headers['access-control-allow-origin'], APP)
  t.equal(put.headers['access-control-allow-credentials'], 'true')
  t.equal(put.headers['access-control-allow-methods'], 'GET, PUT')
  t.equal((await ask('/api/items', 'DELETE')).status, 404, 'no route serves DELETE there: the preflight fails')
  t.equal((await ask('/plain/x', 'PUT')).status, 404, 'a route without cors keeps its methods exact')
  const notPreflight = await request(`${proxy.url}/api/items`, { method: 'OPTIONS', headers: { origin: APP } })
  await notPreflight.body.dump()
  t.equal(notPreflight.statusCode, 404, 'an ordinary OPTIONS request still needs OPTIONS listed')
  t.equal(up.seen.length, 0)

  await proxy.reload({ clusters: [{ name: 'up', endpoints: [{ url: up.url }] }], routes: [...routes, open] })
  const own = await ask('/api/items', 'PUT')
  t.equal(own.headers['access-control-allow-origin'], APP, 'not the catch-all\'s policy')
  t.equal(own.headers['access-control-allow-methods'], 'GET, PUT')
  const del = await ask('/api/items', 'DELETE')
  t.equal(del.headers['access-control-allow-origin'], '*', 'the catch-all, which would take the DELETE, answers for it')
  t.equal(del.headers['access-control-allow-methods'], 'DELETE')
  t.equal(up.seen.length, 0)
})

t.test('a WebSocket handshake from an origin the policy does not allow is refused (cross-site WebSocket hijacking)', async (t) => {
  const echo = await startWsEcho()
  t.teardown(echo.close)
  const handshake = (origin: string | undefined): string => 'GET /socket HTTP/1.1\r\nHost: x.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
    'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: session=1\r\n' +
    (origin === undefined ? '' : `Origin: ${origin}\r\n`) + '\r\n'
  const strict = await startTestProxy(simpleDoc(`http://127.0.0.1:${echo.port}`, { plugins: [{ name: 'cors', config: { ...policy, allowCredentials: true } }] }), t)

  for (const origin of ['https://evil.example', 'null', 'http://app.example.com', 'https://example.org']) {
    const r = await rawRequest(strict.port, handshake(origin))
    t.equal(r.responses[0]?.status, 403, origin)
    t.match(JSON.parse(r.responses[0]?.body.toString() ?? '{}'), { status: 403, code: 'FORBIDDEN' }, origin)
    t.ok(r.closed, `${origin}: no tunnel`)
  }
  t.equal(echo.upgrades.length, 0, 'no refused handshake reached the upstream')

  for (const origin of [APP, 'https://a.example.org', undefined]) {
    const r = await rawRequest(strict.port, handshake(origin), { expect: 1 })
    t.equal(r.responses[0]?.status, 101, `${origin ?? 'no Origin (not a browser)'}: the tunnel opens`)
  }
  t.equal(echo.upgrades.length, 3)

  const open = await startTestProxy(simpleDoc(`http://127.0.0.1:${echo.port}`, { plugins: [{ name: 'cors', config: {} }] }), t)
  const any = await rawRequest(open.port, handshake('https://evil.example'), { expect: 1 })
  t.equal(any.responses[0]?.status, 101, 'allowOrigins: [*] allows every origin')
})
