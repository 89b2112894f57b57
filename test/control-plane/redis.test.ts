import t from 'tap'
import * as grpc from '@grpc/grpc-js'
import { startRedis, redisUnavailable } from '../helpers/redis.ts'
import { RedisStore } from '../../control-plane/redis-store.ts'
import { baseDocument, namedUpstream, operatorClient, serves, startTestControlPlane, startTestDataPlane, tempDir, waitFor } from './helpers.ts'


t.test('two control-plane replicas on one Redis: a change on one reaches the data planes of the other', { skip: redisUnavailable() }, async (t) => {
  const redis = await startRedis(t)
  const a = await namedUpstream(t, 'a')
  const b = await namedUpstream(t, 'b')
  const dir = await tempDir(t)
  const cp1 = await startTestControlPlane(t, { store: redis.url })
  const cp2 = await startTestControlPlane(t, { store: redis.url })
  const admin1 = operatorClient(t, cp1.address, 'admin')
  const op1 = operatorClient(t, cp1.address, 'operator')
  const op2 = operatorClient(t, cp2.address, 'operator')

  const v1 = (await admin1.putConfig({ configJson: JSON.stringify(baseDocument([['a', a.url], ['b', b.url]], [{ name: 'a', match: { pathPrefix: '/a' }, cluster: 'a' }])) })).version
  const dp1 = await startTestDataPlane(t, cp1.address, 'dp-1', { cacheDir: `${dir}/dp1` })
  const dp2 = await startTestDataPlane(t, cp2.address, 'dp-2', { cacheDir: `${dir}/dp2` })
  await Promise.all([dp1.started, dp2.started])
  t.ok(await serves(dp2, '/a/1', 'a /a/1'), 'the replica that did not take the change serves it to its data plane')
  t.equal(cp2.desired.current?.version, v1)

  // A change through replica 2 reaches the data plane connected to replica 1.
  const put = await op2.putRoute({ routeJson: JSON.stringify({ name: 'b', match: { pathPrefix: '/b' }, cluster: 'b' }) })
  t.equal(put.version, v1 + 1)
  await waitFor('dp-1 serves /b', () => serves(dp1, '/b/1', 'b /b/1'))
  t.pass('dp-1 (on replica 1) serves the route put through replica 2')
  t.same((await op1.listHistory({})).entries.map((e) => e.version), [v1 + 1, v1], 'replica 1 sees the history')

  // Concurrent changes on both replicas: none is lost, versions never collide.
  const results = await Promise.all([...Array(5).keys()].flatMap((i) => [
    op1.putCluster({ clusterJson: JSON.stringify({ name: `one-${i}`, endpoints: [{ url: a.url }] }) }),
    op2.putCluster({ clusterJson: JSON.stringify({ name: `two-${i}`, endpoints: [{ url: b.url }] }) }),
  ]))
  t.same(results.map((r) => r.version).sort((x, y) => x - y), [...Array(10).keys()].map((i) => v1 + 2 + i), 'ten consecutive versions')
  await waitFor('both replicas at the last version', () => cp1.desired.current?.version === v1 + 11 && cp2.desired.current?.version === v1 + 11)
  t.equal(cp1.desired.clusters().length, 12, 'every cluster landed')
  t.equal((await op1.listAudit({})).entries.length, 12, 'and every audit record')

  // Optimistic concurrency holds across replicas.
  const stale = await op1.deleteRoute({ name: 'b', options: { ifVersion: v1 + 1, dryRun: false, message: '' } }).catch((e: unknown) => e as grpc.ServiceError)
  t.equal((stale as grpc.ServiceError).code, grpc.status.FAILED_PRECONDITION)

  // Weight hints set on replica 1 reach dp-2 (on replica 2).
  let hintsInForce = 0
  dp2.client.on('weight-hints', (n: number) => { hintsInForce = n })
  await op1.setWeightHints({ cluster: 'a', hints: [{ endpoint: a.url, weight: 4 }] })
  await waitFor('dp-2 got the hint', () => hintsInForce === 1)
  t.same(cp2.desired.weightHints(), { a: { [new URL(a.url).origin]: 4 } })

  // A third replica starting later reads the shared state.
  const cp3 = await startTestControlPlane(t, { store: redis.url })
  t.equal(cp3.desired.current?.version, v1 + 11)

  // One replica at a time holds the rules lease.
  const s1 = new RedisStore(redis.url, { prefix: 'lease-test:' })
  const s2 = new RedisStore(redis.url, { prefix: 'lease-test:' })
  t.teardown(async () => { await s1.close(); await s2.close() })
  t.same([await s1.lease(60_000), await s2.lease(60_000), await s1.lease(60_000)], [true, false, true])
})
