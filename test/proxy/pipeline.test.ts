import t from 'tap'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.ts'
import { startTestProxy, simpleDoc } from '../helpers/proxy.ts'
import { hashApiKey } from '../../plugins/api-key/hash.ts'

t.test('a plugin\'s error response still passes through the response phase', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url, {
    plugins: [
      { name: 'cors', config: { allowOrigins: ['https://app.example'] } },
      { name: 'security-headers', config: {} },
      { name: 'api-key', config: { keys: [{ id: 'svc', hash: hashApiKey('k-123456789') }] } },
    ],
  }), t)
  const denied = await request(proxy.url, { headers: { origin: 'https://app.example' } })
  t.equal(denied.statusCode, 401)
  t.equal(denied.headers['access-control-allow-origin'], 'https://app.example', 'CORS headers on the 401, so the browser can read it')
  t.equal(denied.headers['x-content-type-options'], 'nosniff', 'security headers on the 401')
  t.match(denied.headers['content-type'], /application\/problem\+json/)
  t.match(await denied.body.json(), { code: 'UNAUTHORIZED' })
  t.equal(up.seen.length, 0, 'never reached the upstream')

  const ok = await request(proxy.url, { headers: { origin: 'https://app.example', 'x-api-key': 'k-123456789' } })
  t.equal(ok.statusCode, 200)
  t.equal(ok.headers['x-content-type-options'], 'nosniff')
  const body = await ok.body.json() as { headers: Record<string, string> }
  t.equal(body.headers['x-api-key'], undefined, 'the key is not forwarded')
})

t.test('hooks run in route order on requests and in reverse on responses', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url, {
    plugins: [
      { name: 'headers', config: { request: { add: { 'x-order': 'first' } }, response: { add: { 'x-order': 'first' } } } },
      { name: 'headers', config: { request: { add: { 'x-order': 'second' } }, response: { add: { 'x-order': 'second' } } } },
    ],
  }), t)
  const res = await request(proxy.url)
  const body = await res.body.json() as { headers: Record<string, string> }
  t.equal(body.headers['x-order'], 'first, second', 'request phase in route order')
  t.same(res.headers['x-order'], ['second', 'first'], 'response phase unwinds')
})
