import t from 'tap'
import { readFile } from 'node:fs/promises'
import * as grpc from '@grpc/grpc-js'
import type { ManagedProxy } from '../../src/control-plane-client.ts'
import { baseDocument, operatorClient, startTestControlPlane, startTestDataPlane, tempDir, waitFor } from './helpers.ts'

const A = 'http://127.0.0.1:9'
const B = 'http://127.0.0.2:9'

/** The hint each endpoint's balancer holds, as the admin API's cluster state shows it. */
function hints (dp: ManagedProxy): Array<number | null> {
  const state = dp.proxy?.snapshot.clusters.get('svc')?.state() as { endpoints: Array<{ score: { weightHint?: number | null } }> } | undefined
  return state?.endpoints.map((e) => e.score.weightHint ?? null) ?? []
}

t.test('weight hints set through the Operator API reach every data plane\'s balancers, survive a rebuild and can be cleared', async (t) => {
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json` })
  const admin = operatorClient(t, cp.address, 'admin')
  const op = operatorClient(t, cp.address, 'operator')
  const viewer = operatorClient(t, cp.address, 'viewer')
  const doc = baseDocument([], [{ name: 'r', match: { pathPrefix: '/' }, cluster: 'svc' }])
  doc.clusters = [{ name: 'svc', endpoints: [{ url: A }, { url: B }], loadBalancer: { policy: 'peak_ewma' } }]
  const v1 = (await admin.putConfig({ configJson: JSON.stringify(doc) })).version
  const dps = await Promise.all(['dp-1', 'dp-2'].map((id) => startTestDataPlane(t, cp.address, id)))
  await Promise.all(dps.map((dp) => dp.started))
  for (const dp of dps) t.same(hints(dp), [null, null])

  const set = await op.setWeightHints({ cluster: 'svc', hints: [{ endpoint: `${A}/ignored-path`, weight: 3 }, { endpoint: B, weight: 0.5 }], message: 'drain b' })
  t.same(set, { changed: true, hints: [{ cluster: 'svc', endpoint: A, weight: 3 }, { cluster: 'svc', endpoint: 'http://127.0.0.2:9', weight: 0.5 }] })
  for (const [i, dp] of dps.entries()) {
    await waitFor(`dp-${i + 1} holds the hints`, () => hints(dp).join() === '3,0.5')
    t.pass(`dp-${i + 1}'s balancer weighs the endpoints 3 and 0.5`)
  }
  t.equal((await viewer.getConfig({})).version, v1, 'no config version')
  const audit = (await viewer.listAudit({ limit: 1 })).entries[0]
  t.match(audit, { action: 'set_weight_hints', actor: 'olga', target: 'svc', message: 'drain b', fromVersion: v1, toVersion: v1 })
  t.same(JSON.parse(audit?.afterJson ?? ''), { [A]: 3, 'http://127.0.0.2:9': 0.5 })

  // A config change builds a new snapshot: the hints are set on its balancers again.
  await op.putRoute({ routeJson: JSON.stringify({ name: 'other', match: { pathPrefix: '/other' }, cluster: 'svc' }), before: 'r' })
  await waitFor('dp-1 on the new version', () => dps[0]?.client.version === String(v1 + 1))
  t.same(hints(dps[0] as ManagedProxy), [3, 0.5], 'the new snapshot carries the hints')

  await op.setWeightHints({ cluster: 'svc', hints: [{ endpoint: A, weight: 2 }], replace: true })
  await waitFor('b cleared, a changed', () => hints(dps[1] as ManagedProxy).join() === '2,')
  t.same((await viewer.listWeightHints({})).hints, [{ cluster: 'svc', endpoint: A, weight: 2 }])
  const dry = await op.setWeightHints({ cluster: 'svc', hints: [{ endpoint: A, weight: 0 }], dryRun: true })
  t.same(dry, { changed: true, hints: [] }, 'a dry run says what would be')
  t.same((await viewer.listWeightHints({ cluster: 'svc' })).hints.length, 1, 'and changes nothing')

  const errors = await Promise.all([
    op.setWeightHints({ cluster: 'nope', hints: [{ endpoint: A, weight: 1 }] }),
    op.setWeightHints({ cluster: 'svc', hints: [{ endpoint: 'http://10.9.9.9', weight: 1 }] }),
    op.setWeightHints({ cluster: 'svc', hints: [{ endpoint: A, weight: -1 }] }),
    viewer.setWeightHints({ cluster: 'svc', hints: [{ endpoint: A, weight: 1 }] }),
  ].map((p) => p.then(() => undefined, (e: unknown) => (e as grpc.ServiceError).code)))
  t.same(errors, [grpc.status.NOT_FOUND, grpc.status.INVALID_ARGUMENT, grpc.status.INVALID_ARGUMENT, grpc.status.PERMISSION_DENIED])
})

t.test('a data plane restarted while the control plane is down keeps the cached weight hints', async (t) => {
  const dir = await tempDir(t)
  const cp = await startTestControlPlane(t, { store: `${dir}/store.json` })
  const doc = baseDocument([], [{ name: 'r', match: { pathPrefix: '/' }, cluster: 'svc' }])
  doc.clusters = [{ name: 'svc', endpoints: [{ url: A }, { url: B }], loadBalancer: { policy: 'peak_ewma' } }]
  await operatorClient(t, cp.address, 'admin').putConfig({ configJson: JSON.stringify(doc) })
  const first = await startTestDataPlane(t, cp.address, 'dp-1', { cacheDir: `${dir}/cache` })
  await first.started
  await operatorClient(t, cp.address, 'operator').setWeightHints({ cluster: 'svc', hints: [{ endpoint: B, weight: 7 }] })
  await waitFor('hint applied', () => hints(first).join() === ',7')
  await waitFor('hint cached', async () => (JSON.parse(await readFile(`${dir}/cache/outrider-config-cache.json`, 'utf8')) as { weightHints?: unknown[] }).weightHints?.length === 1)
  await first.shutdown(100)
  cp.kill()

  const second = await startTestDataPlane(t, cp.address, 'dp-1', { cacheDir: `${dir}/cache` })
  await second.started
  t.same(hints(second), [null, 7], 'the hint from the cache, with the control plane dead')
})
