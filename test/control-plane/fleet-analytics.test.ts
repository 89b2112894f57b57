import t from 'tap'
import * as grpc from '@grpc/grpc-js'
import { request } from 'undici'
import { TrafficTotals } from '../../control-plane/traffic.ts'
import { services } from '../../control-plane/protos.ts'
import { tokenMetadata } from '../../control-plane/operator-client.ts'
import type { RunningControlPlane } from '../../control-plane/server.ts'
import type * as pb from '../../control-plane/generated/types.ts'
import { redisUnavailable, startRedis } from '../helpers/redis.ts'
import { startUpstream } from '../helpers/upstream.ts'
import { TOKENS, baseDocument, operatorClient, proxyUrl, startTestControlPlane, startTestDataPlane, tempDir, waitFor } from './helpers.ts'

const counts = (route: string, requests: number, errors = 0) => ({ route, requests, errors, latencyBounds: [0.1, 1], latencyCounts: [requests, requests, requests] })

t.test('a report is counted once by (node, instance, sequence)', async (t) => {
  const totals = new TrafficTotals()
  t.ok(totals.report('a', 'i1', [counts('api', 10)], { sequence: 1 }))
  t.equal(totals.report('a', 'i1', [counts('api', 10)], { sequence: 1 }), undefined, 'the same report again (relayed after it came directly)')
  t.ok(totals.report('a', 'i1', [counts('api', 20)], { sequence: 3 }))
  t.equal(totals.report('a', 'i1', [counts('api', 15)], { sequence: 2 }), undefined, 'late: its counters are in report 3 already (not a restart)')
  t.ok(totals.report('a', 'i2', [counts('api', 4)], { sequence: 1 }), 'a new instance starts over')
  t.equal(totals.report('a', 'i1', [counts('api', 21)], { sequence: 4 }), undefined, 'a late report of the replaced instance')
  t.equal(totals.totals()[0]?.requests, 24)
  t.equal(totals.stale, 3)

  // A replica that never saw node b's earlier reports takes the increases the relaying replica counted.
  const late = new TrafficTotals()
  const d = late.report('b', 'j1', [counts('api', 1000)], { sequence: 50, known: [{ route: 'api', requests: 7, errors: 1, bounds: [0.1, 1], buckets: [7, 0, 0] }] })
  t.match(d, [{ requests: 7, errors: 1 }], 'not the node\'s whole history at once')
  t.match(late.report('b', 'j1', [counts('api', 1010)], { sequence: 51, known: [{ route: 'api', requests: 99, errors: 0, bounds: [0.1, 1], buckets: [] }] }), [{ requests: 10 }], 'then its own subtraction')
})

type ReportClient = { Report: (md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: pb.ReportSummary) => void) => grpc.ClientWritableStream<pb.TelemetryReport> }

/** Sends reports on one Telemetry stream to `cp` and waits for the answer. */
async function sendReports (t: { teardown (fn: () => unknown): void }, cp: RunningControlPlane, reports: pb.TelemetryReport[]): Promise<number> {
  const client = new (services().Telemetry)(cp.address, grpc.credentials.createInsecure())
  t.teardown(() => { client.close() })
  const summary = await new Promise<pb.ReportSummary>((resolve, reject) => {
    const call = (client as unknown as ReportClient).Report(tokenMetadata(TOKENS.dataPlane), (err, res) => { if (err === null) resolve(res); else reject(err) })
    for (const r of reports) call.write(r)
    call.end()
  })
  return summary.accepted
}

const moved = (sequence: number, requests: number): pb.TelemetryReport => ({ nodeId: 'mover', instance: 'm1', at: new Date().toISOString(), routes: [counts('moved', requests)], sequence })

t.test('two replicas on one Redis: each one\'s analytics, traffic and rules see the whole fleet', { skip: redisUnavailable() }, async (t) => {
  const redis = await startRedis(t)
  const up = await startUpstream((req, res) => { res.writeHead(req.url === '/api/fail' ? 503 : 200); res.end('x') })
  t.teardown(() => up.close())
  const cp1 = await startTestControlPlane(t, { store: redis.url, ruleIntervalMs: 0 })
  const cp2 = await startTestControlPlane(t, { store: redis.url, ruleIntervalMs: 0 })
  await operatorClient(t, cp1.address, 'admin').putConfig({ configJson: JSON.stringify(baseDocument([['up', up.url]], [{ name: 'api', match: { pathPrefix: '/api' }, cluster: 'up' }])) })
  const dp1 = await startTestDataPlane(t, cp1.address, 'dp-1', { telemetryIntervalMs: 50, cacheDir: `${await tempDir(t)}/dp1` })
  const dp2 = await startTestDataPlane(t, cp2.address, 'dp-2', { telemetryIntervalMs: 50, cacheDir: `${await tempDir(t)}/dp2` })
  await Promise.all([dp1.started, dp2.started])

  const send = async (url: string): Promise<void> => { await (await request(url)).body.dump() }
  for (let i = 0; i < 3; i++) await send(proxyUrl(dp1, '/api/ok'))
  await send(proxyUrl(dp2, '/api/ok'))
  await send(proxyUrl(dp2, '/api/fail'))

  for (const [name, cp] of [['replica 1', cp1], ['replica 2', cp2]] as const) {
    const viewer = operatorClient(t, cp.address, 'viewer')
    const api = await waitFor(`${name} sees 5 requests`, async () => {
      const r = (await viewer.getAnalytics({ window: '1m', route: 'api' })).routes[0]
      return r?.requests === 5 ? r : undefined
    })
    t.match(api, { errors: 1, nodes: 2 }, `${name}: both data planes in GetAnalytics`)
    t.equal(api.latencyCounts.reduce((a, b) => a + b, 0), 5)
    t.match((await viewer.getTraffic({})).routes.find((r) => r.route === 'api'), { requests: 5, errors: 1, nodes: 2 }, `${name}: GetTraffic too`)
  }

  // The lease holder's rules read the fleet-wide numbers.
  const rule = { name: 'fleet-errors', route: 'api', when: 'requests >= 5', then: [{ type: 'patch', path: '/routes/api/timeouts/request', value: '3s' }], dryRun: true }
  await operatorClient(t, cp2.address, 'operator').putRule({ ruleJson: JSON.stringify(rule) })
  await waitFor('replica 1 has the rule', () => cp1.rules.rules().length === 1)
  const fired = [...await cp1.rules.tick(), ...await cp2.rules.tick()]
  t.same(fired.map((f) => [f.rule, f.outcome]), [['fleet-errors', 'dry-run']], 'one replica (the lease holder) fires, on the fleet\'s 5 requests')

  // A node that moves between replicas is counted once per report, whichever way each arrives.
  t.equal(await sendReports(t, cp1, [moved(1, 10)]), 1)
  await waitFor('both replicas count report 1', () => cp1.traffic.totals().find((r) => r.route === 'moved')?.requests === 10 && cp2.traffic.totals().find((r) => r.route === 'moved')?.requests === 10)
  t.equal(await sendReports(t, cp2, [moved(2, 15)]), 1)
  await waitFor('both replicas count report 2', () => cp1.traffic.totals().find((r) => r.route === 'moved')?.requests === 15 && cp2.traffic.totals().find((r) => r.route === 'moved')?.requests === 15)
  const dups = [cp1.telemetry.stats.duplicates, cp2.telemetry.stats.duplicates]
  await sendReports(t, cp1, [moved(2, 15)]) // sent twice
  await sendReports(t, cp2, [moved(1, 10)]) // late
  await waitFor('both dropped', () => cp1.telemetry.stats.duplicates === (dups[0] ?? 0) + 1 && cp2.telemetry.stats.duplicates === (dups[1] ?? 0) + 1)
  for (const cp of [cp1, cp2]) {
    t.equal(cp.traffic.totals().find((r) => r.route === 'moved')?.requests, 15)
    t.equal(cp.analytics.window(60, 'moved')[0]?.requests, 15)
  }
  t.equal(cp1.telemetry.stats.relayFailures + cp2.telemetry.stats.relayFailures, 0)
})
