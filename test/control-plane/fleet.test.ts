import t from 'tap'
import { once } from 'node:events'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import type { OperatorClient } from '../../control-plane/operator-client.ts'
import type { ManagedProxy } from '../../src/control-plane-client.ts'
import { adminUrl, baseDocument, get, operatorClient, proxyUrl, startTestControlPlane, startTestDataPlane, tempDir, waitFor } from './helpers.ts'

/** An upstream that names itself, so a response says which cluster served it. */
async function namedUpstream (name: string): Promise<Upstream> {
  const up = await startUpstream((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': name })
    res.end(`${name} ${req.url ?? ''} tenant=${String(req.headers['x-tenant'] ?? '')}`)
  })
  t.teardown(() => up.close())
  return up
}

async function seed (admin: OperatorClient, doc: Record<string, unknown>): Promise<number> {
  return (await admin.putConfig({ configJson: JSON.stringify(doc) })).version
}

async function servesText (dp: ManagedProxy, p: string, text: string, headers: Record<string, string> = {}): Promise<boolean> {
  if (dp.proxy === undefined) return false
  const r = await get(proxyUrl(dp, p), headers)
  return r.status === 200 && r.body.startsWith(text)
}

t.test('an operator PutRoute reaches all three data planes, each serving the new route', async (t) => {
  const a = await namedUpstream('a')
  const b = await namedUpstream('b')
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json` })
  const admin = operatorClient(t, cp.address, 'admin')
  const op = operatorClient(t, cp.address, 'operator')
  const v1 = await seed(admin, baseDocument([['a', a.url]], [{ name: 'a', match: { pathPrefix: '/a' }, cluster: 'a' }]))

  const dps = await Promise.all(['dp-1', 'dp-2', 'dp-3'].map((id) => startTestDataPlane(t, cp.address, id)))
  await Promise.all(dps.map((dp) => dp.started))
  for (const dp of dps) {
    t.ok(await servesText(dp, '/a/x', 'a /a/x'), 'serves the seeded route')
    t.equal((await get(proxyUrl(dp, '/b/x'))).status, 404, 'no /b route yet')
  }

  await op.putCluster({ clusterJson: JSON.stringify({ name: 'b', endpoints: [{ url: b.url }] }) })
  const put = await op.putRoute({ routeJson: JSON.stringify({ name: 'b', match: { pathPrefix: '/b' }, cluster: 'b' }), options: { message: 'new service b', dryRun: false, ifVersion: 0 } })
  t.equal(put.version, v1 + 2, 'cluster then route: two new versions')
  t.match(put.summary, /routes: added b/)

  for (const [i, dp] of dps.entries()) {
    await waitFor(`dp-${i + 1} serving /b`, () => servesText(dp, '/b/y', 'b /b/y'))
    t.pass(`dp-${i + 1} serves /b through the new cluster`)
    t.ok(await servesText(dp, '/a/x', 'a /a/x'), 'and still serves /a')
  }
  t.ok(b.seen.length >= 3, 'upstream b saw requests from every data plane')

  const fleet = await waitFor('three ACKs of the new version', async () => {
    const f = await op.getFleet({})
    return f.nodes.length === 3 && f.nodes.every((n) => n.ackedVersion === String(put.version)) ? f : undefined
  })
  t.same(fleet.nodes.map((n) => n.nodeId), ['dp-1', 'dp-2', 'dp-3'])
  for (const n of fleet.nodes) {
    t.equal(n.connected, true)
    t.same(n.labels, { zone: 'test' })
    t.match(n.address, /127\.0\.0\.1:\d+/)
    t.not(n.lastAckAt, '')
    t.equal(n.nackedVersion, '')
  }
  for (const dp of dps) {
    t.equal(dp.client.version, String(put.version))
    const ready = await get(adminUrl(dp, '/ready'))
    t.equal(ready.status, 200, '/ready: config received')
    const cfg = JSON.parse((await get(adminUrl(dp, '/config'))).body) as { source: string }
    t.equal(cfg.source, `control-plane v${put.version}`, '/config names the control-plane version')
  }
})

t.test('a config one data plane cannot apply is NACKed; that node keeps serving its old config and GetFleet shows why', async (t) => {
  const a = await namedUpstream('a')
  const b = await namedUpstream('b')
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json` })
  const admin = operatorClient(t, cp.address, 'admin')
  const op = operatorClient(t, cp.address, 'operator')
  await seed(admin, baseDocument([['a', a.url], ['b', b.url]], [{ name: 'a', match: { pathPrefix: '/a' }, cluster: 'a' }]))

  // ${TENANT} is resolved by each data plane from its own environment: dp-3 lacks it.
  const dps = await Promise.all([
    startTestDataPlane(t, cp.address, 'dp-1', { env: { TENANT: 'blue' } }),
    startTestDataPlane(t, cp.address, 'dp-2', { env: { TENANT: 'blue' } }),
    startTestDataPlane(t, cp.address, 'dp-3', { env: {} }),
  ])
  await Promise.all(dps.map((dp) => dp.started))
  const before = (await op.getConfig({})).version
  await waitFor('three ACKs', async () => (await op.getFleet({})).nodes.filter((n) => n.ackedVersion === String(before)).length === 3)

  const put = await op.putRoute({ routeJson: JSON.stringify({ name: 'b', match: { pathPrefix: '/b', headers: { 'x-tenant': '${TENANT}' } }, cluster: 'b' }) })
  t.ok(put.changed, 'the control plane accepts it: the document is valid as written')

  const fleet = await waitFor('dp-3 NACK and two ACKs', async () => {
    const f = await op.getFleet({})
    const [n1, n2, n3] = f.nodes
    return n1?.ackedVersion === String(put.version) && n2?.ackedVersion === String(put.version) && n3?.nackedVersion === String(put.version) ? f : undefined
  })
  const n3 = fleet.nodes[2]
  t.equal(n3?.nodeId, 'dp-3')
  t.equal(n3?.ackedVersion, String(before), 'dp-3 still runs the version before')
  t.not(n3?.lastNackAt, '')
  t.match(n3?.nackError, {
    message: /TENANT/,
    issues: [{ path: 'routes[1].match.headers["x-tenant"]', expected: /environment variable TENANT to be set/ }],
  }, 'the NACK carries the path and the expectation')

  t.ok(await servesText(dps[0] as ManagedProxy, '/b/1', 'b /b/1 tenant=blue', { 'x-tenant': 'blue' }), 'dp-1 serves the new route')
  t.ok(await servesText(dps[1] as ManagedProxy, '/b/1', 'b /b/1 tenant=blue', { 'x-tenant': 'blue' }), 'dp-2 serves the new route')
  const dp3 = dps[2] as ManagedProxy
  t.equal((await get(proxyUrl(dp3, '/b/1'), { 'x-tenant': 'blue' })).status, 404, 'dp-3 does not have the new route')
  t.ok(await servesText(dp3, '/a/1', 'a /a/1'), 'dp-3 keeps serving its old config')
  t.equal(dp3.client.version, String(before))
  t.equal((await get(adminUrl(dp3, '/ready'))).status, 200, 'dp-3 stays ready on its old config')

  // The fix: a literal value every node can use. dp-3 ACKs and its NACK clears.
  const fix = await op.putRoute({ routeJson: JSON.stringify({ name: 'b', match: { pathPrefix: '/b', headers: { 'x-tenant': 'blue' } }, cluster: 'b' }) })
  const fixed = await waitFor('dp-3 ACK of the fix', async () => {
    const f = await op.getFleet({})
    return f.nodes[2]?.ackedVersion === String(fix.version) ? f : undefined
  })
  t.equal(fixed.nodes[2]?.nackedVersion, '', 'the NACK is cleared once a newer version applies')
  t.equal(fixed.nodes[2]?.nackError, null)
  t.ok(await servesText(dp3, '/b/2', 'b /b/2 tenant=blue', { 'x-tenant': 'blue' }))
})

t.test('control plane killed → data planes keep serving; restarted → they reconnect and take changes again', async (t) => {
  const a = await namedUpstream('a')
  const c = await namedUpstream('c')
  const store = `${await tempDir(t)}/store.json`
  const cp1 = await startTestControlPlane(t, { store })
  const admin1 = operatorClient(t, cp1.address, 'admin')
  const v1 = await seed(admin1, baseDocument([['a', a.url], ['c', c.url]], [{ name: 'a', match: { pathPrefix: '/a' }, cluster: 'a' }]))
  const dps = await Promise.all(['dp-1', 'dp-2', 'dp-3'].map((id) => startTestDataPlane(t, cp1.address, id)))
  await Promise.all(dps.map((dp) => dp.started))
  await waitFor('all connected', () => dps.every((dp) => dp.client.version === String(v1)))

  const disconnected = dps.map((dp) => new Promise((resolve) => dp.client.once('disconnected', resolve)))
  cp1.kill()
  await Promise.all(disconnected)
  for (const dp of dps) {
    t.ok(await servesText(dp, '/a/k', 'a /a/k'), 'serves with the control plane gone')
    t.equal((await get(adminUrl(dp, '/ready'))).status, 200, 'and stays ready')
  }
  await new Promise((resolve) => setTimeout(resolve, 300)) // a few failed reconnects

  const cp2 = await startTestControlPlane(t, { store, listen: `127.0.0.1:${cp1.port}` })
  t.equal(cp2.desired.current?.version, v1, 'the restarted control plane has the stored config')
  const op = operatorClient(t, cp2.address, 'operator')
  await waitFor('all three resubscribed', async () => {
    const f = await op.getFleet({})
    return f.nodes.length === 3 && f.nodes.every((n) => n.connected && n.ackedVersion === String(v1))
  })
  t.pass('all three reconnected and ACKed the version they run')

  const put = await op.putRoute({ routeJson: JSON.stringify({ name: 'c', match: { pathPrefix: '/c' }, cluster: 'c' }) })
  t.equal(put.version, v1 + 1, 'versions continue across the restart')
  for (const [i, dp] of dps.entries()) await waitFor(`dp-${i + 1} serving /c`, () => servesText(dp, '/c/1', 'c /c/1'))
  t.pass('a change after the restart reaches every data plane')
})

t.test('a data plane restarted while the control plane is down serves its last-known-good config from the cache', async (t) => {
  const a = await namedUpstream('a')
  const cacheDir = await tempDir(t)
  const store = `${await tempDir(t)}/store.json`
  const cp1 = await startTestControlPlane(t, { store })
  const admin = operatorClient(t, cp1.address, 'admin')
  const v1 = await seed(admin, baseDocument([['a', a.url]], [{ name: 'a', match: { pathPrefix: '/a' }, cluster: 'a' }]))

  const first = await startTestDataPlane(t, cp1.address, 'dp-1', { cacheDir })
  // 'applied' comes once the config is also cached; `version` changes just before the cache is written.
  const applied = once(first.client, 'applied')
  await first.started
  t.equal((await applied)[0], String(v1), 'v1 applied and cached')
  await first.shutdown(100)
  cp1.kill()

  const again = await startTestDataPlane(t, cp1.address, 'dp-1', { cacheDir })
  t.ok(again.proxy, 'the proxy runs at once, without the control plane')
  t.ok(await servesText(again, '/a/z', 'a /a/z'), 'serving the cached config')
  t.equal((await get(adminUrl(again, '/ready'))).status, 200, '/ready: a cached config is a config received')
  const cfg = JSON.parse((await get(adminUrl(again, '/config'))).body) as { source: string }
  t.equal(cfg.source, `control-plane v${v1} (cache)`)
  t.equal(again.client.received, false, 'nothing received in this process yet')
  const snapshotBefore = again.proxy?.snapshot

  const cp2 = await startTestControlPlane(t, { store, listen: `127.0.0.1:${cp1.port}` })
  await waitFor('resync', () => again.client.received)
  t.equal(again.client.version, String(v1))
  t.equal(again.proxy?.snapshot, snapshotBefore, 'the same document is not rebuilt (balancer state survives)')
  const op = operatorClient(t, cp2.address, 'viewer')
  await waitFor('ACK in the fleet view', async () => (await op.getFleet({})).nodes[0]?.ackedVersion === String(v1))
})

t.test('/ready answers 503 on a bootstrap config until the control plane\'s first config arrives', async (t) => {
  const a = await namedUpstream('a')
  const store = `${await tempDir(t)}/store.json`
  // Find a port for a control plane that is not there yet.
  const probe = await startTestControlPlane(t, { store: `${await tempDir(t)}/probe.json` })
  const port = probe.port
  await probe.close()

  const { testConfig } = await import('../helpers/proxy.ts')
  const dp = await startTestDataPlane(t, `127.0.0.1:${port}`, 'dp-boot', { bootstrap: testConfig({}) })
  t.ok(dp.proxy, 'listening on the bootstrap config')
  const notReady = await get(adminUrl(dp, '/ready'))
  t.equal(notReady.status, 503)
  t.match(JSON.parse(notReady.body), { status: 'not ready' })

  const cp = await startTestControlPlane(t, { store, listen: `127.0.0.1:${port}` })
  const admin = operatorClient(t, cp.address, 'admin')
  await seed(admin, baseDocument([['a', a.url]], [{ name: 'a', match: { pathPrefix: '/a' }, cluster: 'a' }]))
  await waitFor('/ready 200', async () => (await get(adminUrl(dp, '/ready'))).status === 200)
  t.ok(await servesText(dp, '/a/q', 'a /a/q'), 'serving the pushed config on the bootstrap listener')
})

t.test('without a cache or bootstrap config, nothing listens until the first config arrives', async (t) => {
  const a = await namedUpstream('a')
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json` })
  const dp = await startTestDataPlane(t, cp.address, 'dp-wait')
  t.equal(dp.proxy, undefined, 'waiting')
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(dp.proxy, undefined, 'still waiting: the control plane has no config')
  const admin = operatorClient(t, cp.address, 'admin')
  await seed(admin, baseDocument([['a', a.url]], [{ name: 'a', match: { pathPrefix: '/a' }, cluster: 'a' }]))
  const proxy = await dp.started
  t.ok(proxy.port > 0)
  t.ok(await servesText(dp, '/a/w', 'a /a/w'))
  t.equal((await get(adminUrl(dp, '/ready'))).status, 200)
})
