import t from 'tap'
import { gunzipSync } from 'node:zlib'
import { request } from 'undici'
import { ScriptedOrigin, uniquePath } from './test-origin.ts'
import { startTestProxy, simpleDoc } from '../../test/helpers/proxy.ts'

t.test('cache before compression: one compressed variant serves every client that accepts it', async (t) => {
  const origin = await ScriptedOrigin.start()
  const proxy = await startTestProxy(simpleDoc(origin.upstream.url, {
    plugins: [{ name: 'cache', config: {} }, { name: 'compression', config: { minSize: 10 } }],
  }), t)
  t.teardown(() => origin.close())
  const path = uniquePath('cc')
  const json = JSON.stringify({ items: Array.from({ length: 200 }, (_, i) => ({ id: i, name: `item ${i}` })) })
  origin.on(path, () => ({ headers: { 'cache-control': 'max-age=100', 'content-type': 'application/json', etag: '"j1"' }, body: json }))

  const fetch = async (ae: string | undefined): Promise<{ headers: Record<string, unknown>, body: Buffer }> => {
    const r = await request(`${proxy.url}${path}`, { headers: ae === undefined ? {} : { 'accept-encoding': ae } })
    return { headers: r.headers, body: Buffer.from(await r.body.arrayBuffer()) }
  }
  const a = await fetch('gzip')
  t.equal(a.headers['content-encoding'], 'gzip')
  t.equal(a.headers['x-cache'], 'MISS')
  t.equal(gunzipSync(a.body).toString(), json)
  const b = await fetch('deflate, gzip;q=0.9')
  t.equal(b.headers['x-cache'], 'HIT', 'another spelling that selects gzip shares the variant')
  t.equal(b.headers['content-encoding'], 'gzip')
  t.equal(gunzipSync(b.body).toString(), json, 'the stored bytes are not compressed twice')
  t.equal(b.headers.etag, 'W/"j1"')
  const plain = await fetch(undefined)
  t.equal(plain.headers['content-encoding'], undefined)
  t.equal(plain.body.toString(), json)
  t.equal(origin.hits(path), 2, 'one upstream request per coding')
  const revalidate = await request(`${proxy.url}${path}`, { headers: { 'accept-encoding': 'gzip', 'if-none-match': 'W/"j1"' } })
  await revalidate.body.text()
  t.equal(revalidate.statusCode, 304, 'the weakened ETag validates against the stored variant')
})
