import t from 'tap'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.ts'
import { startTestProxy, simpleDoc } from '../helpers/proxy.ts'

t.test('a dual-stack listener reports IPv4 clients by their IPv4 address', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy({ ...simpleDoc(up.url), listen: { host: '::', port: 0 } }, t)
  const r = await request(`http://127.0.0.1:${proxy.port}/ip`)
  const seen = await r.body.json() as { headers: Record<string, string> }
  t.equal(seen.headers['x-forwarded-for'], '127.0.0.1', 'not ::ffff:127.0.0.1')
})
