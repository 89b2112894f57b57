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

t.test('cache before compression: the cache\'s own revalidation keeps the compressed variant', async (t) => {
  const origin = await ScriptedOrigin.start()
  const proxy = await startTestProxy(simpleDoc(origin.upstream.url, {
    plugins: [{ name: 'cache', config: {} }, { name: 'compression', config: { minSize: 10 } }],
  }), t)
  t.teardown(() => origin.close())
  const path = uniquePath('cc-reval')
  const json = JSON.stringify({ items: Array.from({ length: 200 }, (_, i) => ({ id: i })) })
  // Stale at once (Age equals max-age): every later request revalidates.
  origin.on(path, (req) => String(req.headers['if-none-match']).includes('"v1"')
    ? { status: 304, headers: { etag: '"v1"', 'cache-control': 'max-age=100', age: '100' } }
    : { headers: { 'cache-control': 'max-age=100', age: '100', 'content-type': 'application/json', etag: '"v1"' }, body: json })
  const seen: Array<[unknown, unknown, unknown]> = []
  for (let i = 0; i < 3; i++) {
    const r = await request(`${proxy.url}${path}`, { headers: { 'accept-encoding': 'gzip' } })
    const body = Buffer.from(await r.body.arrayBuffer())
    t.equal(gunzipSync(body).toString(), json)
    seen.push([r.headers['x-cache'], r.headers['content-encoding'], r.headers.etag])
  }
  t.same(seen, [['MISS', 'gzip', 'W/"v1"'], ['REVALIDATED', 'gzip', 'W/"v1"'], ['REVALIDATED', 'gzip', 'W/"v1"']])
  t.equal(origin.hits(path), 3, 'one full response, then one 304 per revalidation')
})

t.test('a client\'s Cache-Control: no-transform gets the content as the origin sent it', async (t) => {
  const origin = await ScriptedOrigin.start()
  const proxy = await startTestProxy(simpleDoc(origin.upstream.url, { plugins: [{ name: 'compression', config: { minSize: 10 } }] }), t)
  t.teardown(() => origin.close())
  const path = uniquePath('nt')
  const json = JSON.stringify({ items: Array.from({ length: 200 }, (_, i) => ({ id: i })) })
  origin.on(path, () => ({ headers: { 'content-type': 'application/json' }, body: json }))
  const r = await request(`${proxy.url}${path}`, { headers: { 'accept-encoding': 'gzip', 'cache-control': 'no-transform' } })
  t.equal(await r.body.text(), json)
  t.equal(r.headers['content-encoding'], undefined)
  t.equal(r.headers.vary, 'Accept-Encoding')
})
