import t from 'tap'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.ts'
import { startTestProxy, simpleDoc } from '../helpers/proxy.ts'

async function metricValue (adminUrl: string, name: string, labels: string): Promise<number> {
  const text = await (await request(`${adminUrl}/metrics`)).body.text()
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`))
  return line === undefined ? 0 : Number(line.split(' ').pop())
}

t.test('a good config swaps in atomically; a bad one is kept out', async (t) => {
  const a = await startUpstream((_req, res) => { res.end('a') })
  const b = await startUpstream((_req, res) => { res.end('b') })
  t.teardown(a.close)
  t.teardown(b.close)
  const proxy = await startTestProxy(simpleDoc(a.url), t)
  t.equal(await (await request(proxy.url)).body.text(), 'a')
  const v1 = proxy.snapshot.version

  await proxy.reload(simpleDoc(b.url))
  t.equal(await (await request(proxy.url)).body.text(), 'b')
  t.not(proxy.snapshot.version, v1, 'version changes with the document')
  t.equal(await metricValue(proxy.adminUrl, 'outrider_config_reloads_total', 'result="success"'), 2)

  // A config that validates but cannot be built (here: a plugin whose create() throws is
  // not available, so use a route whose cluster is missing, bypassing the schema check).
  const good = proxy.snapshot
  const broken = structuredClone(good.config) as unknown as { routes: Array<{ cluster: string }> }
  ;(broken.routes[0] as { cluster: string }).cluster = 'missing'
  await t.rejects(proxy.apply(broken as never), /unknown cluster/)
  t.equal(proxy.snapshot, good, 'the old snapshot keeps serving')
  t.equal(await (await request(proxy.url)).body.text(), 'b')
  t.equal(await metricValue(proxy.adminUrl, 'outrider_config_reloads_total', 'result="failure"'), 1)
  const cfg = await (await request(`${proxy.adminUrl}/config`)).body.json() as { version: string }
  t.equal(cfg.version, good.version)
})

t.test('an in-flight request finishes on the snapshot it started with', async (t) => {
  let release: (() => void) | undefined
  const slow = await startUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('first,')
    release = () => { res.end('old') }
  })
  const fresh = await startUpstream((_req, res) => { res.end('new') })
  t.teardown(slow.close)
  t.teardown(fresh.close)
  const proxy = await startTestProxy(simpleDoc(slow.url), t)
  const pending = request(proxy.url)
  const res = await pending
  const old = proxy.snapshot
  t.equal(old.inflight, 1)
  await proxy.reload(simpleDoc(fresh.url))
  t.not(proxy.snapshot, old)
  t.equal(await (await request(proxy.url)).body.text(), 'new', 'new requests use the new snapshot')
  release?.()
  t.equal(await res.body.text(), 'first,old', 'the old request completed through the old pool')
  t.equal(old.inflight, 0)
})

t.test('old pools are closed once drained', async (t) => {
  const up = await startUpstream((_req, res) => { res.end('ok') })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  await (await request(proxy.url)).body.text()
  const old = proxy.snapshot
  const pool = [...old.clusters.values()][0]?.endpoints[0]?.pool
  // A changed cluster: an unchanged one is taken over (reload-clusters.test.ts).
  await proxy.reload(simpleDoc(up.url, {}, { timeouts: { connect: '2s' } }))
  for (let i = 0; i < 50 && pool?.closed !== true; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(pool?.closed, true, 'the retired snapshot closed its pool')
})

t.test('a request still in its request phase (a plugin awaiting a key fetch) finishes on its snapshot', async (t) => {
  const { signingKey, sign } = await import('../../plugins/jwt-auth/fixtures.ts')
  const http = await import('node:http')
  const key = await signingKey('ES256', 'k1')
  let hits = 0
  let release: (() => void) | undefined
  const held = new Promise<void>((resolve) => { release = resolve })
  const jwks = http.createServer((_req, res) => {
    hits++
    void held.then(() => { res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [key.jwk] })) })
  })
  await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { jwks.closeAllConnections(); jwks.close() })
  const jwksUrl = `http://127.0.0.1:${(jwks.address() as { port: number }).port}/jwks.json`
  const up = await startUpstream((_req, res) => { res.end('old snapshot') })
  t.teardown(up.close)
  const doc = simpleDoc(up.url, { plugins: [{ name: 'jwt-auth', config: { jwksUrl, issuer: 'https://idp.example/', audience: 'orders' } }] })
  const proxy = await startTestProxy(doc, t)
  const token = await sign(key, { iss: 'https://idp.example/', aud: 'orders', sub: 'alice' })
  const pending = request(proxy.url, { headers: { authorization: `Bearer ${token}` } })
  for (let i = 0; i < 100 && hits === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  t.equal(hits, 1, 'the request is waiting for the key set')
  const old = proxy.snapshot
  // A changed cluster: new pools, and the old ones are retired.
  await proxy.reload(simpleDoc(up.url, (doc.routes as Array<Record<string, unknown>>)[0], { connectionsPerEndpoint: 64 }))
  t.not(proxy.snapshot, old, 'swapped while it waits')
  release?.()
  const res = await pending
  t.equal(res.statusCode, 200, 'its pools and plugins were not closed under it')
  t.equal(await res.body.text(), 'old snapshot')
})
