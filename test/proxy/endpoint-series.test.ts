import t from 'tap'
import { Snapshot } from '../../src/snapshot.ts'
import { createMetrics, type ProxyMetrics } from '../../src/metrics.ts'
import { testConfig, testLogger } from '../helpers/proxy.ts'

/** Per-endpoint series (src/metrics.ts EndpointSeries): they follow the clusters the running snapshots use. */

const A = 'http://127.0.0.1:9'
const B = 'http://127.0.0.1:10'

function config (clusters: Array<{ name: string, endpoints: string[], connectionsPerEndpoint?: number }>): ReturnType<typeof testConfig> {
  return testConfig({
    clusters: clusters.map((c) => ({ name: c.name, endpoints: c.endpoints.map((url) => ({ url })), circuitBreaker: { trigger: { by: 'consecutive', failures: 1 } }, ...(c.connectionsPerEndpoint === undefined ? {} : { connectionsPerEndpoint: c.connectionsPerEndpoint }) })),
    routes: [{ name: 'r', cluster: clusters[0]?.name }],
  })
}

/** `name{cluster="…",endpoint="…"...}` of every per-endpoint series in the registry. */
async function series (metrics: ProxyMetrics): Promise<string[]> {
  const out: string[] = []
  for (const m of await metrics.registry.getMetricsAsJSON()) {
    if (!['outrider_endpoint_healthy', 'outrider_circuit_state', 'outrider_circuit_transitions_total', 'outrider_outlier_ejections_total'].includes(m.name)) continue
    for (const v of m.values) out.push(`${m.name}{${String(v.labels.cluster)},${String(v.labels.endpoint)}${v.labels.to === undefined ? '' : `,${String(v.labels.to)}`}}`)
  }
  return sorted(out)
}

function sorted (list: string[]): string[] {
  return [...list].sort()
}

t.test('a reload that removes an endpoint or a cluster removes its series; a kept endpoint keeps them', async (t) => {
  const metrics = createMetrics({ defaultMetrics: false })
  const options = { source: 'test', metrics, log: testLogger() }
  const first = await Snapshot.build(config([{ name: 'up', endpoints: [A, B] }]), options)
  // A breaker transition: the counter has a series per state reached.
  first.clusters.get('up')?.endpoints[1]?.breaker?.failure()
  t.same(await series(metrics), sorted([
    'outrider_circuit_state{up,}', 'outrider_circuit_state{up,http://127.0.0.1:10}', 'outrider_circuit_state{up,http://127.0.0.1:9}',
    'outrider_circuit_transitions_total{up,http://127.0.0.1:10,open}',
    'outrider_endpoint_healthy{up,http://127.0.0.1:10}', 'outrider_endpoint_healthy{up,http://127.0.0.1:9}',
  ]))

  // B removed: a new cluster "up" is built while the old one drains.
  const second = await Snapshot.build(config([{ name: 'up', endpoints: [A] }]), { ...options, previous: first })
  t.equal((await series(metrics)).filter((s) => s.includes(':10')).length, 3, 'B\'s series stay while the old cluster serves')
  await first.retire(0)
  t.same(await series(metrics), sorted(['outrider_circuit_state{up,}', 'outrider_circuit_state{up,http://127.0.0.1:9}', 'outrider_endpoint_healthy{up,http://127.0.0.1:9}']),
    'B\'s series went with the old cluster; A\'s, shared with the new one, stay')

  // An unchanged cluster is kept across a reload: its series stay.
  const third = await Snapshot.build(config([{ name: 'up', endpoints: [A] }]), { ...options, previous: second })
  t.equal(third.clusters.get('up'), second.clusters.get('up'), 'the same cluster')
  await second.retire(0)
  t.equal((await series(metrics)).length, 3, 'still there')

  // The cluster replaced by another of a new name: nothing of "up" is left.
  const fourth = await Snapshot.build(config([{ name: 'down', endpoints: [B] }]), { ...options, previous: third })
  await third.retire(0)
  t.same(await series(metrics), sorted(['outrider_circuit_state{down,}', 'outrider_circuit_state{down,http://127.0.0.1:10}', 'outrider_endpoint_healthy{down,http://127.0.0.1:10}']))
  await fourth.retire(0)
  t.same(await series(metrics), [], 'no snapshot left, no series')
})

t.test('a drained cluster no longer writes its endpoints\' series: its successor speaks for them', async (t) => {
  const metrics = createMetrics({ defaultMetrics: false })
  const options = { source: 'test', metrics, log: testLogger() }
  const first = await Snapshot.build(config([{ name: 'up', endpoints: [A] }]), options)
  const old = first.clusters.get('up')
  const second = await Snapshot.build(config([{ name: 'up', endpoints: [A], connectionsPerEndpoint: 3 }]), { ...options, previous: first })
  t.not(second.clusters.get('up'), old, 'a new cluster')
  await first.retire(0)
  // A late verdict of the old cluster (a request it dispatched before draining).
  old?.endpoints[0]?.breaker?.failure()
  t.same(await series(metrics), sorted(['outrider_circuit_state{up,}', 'outrider_circuit_state{up,http://127.0.0.1:9}', 'outrider_endpoint_healthy{up,http://127.0.0.1:9}']), 'no transition written')
  const state = (await metrics.circuitState.get()).values.find((v) => v.labels.endpoint === A)
  t.equal(state?.value, 0, 'the new cluster\'s closed circuit, not the old one\'s open one')
  await second.retire(0)
})
