import t from 'tap'
import * as grpc from '@grpc/grpc-js'
import { compose, matching, mergePatch, parseOverlay } from '../../control-plane/overlays.ts'
import type { CallError } from '../../control-plane/operator-client.ts'
import { baseDocument, get, namedUpstream, operatorClient, proxyUrl, serves, startTestControlPlane, startTestDataPlane, tempDir, waitFor } from './helpers.ts'

t.test('merge patch: objects merge, null removes, named lists merge by name', async (t) => {
  const base = {
    listen: { host: '0.0.0.0', port: 80 },
    routes: [{ name: 'a', cluster: 'x', plugins: [{ name: 'cache', config: { ttl: 1 } }] }, { name: 'catch-all', cluster: 'x' }],
  }
  const patched = mergePatch(base, {
    listen: { port: 81 },
    routes: [
      { name: 'a', plugins: [{ name: 'cache', config: { ttl: 5 } }] },
      { name: 'b', cluster: 'y', $before: 'catch-all' },
      { name: 'catch-all', $delete: true },
    ],
    limits: null,
  })
  t.same(patched, {
    listen: { host: '0.0.0.0', port: 81 },
    routes: [{ name: 'a', cluster: 'x', plugins: [{ name: 'cache', config: { ttl: 5 } }] }, { name: 'b', cluster: 'y' }],
  })
  t.equal(base.listen.port, 80, 'the base is not mutated')
  t.same(mergePatch({ tags: [1, 2] }, { tags: [3] }), { tags: [3] }, 'other lists are replaced (RFC 7386)')
})

t.test('selection: every selector pair must match; priority orders the overlays', async (t) => {
  const low = parseOverlay({ name: 'low', selector: { zone: 'eu' }, patch: { listen: { port: 1 } } })
  const high = parseOverlay({ name: 'high', selector: { zone: 'eu', tier: 'edge' }, priority: 10, patch: { listen: { port: 2 } } })
  const all = parseOverlay({ name: 'all', patch: { admin: { port: 3 } } })
  t.same(matching([high, low, all], { zone: 'eu' }).map((o) => o.name), ['all', 'low'])
  t.same(matching([high, low, all], { zone: 'eu', tier: 'edge' }).map((o) => o.name), ['all', 'low', 'high'])
  t.same(matching([high, low, all], {}).map((o) => o.name), ['all'])
  t.same(compose({}, matching([high, low], { zone: 'eu', tier: 'edge' })), { listen: { port: 2 } }, 'the highest priority wins')
  t.throws(() => parseOverlay({ name: 'x y', patch: {}, extra: 1 }), { code: 'INVALID_CONFIG' })
})


t.test('two data planes with different labels: an overlay change reaches only the nodes it selects', async (t) => {
  const main = await namedUpstream(t, 'main')
  const eu = await namedUpstream(t, 'eu')
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json` })
  const admin = operatorClient(t, cp.address, 'admin')
  const op = operatorClient(t, cp.address, 'operator')
  await admin.putConfig({ configJson: JSON.stringify(baseDocument([['main', main.url], ['eu', eu.url]], [{ name: 'api', match: { pathPrefix: '/api' }, cluster: 'main' }])) })

  const dpEu = await startTestDataPlane(t, cp.address, 'dp-eu', { labels: { zone: 'eu-1' } })
  const dpUs = await startTestDataPlane(t, cp.address, 'dp-us', { labels: { zone: 'us-1' } })
  await Promise.all([dpEu.started, dpUs.started])
  t.ok(await serves(dpEu, '/api/1', 'main /api/1'))
  t.ok(await serves(dpUs, '/api/1', 'main /api/1'))

  let usApplied = 0
  dpUs.client.on('applied', () => { usApplied++ })
  const put = await op.putOverlay({ overlayJson: JSON.stringify({ name: 'eu', selector: { zone: 'eu-1' }, patch: { routes: [{ name: 'api', cluster: 'eu' }, { name: 'eu-only', match: { pathPrefix: '/local' }, cluster: 'eu' }] } }) })
  t.match(put, { changed: true, summary: 'overlays: added eu' })
  await waitFor('dp-eu on the eu cluster', () => serves(dpEu, '/api/2', 'eu /api/2'))
  t.ok(await serves(dpEu, '/local/1', 'eu /local/1'), 'the overlay\'s own route')
  t.ok(await serves(dpUs, '/api/2', 'main /api/2'), 'dp-us is not selected: unchanged')
  t.equal((await get(proxyUrl(dpUs, '/local/1'))).status, 404)

  const fleet = await waitFor('dp-eu ACKs the overlay version', async () => {
    const f = await op.getFleet({})
    return f.nodes.find((n) => n.nodeId === 'dp-eu')?.ackedVersion === String(put.version) ? f : undefined
  })
  t.match(fleet.nodes, [{ nodeId: 'dp-eu', overlays: ['eu'], inSync: true }, { nodeId: 'dp-us', overlays: [], inSync: true, ackedVersion: String(put.version - 1) }])
  t.equal(usApplied, 0, 'nothing was pushed to dp-us')

  const composed = await op.getConfig({ compose: true, labels: { zone: 'eu-1' } })
  t.same(composed.overlays, ['eu'])
  t.match(JSON.parse(composed.configJson), { routes: [{ name: 'api', cluster: 'eu' }, { name: 'eu-only' }] })
  t.equal(JSON.parse((await op.getConfig({})).configJson).routes.length, 1, 'without compose: the base document')

  // A base change reaches both; the overlay still applies on top of it.
  await op.putRoute({ routeJson: JSON.stringify({ name: 'new', match: { pathPrefix: '/new' }, cluster: 'main' }), before: 'api' })
  await waitFor('both serve /new', async () => await serves(dpEu, '/new/1', 'main /new/1') && await serves(dpUs, '/new/1', 'main /new/1'))
  t.ok(await serves(dpEu, '/api/3', 'eu /api/3'))
  t.equal(usApplied, 1)

  // An overlay that would break the document it makes is refused.
  const bad = await op.putOverlay({ overlayJson: JSON.stringify({ name: 'broken', selector: { zone: 'us-1' }, patch: { routes: [{ name: 'api', cluster: 'nope' }] } }) }).catch((e: unknown) => e as CallError)
  t.equal((bad as CallError).code, grpc.status.INVALID_ARGUMENT)
  t.match((bad as CallError).issues, [{ path: 'routes[1].cluster', expected: /overlay "broken" makes/ }])

  // Deleting the overlay puts dp-eu back on the base; rollback restores it.
  const del = await op.deleteOverlay({ name: 'eu' })
  await waitFor('dp-eu back on main', () => serves(dpEu, '/api/4', 'main /api/4'))
  await op.rollback({ version: del.version - 1 })
  await waitFor('dp-eu on eu again after the rollback', () => serves(dpEu, '/api/5', 'eu /api/5'))
  t.equal(usApplied, 1, 'neither the delete nor the rollback concerned dp-us')
})

t.test('overlays valid alone but not together: a new node selecting both is not sent that document; the fleet view says why', async (t) => {
  const main = await namedUpstream(t, 'main')
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json` })
  const admin = operatorClient(t, cp.address, 'admin')
  const op = operatorClient(t, cp.address, 'operator')
  await admin.putConfig({ configJson: JSON.stringify(baseDocument([['main', main.url]], [{ name: 'api', match: { pathPrefix: '/api' }, cluster: 'main' }])) })
  await op.putOverlay({ overlayJson: JSON.stringify({ name: 'eu', selector: { zone: 'eu-1' }, patch: { clusters: [{ name: 'eu-api', endpoints: [{ url: main.url }] }], routes: [{ name: 'eu', match: { pathPrefix: '/eu' }, cluster: 'eu-api', $before: 'api' }] } }) })
  await op.putOverlay({ overlayJson: JSON.stringify({ name: 'canary', selector: { track: 'canary' }, priority: 1, patch: { clusters: [{ name: 'eu-api', $delete: true }] } }) })

  let applied = 0
  const dp = await startTestDataPlane(t, cp.address, 'dp-both', { labels: { zone: 'eu-1', track: 'canary' } })
  dp.client.on('applied', () => { applied++ })
  const node = await waitFor('the fleet shows the withheld document', async () => {
    const f = await op.getFleet({})
    const n = f.nodes.find((x) => x.nodeId === 'dp-both')
    return n?.nackError !== undefined && n.nackError !== null ? n : undefined
  })
  t.match(node.nackError, { message: /withheld by the control plane/, issues: [{ path: 'routes[0].cluster', expected: /overlays "eu" \+ "canary" make/ }] })
  t.equal(applied, 0, 'nothing was applied on the node')

  // The withheld combination does not freeze changes that leave it as it is.
  const bump = await admin.putConfig({ configJson: JSON.stringify(baseDocument([['main', main.url]], [{ name: 'api', match: { pathPrefix: '/api/' }, cluster: 'main' }])) })
  t.match(bump, { changed: true }, 'an unrelated base change is taken')
  // A version that mends it reaches the node, and the fleet view clears.
  await op.deleteOverlay({ name: 'canary' })
  await waitFor('dp-both gets the mended document', async () => {
    const n = (await op.getFleet({})).nodes.find((x) => x.nodeId === 'dp-both')
    return n !== undefined && (n.nackError === undefined || n.nackError === null) && applied > 0
  })
  t.ok(applied > 0)
})
