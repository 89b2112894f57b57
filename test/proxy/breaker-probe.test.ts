import t from 'tap'
import type http from 'node:http'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.ts'
import { startTestProxy } from '../helpers/proxy.ts'
import { clusterState } from '../helpers/resilience.ts'
import { ConsistentHashRing } from '../../src/upstream/balancers/consistent-hash.ts'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function until (cond: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 500 && !(await cond()); i++) await new Promise((resolve) => setTimeout(resolve, 10))
}

t.test('an older request ending while an endpoint is half-open does not let a second probe through', async (t) => {
  const held: http.ServerResponse[] = []
  const x = await startUpstream((req, res) => {
    if (req.url === '/stream') { res.writeHead(200, { 'content-type': 'text/plain' }); res.write('part'); held.push(res); return }
    if (req.url === '/fail') { res.writeHead(503).end(); return }
    if (req.url === '/hold') { held.push(res); return }
    res.end('x')
  })
  const y = await startUpstream((_req, res) => { res.end('y') })
  t.teardown(async () => { for (const r of held) r.destroy(); await x.close(); await y.close() })
  const proxy = await startTestProxy({
    clusters: [{
      name: 'c',
      endpoints: [{ url: x.url }, { url: y.url }],
      loadBalancer: { policy: 'consistent_hash', hashOn: { by: 'header', header: 'x-k' } },
      outlierDetection: { enabled: false },
      // X's own ratio opens its circuit; the cluster's, diluted by Y's successes, stays closed.
      circuitBreaker: { trigger: { by: 'ratio', threshold: 0.5, window: '60s', minimumRequests: 2 }, halfOpenAfter: '100ms' },
    }],
    routes: [{ name: 'r', cluster: 'c' }],
  }, t)
  const ring = new ConsistentHashRing([x, y].map((u) => ({ id: new URL(u.url).origin, weight: 1, inflight: 0, healthy: true })))
  const keyOf = (url: string): string => Array.from({ length: 100 }, (_, i) => `k${i}`).find((k) => ring.pick(k)?.id === new URL(url).origin) as string
  const kx = keyOf(x.url)
  const ky = keyOf(y.url)
  const get = async (path: string, key: string): Promise<{ status: number, body: string }> => {
    const res = await request(`${proxy.url}${path}`, { headers: { 'x-k': key } })
    return { status: res.statusCode, body: await res.body.text() }
  }
  for (let i = 0; i < 4; i++) t.equal((await get('/', ky)).body, 'y')

  // A: sent to X while its circuit is closed, streaming.
  const ac = new AbortController()
  const a = await request(`${proxy.url}/stream`, { headers: { 'x-k': kx }, signal: ac.signal })
  t.equal(a.statusCode, 200)
  a.body.on('error', () => {})
  t.equal((await get('/fail', kx)).status, 503)
  t.equal((await get('/fail', kx)).status, 503)
  const xState = async (): Promise<{ state?: string, openUntil?: string } | undefined> => (await clusterState(proxy.adminUrl, 'c')).endpoints[0]?.circuit as never
  t.equal((await xState())?.state, 'open')
  await until(async () => Date.parse((await xState())?.openUntil ?? '') <= Date.now())

  // P: X's half-open probe, held.
  const p = get('/hold', kx).catch(() => undefined)
  await until(() => held.length === 2)
  t.equal(held.length, 2, 'the probe reached X')
  const endpointX = proxy.snapshot.clusters.get('c')!.endpoints[0]!
  t.equal(endpointX.inflight, 2)

  // A's client leaves: its attempt ends without a verdict.
  ac.abort()
  await until(() => endpointX.inflight === 1)
  t.equal(endpointX.inflight, 1)
  t.same(await get('/c', kx), { status: 200, body: 'y' }, 'X still has its one probe out: the request goes to Y')
  t.equal((await xState())?.state, 'half-open')
  for (const r of held.splice(0)) r.destroy()
  await p
})

t.test('the cluster circuit: an older stream ending while it is half-open decides nothing; its probe does', async (t) => {
  let stream: http.ServerResponse | undefined
  let hold: http.ServerResponse | undefined
  const x = await startUpstream((req, res) => {
    if (req.url === '/stream') { res.writeHead(200, { 'content-type': 'text/plain' }); res.write('part'); stream = res; return }
    if (req.url === '/fail') { res.writeHead(503).end(); return }
    if (req.url === '/hold') { hold = res; return }
    res.end('x')
  })
  t.teardown(() => x.close())
  const proxy = await startTestProxy({
    clusters: [{ name: 'c', endpoints: [{ url: x.url }], outlierDetection: { enabled: false },
      circuitBreaker: { trigger: { by: 'consecutive', failures: 2 }, halfOpenAfter: '300ms' } }],
    routes: [{ name: 'r', cluster: 'c' }],
  }, t)
  const a = await request(`${proxy.url}/stream`)
  const aBody = a.body.text()
  for (let i = 0; i < 2; i++) { const r = await request(`${proxy.url}/fail`); await r.body.dump() }
  t.equal((await clusterState(proxy.adminUrl, 'c')).circuit?.state, 'open', 'cluster circuit open')
  await sleep(400)
  const p = request(`${proxy.url}/hold`).then(async (r) => { await r.body.dump(); return r.statusCode })
  while (hold === undefined) await sleep(10)
  t.equal((await clusterState(proxy.adminUrl, 'c')).circuit?.state, 'half-open', 'probe out, cluster half-open')
  stream!.end('end') // the older request, sent while closed, finishes
  await aBody
  await sleep(50)
  t.equal((await clusterState(proxy.adminUrl, 'c')).circuit?.state, 'half-open', 'still half-open: the probe has not answered')
  hold!.writeHead(503).end()
  t.equal(await p, 503)
  await sleep(50)
  t.equal((await clusterState(proxy.adminUrl, 'c')).circuit?.state, 'open', 'the failed probe re-opens it')
})
