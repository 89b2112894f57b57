import t from 'tap'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.ts'
import { startTestProxy, simpleDoc } from '../helpers/proxy.ts'

t.test('an admin path with a malformed percent-escape is answered 400, not left hanging', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url, {}, { loadBalancer: { policy: 'peak_ewma' } }), t)
  const body = JSON.stringify({ endpoint: up.url, weight: 2 })
  for (const name of ['%E0%A4%A', '%', '%zz']) {
    const res = await request(`${proxy.adminUrl}/clusters/${name}/weight-hints`, { method: 'POST', body, headersTimeout: 5000 })
    t.equal(res.statusCode, 400, name)
    t.match(await res.body.json(), { error: /percent-encoding/ })
  }
  const ok = await request(`${proxy.adminUrl}/clusters/%75p/weight-hints`, { method: 'POST', body })
  t.equal(ok.statusCode, 200, 'a well-formed escape still names the cluster')
  t.match(await ok.body.json(), { cluster: 'up', weight: 2 })
})

t.test('admin POST bodies that are JSON but not an object are answered 400, not left hanging', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url, {}, { loadBalancer: { policy: 'peak_ewma' } }), t)
  for (const path of ['/clusters/up/weight-hints', '/cache/purge', '/log-level']) {
    for (const body of ['null', '7', '"x"', '[]', '[{"url":"a"}]']) {
      const res = await request(`${proxy.adminUrl}${path}`, { method: 'POST', body, headersTimeout: 5000 })
      t.equal(res.statusCode, 400, `${path} ${body}`)
      t.match(await res.body.json(), { error: String })
    }
  }
})
