import t from 'tap'
import * as grpc from '@grpc/grpc-js'
import { Analytics, MAX_LATENCY_BOUNDS, latencyMs, quantile } from '../../control-plane/analytics.ts'
import { services } from '../../control-plane/protos.ts'
import { tokenMetadata } from '../../control-plane/operator-client.ts'
import type * as pb from '../../control-plane/generated/types.ts'
import { createForecaster } from '../../control-plane/forecast/index.ts'
import { generateSeries } from '../../control-plane/forecast/synthetic.ts'
import { TOKENS, operatorClient, startTestControlPlane, tempDir, waitFor } from './helpers.ts'

const BOUNDS = [0.1, 0.5, 1]
const T = 1_700_000_000 // a fixed "now", seconds

t.test('quantiles interpolate within the bucket, as histogram_quantile does', async (t) => {
  t.equal(quantile(0.5, BOUNDS, [80, 80, 30, 10]), 0.2)
  t.equal(Math.round(quantile(0.9, BOUNDS, [80, 80, 30, 10]) * 1e6) / 1e6, 0.833333)
  t.equal(quantile(0.99, BOUNDS, [80, 80, 30, 10]), 1, 'a rank in +Inf: the highest finite bound')
  t.equal(quantile(0.5, BOUNDS, [0, 0, 0, 0]), 0, 'empty')
  t.equal(latencyMs(0.99, BOUNDS, [80, 80, 30, 10]), 1000)
  t.equal(latencyMs(0.99, BOUNDS, [0, 0, 0, 0]), undefined, 'an empty histogram has no latency, not 0 ms')
  t.equal(latencyMs(0.99, BOUNDS, undefined), undefined, 'nor has a dropped one')
  t.equal(Math.round(quantile(0.5, BOUNDS, [0, 4, 0, 0]) * 1e9) / 1e9, 0.3, 'interpolated from the lower bound')
})

t.test('two nodes merge into windows of 1m, 5m and 1h; old intervals leave the windows and the ring', async (t) => {
  let now = T * 1000
  const a = new Analytics({ now: () => now })
  a.record('n1', [{ route: 'api', requests: 40, errors: 4, bounds: BOUNDS, buckets: [40, 0, 0, 0] }], T - 7200)
  a.record('n1', [{ route: 'api', requests: 50, errors: 0, bounds: BOUNDS, buckets: [50, 0, 0, 0] }], T - 250)
  a.record('n1', [{ route: 'api', requests: 100, errors: 5, bounds: BOUNDS, buckets: [60, 30, 10, 0] }], T - 5)
  a.record('n2', [{ route: 'api', requests: 100, errors: 15, bounds: BOUNDS, buckets: [20, 50, 20, 10] }], T - 5)

  const [m1] = a.window(60)
  t.match(m1, { route: 'api', windowSeconds: 60, requests: 200, errors: 20, errorRatio: 0.1, nodes: 2, latencyCounts: [80, 80, 30, 10] })
  t.equal(m1?.rate, 200 / 60)
  t.equal(m1?.p50Ms, 200)
  t.equal(Math.round((m1?.p90Ms ?? 0) * 1000) / 1000, 833.333)
  t.equal(m1?.p99Ms, 1000)

  const [m5] = a.window(300)
  t.match(m5, { requests: 250, errors: 20, latencyCounts: [130, 80, 30, 10] })
  t.equal(m5?.rate, 250 / 300)
  t.equal(a.window(3600)[0]?.requests, 250, 'the 2-hour-old interval is not in the last hour')
  t.equal(a.window(6 * 3600)[0]?.requests, 290, 'a 6h window reads the 5-minute tier, which still holds it')

  const series = a.series('api', 300)
  t.same(series.map((p) => p.requests), [40, ...new Array(22).fill(0), 50], 'the 5-minute series: complete intervals only, gaps as zeros')
  t.equal(series[0]?.t, Math.floor((T - 7200) / 300) * 300)

  now = (T + 3 * 3600) * 1000
  t.match(a.window(3600)[0], { requests: 0, rate: 0, p99Ms: 0, nodes: 0 }, 'three hours later the last hour is empty')
  a.record('n1', [{ route: 'api', requests: 1, errors: 0, bounds: BOUNDS, buckets: [1, 0, 0, 0] }], T - 7200 + 7 * 86_400)
  now = (T + 8 * 86_400) * 1000
  t.same(a.series('api', 300)[0], { t: series[0]?.t, requests: 40, errors: 4, buckets: undefined }, 'a week later its histogram made room for a newer one; its counts are kept, its latency is unknown')
  now = (T + 29 * 86_400) * 1000
  t.same(a.series('api', 300), [], 'beyond the 3-week retention nothing is left')
})

t.test('the 5-minute tier holds the history the weekly profile needs', async (t) => {
  let now = 0
  const a = new Analytics({ now: () => now })
  const s = generateSeries({ name: 'weekly', stepMinutes: 5, weeks: 2, seed: 5, peak: 2000, shape: 'consumer', noise: 0.04, drift: 0.05, trendPerWeek: 0, holidays: 0, incidents: 0 })
  const days = 12
  const n = days * 288
  for (let i = 0; i < n; i++) a.record('n1', [{ route: 'api', requests: s.values[i]!, errors: 0, bounds: [], buckets: [] }], s.times[i]! + 1)
  now = (s.times[n - 1]! + 300) * 1000
  const series = a.series('api')
  t.equal(series.length, n, `all ${days} days`)
  const f = createForecaster({ stepSeconds: 300 })
  for (const p of series) f.observe(p.t, p.requests)
  f.forecast(1)
  t.same(f.describe().seasonalities, [86_400, 604_800], 'the forecaster fed from analytics learns the weekly profile')
})

t.test('other bucket bounds are folded into the route\'s; routes are bounded', async (t) => {
  const a = new Analytics({ now: () => T * 1000, maxRoutes: 1, tiers: [{ stepSeconds: 10, slots: 6 }] })
  a.record('n1', [{ route: 'api', requests: 1, errors: 0, bounds: BOUNDS, buckets: [1, 0, 0, 0] }])
  a.record('n2', [{ route: 'api', requests: 4, errors: 0, bounds: [0.05, 0.25, 2], buckets: [1, 1, 1, 1] }])
  a.record('n2', [{ route: 'other', requests: 4, errors: 0, bounds: BOUNDS, buckets: [4, 0, 0, 0] }])
  t.same(a.window(60)[0]?.latencyCounts, [2, 1, 0, 2], '0.05→0.1, 0.25→0.5, 2 and +Inf→+Inf')
  t.same(a.routes(), ['api'])
  t.equal(a.dropped, 1)
})

t.test('folding walks both bound lists once: equal bounds, finer ones and ones past ours', async (t) => {
  const a = new Analytics({ now: () => T * 1000, tiers: [{ stepSeconds: 10, slots: 6 }] })
  a.record('n1', [{ route: 'api', requests: 1, errors: 0, bounds: BOUNDS, buckets: [1, 0, 0, 0] }])
  a.record('n2', [{ route: 'api', requests: 7, errors: 0, bounds: [0.01, 0.1, 0.2, 0.5, 0.7, 5], buckets: [1, 1, 1, 1, 1, 1, 1] }])
  t.same(a.window(60)[0]?.latencyCounts, [3, 2, 1, 2], '0.01 and 0.1→0.1, 0.2 and 0.5→0.5, 0.7→1, 5 and +Inf→+Inf')
})

t.test('a report with too many or unordered latency bounds is not recorded', async (t) => {
  const a = new Analytics({ now: () => T * 1000 })
  const many = Array.from({ length: 100_000 }, (_, i) => (i + 1) / 1000)
  a.record('n1', [{ route: 'big', requests: 1, errors: 0, bounds: many, buckets: [...many.map(() => 0), 1] }])
  a.record('n1', [{ route: 'unordered', requests: 1, errors: 0, bounds: [1, 0.5], buckets: [1, 0, 0] }])
  t.same(a.routes(), [], 'no rings allocated for them')
  const most = many.slice(0, MAX_LATENCY_BOUNDS)
  a.record('n1', [{ route: 'ok', requests: 1, errors: 0, bounds: most, buckets: [...most.map(() => 0), 1] }])
  t.same(a.routes(), ['ok'], `${MAX_LATENCY_BOUNDS} bounds are fine`)
})

t.test('Telemetry.Report refuses a report with more latency bounds than the cap, and counts nothing of it', async (t) => {
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json` })
  const client = new (services().Telemetry)(cp.address, grpc.credentials.createInsecure())
  t.teardown(() => { client.close() })
  const bounds = Array.from({ length: MAX_LATENCY_BOUNDS + 1 }, (_, i) => (i + 1) / 1000)
  const err = await new Promise<grpc.ServiceError | null>((resolve) => {
    const call = (client as unknown as { Report: (md: grpc.Metadata, cb: (err: grpc.ServiceError | null) => void) => grpc.ClientWritableStream<pb.TelemetryReport> })
      .Report(tokenMetadata(TOKENS.dataPlane), resolve)
    call.write({ nodeId: 'n1', instance: 'i', at: '', sequence: 1, routes: [{ route: 'api', requests: 1, errors: 0, latencyBounds: bounds, latencyCounts: [...bounds.map(() => 0), 1] }] })
    call.end()
  })
  t.equal(err?.code, grpc.status.INVALID_ARGUMENT)
  t.match(err?.details, /route "api": 65 latency bounds, more than 64/)
  t.same(cp.analytics.routes(), [])
  t.same((await operatorClient(t, cp.address, 'viewer').getTraffic({})).routes, [], 'nor in the traffic totals')
})

/** Cumulative counters as a data plane reports them. */
const report = (nodeId: string, requests: number, errors: number, perBucket: number[]): pb.TelemetryReport => {
  let c = 0
  return { nodeId, instance: `${nodeId}-i`, at: new Date().toISOString(), routes: [{ route: 'api', requests, errors, latencyBounds: BOUNDS, latencyCounts: perBucket.map((n) => (c += n)) }], sequence: 0 }
}

t.test('Telemetry.Report from two nodes → Operator.GetAnalytics over gRPC', async (t) => {
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json` })
  const client = new (services().Telemetry)(cp.address, grpc.credentials.createInsecure())
  t.teardown(() => { client.close() })
  const stream = (client as unknown as { Report: (md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: pb.ReportSummary) => void) => grpc.ClientWritableStream<pb.TelemetryReport> })
  const done = new Promise<pb.ReportSummary>((resolve, reject) => {
    const call = stream.Report(tokenMetadata(TOKENS.dataPlane), (err, res) => { if (err === null) resolve(res); else reject(err) })
    call.write(report('n1', 60, 4, [50, 10, 0, 0]))
    call.write(report('n2', 100, 15, [20, 50, 20, 10]))
    call.write(report('n1', 100, 5, [60, 30, 10, 0])) // n1 again: +40 requests, +1 error
    call.end()
  })
  t.equal((await done).accepted, 3)

  const viewer = operatorClient(t, cp.address, 'viewer')
  const one = await waitFor('200 requests in the last minute', async () => {
    const r = (await viewer.getAnalytics({ window: '1m' })).routes[0]
    return r?.requests === 200 ? r : undefined
  })
  t.match(one, { route: 'api', windowSeconds: 60, errors: 20, errorRatio: 0.1, nodes: 2, p50Ms: 200, p99Ms: 1000, latencyCounts: [80, 80, 30, 10] })
  t.equal(Math.round(one.rate * 1e6) / 1e6, Math.round(200 / 60 * 1e6) / 1e6)
  for (const [window, seconds] of [['5m', 300], ['1h', 3600]] as const) {
    const r = (await viewer.getAnalytics({ window, route: 'api' })).routes[0]
    t.match(r, { windowSeconds: seconds, requests: 200, p50Ms: 200 }, `the ${window} window`)
    t.equal(Math.round((r?.rate ?? 0) * 1e6) / 1e6, Math.round(200 / seconds * 1e6) / 1e6)
  }
  t.same((await viewer.getAnalytics({ route: 'nope' })).routes, [])
  const bad = await viewer.getAnalytics({ window: 'soon' }).catch((e: unknown) => e as grpc.ServiceError)
  t.equal((bad as grpc.ServiceError).code, grpc.status.INVALID_ARGUMENT)
})
