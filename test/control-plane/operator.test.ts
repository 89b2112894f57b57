import t from 'tap'
import * as grpc from '@grpc/grpc-js'
import type { CallError } from '../../control-plane/operator-client.ts'
import { ControlPlaneClient } from '../../src/control-plane-client.ts'
import { testLogger } from '../helpers/proxy.ts'
import { TOKENS, baseDocument, operatorClient, startTestControlPlane, tempDir } from './helpers.ts'

const UP = 'http://127.0.0.1:9'

async function rejection (p: Promise<unknown>): Promise<CallError> {
  try {
    await p
  } catch (err) {
    return err as CallError
  }
  throw new Error('expected the call to fail')
}

t.test('an invalid change is rejected with INVALID_ARGUMENT, the path and the expectation; nothing is stored', async (t) => {
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json` })
  const op = operatorClient(t, cp.address, 'operator')
  await op.putCluster({ clusterJson: JSON.stringify({ name: 'a', endpoints: [{ url: UP }] }) })

  const unknownCluster = await rejection(op.putRoute({ routeJson: JSON.stringify({ name: 'r', match: { pathPrefix: '/' }, cluster: 'nope' }) }))
  t.equal(unknownCluster.code, grpc.status.INVALID_ARGUMENT)
  t.same(unknownCluster.issues, [{ path: 'routes[0].cluster', expected: 'the name of a declared cluster ("nope" is not one of: a)' }])
  t.match(unknownCluster.details, 'routes[0].cluster: the name of a declared cluster')

  const badField = await rejection(op.putCluster({ clusterJson: JSON.stringify({ name: 'b', endpoints: [{ url: 'ftp://x' }] }) }))
  t.equal(badField.code, grpc.status.INVALID_ARGUMENT)
  t.equal(badField.issues[0]?.path, 'clusters[1].endpoints[0].url')
  t.match(badField.issues[0]?.expected, /http:\/\/ or https:\/\/ URL/)

  const typo = await rejection(op.putRoute({ routeJson: JSON.stringify({ name: 'r', cluster: 'a', mtch: {} }) }))
  t.equal(typo.issues[0]?.path, 'routes[0].mtch')
  t.match(typo.issues[0]?.expected, /did you mean "match"/)

  const notJson = await rejection(op.putRoute({ routeJson: '{name: r' }))
  t.equal(notJson.code, grpc.status.INVALID_ARGUMENT)
  t.match(notJson.issues[0]?.expected, /a route as JSON/)

  const inUse = await (async () => {
    await op.putRoute({ routeJson: JSON.stringify({ name: 'r', cluster: 'a' }) })
    return rejection(op.deleteCluster({ name: 'a' }))
  })()
  t.equal(inUse.code, grpc.status.INVALID_ARGUMENT, 'a cluster a route forwards to cannot be deleted')
  t.equal(inUse.issues[0]?.path, 'routes[0].cluster')

  const history = await op.listHistory({})
  t.same(history.entries.map((e) => e.action), ['put_route', 'put_cluster'], 'only the accepted changes made versions')
  t.equal((await op.listAudit({})).entries.length, 2, 'and audit records')
})

t.test('authorization: viewers read, operators change routes and clusters, admins replace the document, data planes only subscribe', async (t) => {
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json` })
  const viewer = operatorClient(t, cp.address, 'viewer')
  const op = operatorClient(t, cp.address, 'operator')
  const admin = operatorClient(t, cp.address, 'admin')
  const dataPlane = operatorClient(t, cp.address, 'dataPlane')
  const { createOperatorClient } = await import('../../control-plane/operator-client.ts')
  const anonymous = createOperatorClient(cp.address)
  const forged = createOperatorClient(cp.address, { token: 'not-a-known-token-at-all' })
  t.teardown(() => { anonymous.close(); forged.close() })

  const cluster = JSON.stringify({ name: 'a', endpoints: [{ url: UP }] })
  const denied = await rejection(viewer.putCluster({ clusterJson: cluster }))
  t.equal(denied.code, grpc.status.PERMISSION_DENIED, 'a viewer cannot PutCluster')
  t.match(denied.details, /"vic" has the viewer role; this call needs operator/)
  await op.putCluster({ clusterJson: cluster })
  t.equal((await rejection(viewer.putRoute({ routeJson: JSON.stringify({ name: 'r', cluster: 'a' }) }))).code, grpc.status.PERMISSION_DENIED, 'a viewer cannot PutRoute')
  t.equal((await rejection(viewer.deleteCluster({ name: 'a' }))).code, grpc.status.PERMISSION_DENIED)
  t.equal((await rejection(viewer.rollback({ version: 1 }))).code, grpc.status.PERMISSION_DENIED)
  t.equal((await viewer.listClusters({})).clustersJson.length, 1, 'a viewer reads')
  t.equal((await viewer.getFleet({})).currentVersion, 1)

  t.equal((await rejection(op.putConfig({ configJson: '{}' }))).code, grpc.status.PERMISSION_DENIED, 'only an admin replaces the whole document')
  t.equal((await admin.putConfig({ configJson: JSON.stringify(baseDocument([['a', UP]])) })).changed, true)

  t.equal((await rejection(anonymous.listRoutes({}))).code, grpc.status.UNAUTHENTICATED, 'no token')
  t.equal((await rejection(forged.listRoutes({}))).code, grpc.status.UNAUTHENTICATED, 'unknown token')
  t.equal((await rejection(dataPlane.listRoutes({}))).code, grpc.status.PERMISSION_DENIED, 'a data-plane token is no operator token')

  // …and an operator token cannot subscribe as a data plane.
  const client = new ControlPlaneClient({ address: cp.address, nodeId: 'intruder', token: TOKENS.operator, apply: async () => {}, log: testLogger(), backoff: { initialMs: 10_000 } })
  t.teardown(() => { client.close() })
  const code = new Promise((resolve) => client.once('disconnected', resolve))
  client.start()
  t.equal(await code, grpc.status.PERMISSION_DENIED)
  t.same((await admin.getFleet({})).nodes, [], 'the refused stream never joined the fleet')

  const audit = await admin.listAudit({})
  t.same(audit.entries.map((e) => [e.actor, e.action]), [['ada', 'put_config'], ['olga', 'put_cluster']], 'the audit log names who')
})

t.test('history and rollback: a rollback is a new version with an old document, audited', async (t) => {
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json`, historyLimit: 4 })
  const op = operatorClient(t, cp.address, 'operator')
  const v1 = await op.putCluster({ clusterJson: JSON.stringify({ name: 'a', endpoints: [{ url: UP }] }), options: { message: 'first', dryRun: false, ifVersion: 0 } })
  const v2 = await op.putRoute({ routeJson: JSON.stringify({ name: 'r1', cluster: 'a' }) })
  const v3 = await op.putRoute({ routeJson: JSON.stringify({ name: 'r0', cluster: 'a' }), before: 'r1' })
  t.same((await op.listRoutes({})).routesJson.map((r) => (JSON.parse(r) as { name: string }).name), ['r0', 'r1'], '`before` places a route')
  t.same([v1.version, v2.version, v3.version], [1, 2, 3])

  const back = await op.rollback({ version: 1, options: { message: 'undo the routes', dryRun: false, ifVersion: 0 } })
  t.equal(back.version, 4, 'a new version')
  t.match(back.summary, /^rollback to v1: routes: removed r0, r1/)
  const now = await op.getConfig({})
  const old = await op.getConfig({ version: 1 })
  t.equal(now.configJson, old.configJson, 'with the document of v1')
  t.equal(now.contentHash, old.contentHash, 'and so its hash')
  t.same((await op.listRoutes({})).routesJson, [])

  const history = await op.listHistory({})
  t.same(history.entries.map((e) => [e.version, e.action, e.author]), [[4, 'rollback', 'olga'], [3, 'put_route', 'olga'], [2, 'put_route', 'olga'], [1, 'put_cluster', 'olga']])
  t.equal(history.entries[3]?.message, 'first')
  t.equal((await op.listHistory({ limit: 1 })).entries.length, 1)

  const [audit] = (await op.listAudit({ limit: 1 })).entries
  t.match(audit, { actor: 'olga', action: 'rollback', target: 'v1', fromVersion: 3, toVersion: 4, message: 'undo the routes' })
  t.match(audit?.at, /^\d{4}-\d\d-\d\dT/)

  // Roll forward again, then past the retained window (historyLimit 4).
  const forward = await op.rollback({ version: 3 })
  t.equal(forward.version, 5)
  t.equal((await op.listRoutes({})).routesJson.length, 2)
  const gone = await rejection(op.rollback({ version: 1 }))
  t.equal(gone.code, grpc.status.NOT_FOUND, 'v1 is no longer retained')
  t.match(gone.details, /version 1 is not retained \(kept: v2–v5\)/)

  const same = await op.rollback({ version: 5 })
  t.equal(same.changed, false, 'rolling back to the current document changes nothing')
  t.equal(same.version, 5)
})

t.test('dry runs, optimistic concurrency, no-op changes and ValidateConfig', async (t) => {
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json` })
  const op = operatorClient(t, cp.address, 'operator')
  const cluster = JSON.stringify({ name: 'a', endpoints: [{ url: UP }] })

  const dry = await op.putCluster({ clusterJson: cluster, options: { dryRun: true, ifVersion: 0, message: '' } })
  t.match(dry, { version: 1, changed: true, dryRun: true, summary: 'clusters: added a' })
  t.equal((await op.getConfig({})).version, 0, 'a dry run stores nothing')

  await op.putCluster({ clusterJson: cluster })
  const again = await op.putCluster({ clusterJson: cluster })
  t.match(again, { version: 1, changed: false, summary: 'no change' }, 'the same cluster again is not a new version')

  const conflict = await rejection(op.putRoute({ routeJson: JSON.stringify({ name: 'r', cluster: 'a' }), options: { ifVersion: 7, dryRun: false, message: '' } }))
  t.equal(conflict.code, grpc.status.FAILED_PRECONDITION)
  t.match(conflict.details, 'the config is at version 1, not 7')
  t.equal((await op.putRoute({ routeJson: JSON.stringify({ name: 'r', cluster: 'a' }), options: { ifVersion: 1, dryRun: false, message: '' } })).version, 2)

  const missing = await rejection(op.deleteRoute({ name: 'nope' }))
  t.equal(missing.code, grpc.status.NOT_FOUND)
  t.equal((await rejection(op.getRoute({ name: 'nope' }))).code, grpc.status.NOT_FOUND)
  t.same(JSON.parse((await op.getRoute({ name: 'r' })).routeJson), { name: 'r', cluster: 'a' }, 'routes are kept as written, without defaults')
  t.equal((await rejection(op.getRoute({ name: '' }))).code, grpc.status.INVALID_ARGUMENT)

  const valid = await op.validateConfig({ configJson: JSON.stringify(baseDocument([['a', UP]], [{ name: 'r', cluster: 'a' }])) })
  t.match(valid, { valid: true, issues: [] })
  t.match(valid.contentHash, /^[0-9a-f]{64}$/)
  const invalid = await op.validateConfig({ configJson: JSON.stringify({ listen: { port: 70000 } }) })
  t.equal(invalid.valid, false)
  t.same(invalid.issues, [{ path: 'listen.port', expected: 'a number <= 65535 (got 70000)' }])
  t.equal((await op.getConfig({})).version, 2, 'validation stores nothing')
})

t.test('the store survives a restart: config, history, audit and the version counter', async (t) => {
  const store = `${await tempDir(t)}/store.json`
  const cp1 = await startTestControlPlane(t, { store })
  const op1 = operatorClient(t, cp1.address, 'operator')
  await op1.putCluster({ clusterJson: JSON.stringify({ name: 'a', endpoints: [{ url: UP }] }) })
  await op1.putRoute({ routeJson: JSON.stringify({ name: 'r', cluster: 'a' }) })
  await op1.deleteRoute({ name: 'r' })
  await cp1.close()

  const cp2 = await startTestControlPlane(t, { store })
  const op2 = operatorClient(t, cp2.address, 'operator')
  t.equal((await op2.getConfig({})).version, 3)
  t.same((await op2.listHistory({})).entries.map((e) => e.version), [3, 2, 1])
  const audit = (await op2.listAudit({})).entries
  t.same(audit.map((e) => [e.seq, e.action, e.target]), [[3, 'delete_route', 'r'], [2, 'put_route', 'r'], [1, 'put_cluster', 'a']])
  t.same(JSON.parse(audit[0]?.beforeJson ?? ''), { name: 'r', cluster: 'a' }, 'a deletion records what was deleted')
  t.equal(audit[0]?.afterJson, '')
  t.equal((await op2.putRoute({ routeJson: JSON.stringify({ name: 'r2', cluster: 'a' }) })).version, 4)
})
