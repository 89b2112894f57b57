import t from 'tap'
import type { Test } from 'tap'
import type { Socket } from 'node:net'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { request } from 'undici'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import { startTestProxy, testConfig, testLogger } from '../helpers/proxy.ts'
import { Snapshot } from '../../src/snapshot.ts'
import { createMetrics } from '../../src/metrics.ts'

/** An upstream answering `status`, counting the TCP connections made to it and those still open. */
async function countingUpstream (status: number): Promise<Upstream & { connections: () => number, open: () => number }> {
  const up = await startUpstream((_req, res) => { res.writeHead(status, { 'content-length': '0' }).end() })
  const open = new Set<Socket>()
  let connections = 0
  up.server.on('connection', (s: Socket) => {
    connections++
    open.add(s)
    s.on('close', () => open.delete(s))
  })
  return Object.assign(up, { connections: () => connections, open: () => open.size })
}

async function statuses (url: string, n: number): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    const res = await request(`${url}/x`)
    await res.body.dump()
    out.push(res.statusCode)
  }
  return out
}

async function until (cond: () => boolean): Promise<boolean> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((resolve) => setTimeout(resolve, 10))
  return cond()
}

const doc = (good: string, bad: string, route: string, cluster: Record<string, unknown> = {}): Record<string, unknown> => ({
  shutdown: { drainTimeout: '1s' },
  clusters: [{
    name: 'c',
    endpoints: [{ url: good }, { url: bad }],
    loadBalancer: { policy: 'round_robin' },
    panicThreshold: 0,
    connectionsPerEndpoint: 1, // a second connection can only be a reconnect
    outlierDetection: { consecutive5xx: 2, baseEjectionTime: '60s' },
    ...cluster,
  }],
  routes: [{ name: route, cluster: 'c' }],
})

/** A proxy on doc(good, bad, 'r') after 4 requests: the failing endpoint is ejected by then. */
async function withEjectedEndpoint (t: Test): Promise<{ good: Awaited<ReturnType<typeof countingUpstream>>, bad: Awaited<ReturnType<typeof countingUpstream>>, proxy: Awaited<ReturnType<typeof startTestProxy>> }> {
  const good = await countingUpstream(200)
  const bad = await countingUpstream(500)
  t.teardown(good.close)
  t.teardown(bad.close)
  const proxy = await startTestProxy(doc(good.url, bad.url, 'r'), t)
  await statuses(proxy.url, 4)
  return { good, bad, proxy }
}

t.test('a reload that leaves a cluster as it is keeps its ejections and its connections', async (t) => {
  const { good, bad, proxy } = await withEjectedEndpoint(t)
  const cluster = proxy.snapshot.clusters.get('c')
  t.equal(cluster?.endpoints[1]?.healthy, false, 'the failing endpoint is ejected')
  t.equal(good.connections(), 1)

  const old = proxy.snapshot
  await proxy.reload(doc(good.url, bad.url, 'renamed')) // the route changes, the cluster does not
  t.not(proxy.snapshot, old)
  t.equal(proxy.snapshot.clusters.get('c'), cluster, 'the cluster is taken over')
  t.same(await statuses(proxy.url, 10), Array(10).fill(200), 'the ejected endpoint stays out')
  t.equal(cluster?.endpoints[1]?.healthy, false)
  const state = await (await request(`${proxy.adminUrl}/clusters`)).body.json() as { clusters: Array<{ endpoints: Array<{ healthy: boolean }> }> }
  t.same(state.clusters[0]?.endpoints.map((e) => e.healthy), [true, false])

  // The old snapshot retired as the reload returned (nothing was in flight): the pools stayed open.
  await statuses(proxy.url, 2)
  t.equal(cluster?.endpoints[0]?.pool.closed, false, 'the retired snapshot left the shared pool open')
  t.equal(good.connections(), 1, 'still the one keep-alive connection')
})

t.test('a reload that changes a cluster builds a new one and drains the old', async (t) => {
  const { good, bad, proxy } = await withEjectedEndpoint(t)
  const cluster = proxy.snapshot.clusters.get('c')
  t.equal(cluster?.endpoints[1]?.healthy, false)

  await proxy.reload(doc(good.url, bad.url, 'r', { timeouts: { request: '20s' } }))
  const rebuilt = proxy.snapshot.clusters.get('c')
  t.not(rebuilt, cluster, 'a changed cluster is built anew')
  t.equal(rebuilt?.endpoints[1]?.healthy, true, 'with fresh state')
  t.ok(await until(() => cluster?.endpoints.every((e) => e.pool.closed) === true), 'the old cluster is drained and closed')
  t.ok(await until(() => good.open() === 0), 'its connections are gone')
})

t.test('a cluster shared by several snapshots is closed once, when the last one retires', async (t) => {
  const up = await countingUpstream(200)
  t.teardown(up.close)
  const checked = (route: string, cluster: Record<string, unknown> = {}): Record<string, unknown> => ({
    shutdown: { drainTimeout: '1s' },
    clusters: [{ name: 'c', endpoints: [{ url: up.url }], connectionsPerEndpoint: 1, healthCheck: { interval: '50ms', timeout: '30s', path: '/h' }, ...cluster }],
    routes: [{ name: route, cluster: 'c' }],
  })
  const probes = (): number => up.seen.filter((s) => s.url === '/h').length
  const proxy = await startTestProxy(checked('r0'), t)
  await statuses(proxy.url, 1)
  t.ok(await until(() => probes() > 0), 'probing')
  const first = proxy.snapshot.clusters.get('c')
  for (let i = 1; i <= 10; i++) {
    await proxy.reload(checked(`r${i}`))
    await statuses(proxy.url, 1)
  }
  const seen = probes()
  t.ok(await until(() => probes() > seen), 'probing after the last reload')
  t.equal(proxy.snapshot.clusters.get('c'), first, 'ten reloads, one cluster')
  // One connection for traffic, one for the (single) health checker's probes.
  t.equal(up.connections(), 2, 'no reconnects and no second health checker')

  await proxy.reload(checked('r11', { connectionsPerEndpoint: 8 }))
  t.ok(await until(() => first?.endpoints[0]?.pool.closed === true), 'the changed cluster is drained')
  await statuses(proxy.url, 1)
  // The old checker stopped: its connection closes, the new cluster has its own two.
  t.ok(await until(() => up.open() === 2), 'the old cluster\'s probes and pool let go of their connections')
  await proxy.shutdown(1000)
  t.ok(await until(() => up.open() === 0), 'shutdown closes what the last snapshot used')
  t.ok(proxy.snapshot.clusters.get('c')?.endpoints[0]?.pool.closed)
  const after = probes()
  await new Promise((resolve) => setTimeout(resolve, 150))
  t.equal(probes(), after, 'no health checker probes after shutdown')
})

t.test('a cluster whose TLS files changed is built anew, with the same config', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'outrider-reload-'))
  const ca = path.join(dir, 'ca.pem')
  await writeFile(ca, 'first CA bundle')
  const config = testConfig({
    clusters: [{ name: 'c', endpoints: [{ url: 'https://127.0.0.1:9443' }], tls: { ca } }],
    routes: [{ name: 'r', cluster: 'c' }],
  })
  const options = { source: 'test', metrics: createMetrics({ defaultMetrics: false }), log: testLogger() }
  const first = await Snapshot.build(config, options)
  const same = await Snapshot.build(config, { ...options, previous: first })
  t.equal(same.clusters.get('c'), first.clusters.get('c'), 'same files, same cluster')
  await writeFile(ca, 'renewed CA bundle')
  const renewed = await Snapshot.build(config, { ...options, previous: same })
  t.not(renewed.clusters.get('c'), same.clusters.get('c'), 'new contents, new cluster')
  await first.retire(0)
  t.notOk(first.clusters.get('c')?.endpoints[0]?.pool.closed, 'still used by the second snapshot')
  await same.retire(0)
  t.ok(first.clusters.get('c')?.endpoints[0]?.pool.closed, 'closed once both snapshots using it retired')
  t.notOk(renewed.clusters.get('c')?.endpoints[0]?.pool.closed)
  await renewed.retire(0)
})
