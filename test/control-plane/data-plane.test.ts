import t from 'tap'
import { once } from 'node:events'
import { access, mkdir, readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { DesiredConfig } from '../../control-plane/desired-config.ts'
import { Fleet } from '../../control-plane/fleet.ts'
import { register } from '../../control-plane/services/config-discovery.ts'
import { services } from '../../control-plane/protos.ts'
import { FileStore } from '../../control-plane/store.ts'
import { ControlPlaneClient, restartOnlyChanges } from '../../src/control-plane-client.ts'
import { testLogger } from '../helpers/proxy.ts'
import { baseDocument, namedUpstream, operatorClient, serves, startTestControlPlane, startTestDataPlane, tempDir, waitFor } from './helpers.ts'

const CACHE_FILE = 'outrider-config-cache.json'

t.test('a cached config that validates but does not build is moved aside; the node starts on the control plane\'s config', async (t) => {
  const a = await namedUpstream(t, 'a')
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json` })
  const admin = operatorClient(t, cp.address, 'admin')
  const v1 = (await admin.putConfig({ configJson: JSON.stringify(baseDocument([['a', a.url]], [{ name: 'a', match: { pathPrefix: '/a' }, cluster: 'a' }])) })).version

  const cacheDir = await tempDir(t)
  await mkdir(cacheDir, { recursive: true })
  // A CA file that was rotated away since the cache was written.
  const poisoned = {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    clusters: [{ name: 's', endpoints: [{ url: 'https://127.0.0.1:9' }], tls: { ca: path.join(cacheDir, 'gone-ca.pem') } }],
    routes: [{ name: 's', match: { pathPrefix: '/' }, cluster: 's' }],
  }
  const file = path.join(cacheDir, CACHE_FILE)
  await writeFile(file, JSON.stringify({ version: '7', hash: 'h7', configJson: JSON.stringify(poisoned), weightHints: [], savedAt: new Date().toISOString() }))

  const dp = await startTestDataPlane(t, cp.address, 'dp-poisoned', { cacheDir })
  t.equal(dp.proxy, undefined, 'the cached config did not start, and nothing else was there to serve')
  t.ok(JSON.parse(await readFile(`${file}.bad`, 'utf8')).configJson, 'the cache file was moved aside')
  const applied = once(dp.client, 'applied')
  await dp.started
  t.equal((await applied)[0], String(v1), 'the control plane\'s config applied')
  t.ok(await serves(dp, '/a/1', 'a /a/1'))
  t.equal((JSON.parse(await readFile(file, 'utf8')) as { version: string }).version, String(v1), 'and is the cache now')
})

t.test('a poisoned cache with a bootstrap config starts on the bootstrap config', async (t) => {
  const { testConfig } = await import('../helpers/proxy.ts')
  const cacheDir = await tempDir(t)
  const file = path.join(cacheDir, CACHE_FILE)
  const poisoned = { ...baseDocument([]), clusters: [{ name: 's', endpoints: [{ url: 'https://127.0.0.1:9' }], tls: { ca: path.join(cacheDir, 'gone-ca.pem') } }] }
  await writeFile(file, JSON.stringify({ version: '7', hash: 'h7', configJson: JSON.stringify(poisoned), savedAt: new Date().toISOString() }))
  const dp = await startTestDataPlane(t, '127.0.0.1:1', 'dp-boot', { cacheDir, bootstrap: testConfig({}) })
  t.equal(dp.proxy?.snapshot.source, 'bootstrap')
  await access(`${file}.bad`)
  t.equal(dp.ready(), false, 'not ready: nothing from the control plane runs')
})

t.test('a document over gRPC\'s default 4 MiB reaches the data plane', async (t) => {
  const a = await namedUpstream(t, 'a')
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json` })
  const admin = operatorClient(t, cp.address, 'admin')
  await admin.putConfig({ configJson: JSON.stringify(baseDocument([['a', a.url]], [{ name: 'a', match: { pathPrefix: '/a' }, cluster: 'a' }])) })
  const dp = await startTestDataPlane(t, cp.address, 'dp-big')
  await dp.started
  // Each write under the control plane's own 4 MiB request limit; together over 4 MiB.
  let put
  for (const n of ['big1', 'big2']) put = await admin.putRoute({ routeJson: JSON.stringify({ name: n, match: { path: `/${n}${'x'.repeat(2_500_000)}` }, cluster: 'a' }) })
  const version = String(put?.version)
  await waitFor('the big version applied', () => dp.client.version === version, 20_000)
  t.ok(await serves(dp, '/a/2', 'a /a/2'))
  t.match((await admin.getFleet({})).nodes, [{ nodeId: 'dp-big', ackedVersion: version, nackedVersion: '' }])
})

t.test('a document over the push limit is withheld, and the fleet view says why', async (t) => {
  const a = await namedUpstream(t, 'a')
  const desired = await DesiredConfig.open(new FileStore(`${await tempDir(t)}/store.json`))
  const fleet = new Fleet()
  const server = new grpc.Server()
  register(server, { desired, fleet, tokens: undefined, log: testLogger(), maxDocumentBytes: 4096 })
  const port = await new Promise<number>((resolve, reject) => { server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => { if (err === null) resolve(p); else reject(err) }) })
  t.teardown(() => { server.forceShutdown() })
  const small = baseDocument([['a', a.url]], [{ name: 'a', match: { pathPrefix: '/a' }, cluster: 'a' }])
  const v1 = (await desired.change('test', { action: 'put_config', document: small })).version

  const dp = await startTestDataPlane(t, `127.0.0.1:${port}`, 'dp-limit')
  await dp.started
  await waitFor('v1 ACKed', () => fleet.list().find((n) => n.nodeId === 'dp-limit')?.ackedVersion === String(v1))

  const big = await desired.change('test', { action: 'put_route', route: { name: 'big', match: { path: `/${'x'.repeat(5000)}` }, cluster: 'a' } })
  const node = await waitFor('withheld', () => { const n = fleet.list().find((n) => n.nodeId === 'dp-limit'); return n?.nackedVersion === String(big.version) ? n : undefined })
  t.match(node.nackError?.message, /^withheld by the control plane: the document for this node is \d+ bytes, more than the 4096 bytes a data plane accepts$/)
  t.equal(node.ackedVersion, String(v1), 'the node still runs v1')
  t.equal(dp.client.version, String(v1))
  t.ok(dp.client.connected, 'and its stream stays up')
})

t.test('telemetry: while the control plane does not read, reports are skipped, not queued', async (t) => {
  let opened = 0
  const server = new grpc.Server()
  server.addService(services().Telemetry.service, {
    // A stalled control plane: takes the stream, never reads it.
    Report: (call: grpc.ServerReadableStream<unknown, unknown>) => { opened++; call.pause() },
  })
  const port = await new Promise<number>((resolve, reject) => { server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => { if (err === null) resolve(p); else reject(err) }) })
  t.teardown(() => { server.forceShutdown() })
  // Big reports, so HTTP/2 flow control and gRPC's buffers fill after a few.
  const routes = Array.from({ length: 5000 }, (_, i) => ({ route: `route-${i}`, requests: i, errors: 0, latencyBounds: [0.1, 1], latencyCounts: [i, i, i] }))
  const client = new ControlPlaneClient({
    address: `127.0.0.1:${port}`,
    nodeId: 'stalled',
    log: testLogger(),
    backoff: { initialMs: 50, maxMs: 400 },
    apply: async () => {},
    telemetry: { intervalMs: 5, read: async () => routes },
  })
  client.start()
  t.teardown(() => { client.close() })
  await waitFor('a skipped report', () => client.reports.skipped > 0, 20_000)
  const sent = client.reports.sent
  await waitFor('many more skipped', () => client.reports.skipped > 50, 20_000)
  t.equal(client.reports.sent, sent, 'nothing more was written while the last report waits')
  t.equal(opened, 1, 'on the one stream')
})

t.test('a push that changes what only a restart applies is NACKed and cached; the restarted node runs it and ACKs', async (t) => {
  const a = await namedUpstream(t, 'a')
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json` })
  const admin = operatorClient(t, cp.address, 'admin')
  const doc = baseDocument([['a', a.url]], [{ name: 'a', match: { pathPrefix: '/a' }, cluster: 'a' }])
  const v1 = (await admin.putConfig({ configJson: JSON.stringify(doc) })).version
  const cacheDir = await tempDir(t)
  const dp = await startTestDataPlane(t, cp.address, 'dp-move', { cacheDir })
  await dp.started
  await waitFor('v1 applied', () => dp.client.version === String(v1))

  const v2 = (await admin.putConfig({ configJson: JSON.stringify({ ...doc, listen: { host: '127.0.0.1', port: 0, h2c: true }, routes: [] }) })).version
  const node = await waitFor('the NACK', async () => (await admin.getFleet({})).nodes.find((n) => n.nodeId === 'dp-move' && n.nackedVersion === String(v2)))
  t.equal(node.ackedVersion, String(v1), 'the fleet view does not show it in sync')
  t.match(node.nackError, { message: /^changing listen\.h2c \(false → true\) needs a restart; cached: the next start runs it$/, issues: [{ path: 'listen.h2c', expected: 'false → true' }] })
  t.equal(dp.proxy?.snapshot.config.listen.h2c, false)
  t.ok(await serves(dp, '/a/1', 'a /a/1'), 'the running config, routes too, stays as it was')
  const cached = JSON.parse(await readFile(path.join(cacheDir, CACHE_FILE), 'utf8')) as { version: string }
  t.equal(cached.version, String(v2), 'cached for the next start')

  await dp.shutdown(100)
  const again = await startTestDataPlane(t, cp.address, 'dp-move', { cacheDir })
  t.equal(again.proxy?.snapshot.config.listen.h2c, true, 'the restarted node runs it')
  await waitFor('the ACK', async () => (await admin.getFleet({})).nodes.find((n) => n.nodeId === 'dp-move')?.ackedVersion === String(v2))
  t.pass('and the fleet view shows it in sync')
})

t.test('restartOnlyChanges names every section a running proxy cannot change in place', async (t) => {
  const { parseConfig } = await import('../../src/config/load.ts')
  const cfg = (doc: unknown) => parseConfig(JSON.stringify(doc), 'test.json')
  const base = cfg({})
  t.same(restartOnlyChanges(base, cfg({ routes: [], clusters: [] })), [], 'routes and clusters change in place')
  const moved = cfg({ listen: { host: '127.0.0.2', port: 81 }, admin: { port: 9902 }, limits: { maxHeaderSize: 1024 } })
  t.same(restartOnlyChanges(base, moved).map((i) => i.path), ['listen.host', 'listen.port', 'admin.port', 'limits.maxHeaderSize'])
})
