import t from 'tap'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.ts'
import { startTestProxy, simpleDoc } from '../helpers/proxy.ts'

t.test('proxies a GET and sets forwarding headers', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  const res = await request(`${proxy.url}/hello?x=1`, { headers: { 'x-custom': 'a' } })
  t.equal(res.statusCode, 200)
  const body = await res.body.json() as { url: string, headers: Record<string, string> }
  t.equal(body.url, '/hello?x=1')
  t.equal(body.headers['x-custom'], 'a')
  t.equal(body.headers['x-forwarded-for'], '127.0.0.1')
  t.equal(body.headers['x-forwarded-proto'], 'http')
  t.match(body.headers['x-request-id'], /^[0-9a-f-]{36}$/)
  t.match(body.headers.via, /outrider/)
  t.equal(res.headers['x-request-id'], body.headers['x-request-id'])
})
