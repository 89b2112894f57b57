import t from 'tap'
import { createMetrics, metricsJson, WorkerMetrics, RouteMetrics, type ProxyMetrics } from '../../src/metrics.ts'
import { parseMetrics } from '../helpers/metrics.ts'

/** The primary's merge of its workers' metrics (src/metrics.ts WorkerMetrics), on real worker registries. */

/** A worker's metric set that has answered `n` requests on route "all" and counted one config load. */
function worker (): { metrics: ProxyMetrics, serve: (n: number) => void } {
  const metrics = createMetrics({ defaultMetrics: false })
  const route = new RouteMetrics(metrics, 'all')
  metrics.configReloads.labels('success').inc()
  metrics.endpointHealthy.labels('up', 'http://a').set(1)
  return { metrics, serve: (n) => { for (let i = 0; i < n; i++) route.record('GET', 200, 0.001) } }
}

/** The merged exposition as `name{labels}` → value. */
async function scrape (merged: WorkerMetrics, live: number[], late: number): Promise<Map<string, number>> {
  return parseMetrics(await (await merged.merge(live, late)).metrics())
}

const REQUESTS = 'outrider_requests_total{route="all",method="GET",status_class="2xx"}'
const DURATIONS = 'outrider_request_duration_seconds_count{route="all"}'
const HEALTHY = 'outrider_endpoint_healthy{cluster="up",endpoint="http://a"}'

t.test('counters never go down: a late worker is in the scrape with its last answer, an exited one\'s counts stay', async (t) => {
  const merged = new WorkerMetrics()
  const [a, b] = [worker(), worker()]
  a.serve(10)
  b.serve(14)
  merged.answered(1, await metricsJson(a.metrics.registry))
  merged.answered(2, await metricsJson(b.metrics.registry))
  let m = await scrape(merged, [1, 2], 0)
  t.equal(m.get(REQUESTS), 24)
  t.equal(m.get(DURATIONS), 24)
  t.equal(m.get('outrider_workers_late'), 0)

  // Worker 2 stops answering (SIGSTOP, a busy loop): its last answer stands.
  a.serve(1)
  merged.answered(1, await metricsJson(a.metrics.registry))
  m = await scrape(merged, [1, 2], 1)
  t.equal(m.get(REQUESTS), 25, 'not 11')
  t.equal(m.get(DURATIONS), 25, 'histograms too')
  t.equal(m.get('outrider_workers_late'), 1)

  // Worker 2 exits and worker 3 replaces it, from zero.
  merged.exited(2)
  const c = worker()
  c.metrics.endpointHealthy.labels('up', 'http://a').set(0)
  c.serve(2)
  merged.answered(3, await metricsJson(c.metrics.registry))
  merged.answered(1, await metricsJson(a.metrics.registry))
  m = await scrape(merged, [1, 3], 0)
  t.equal(m.get(REQUESTS), 27, 'the exited worker\'s 14 stay in the sum')
  t.equal(m.get(DURATIONS), 27)
  t.equal(m.get(HEALTHY), 0, 'gauges are the live workers\' only')

  // Both exit: what they counted stays, folded together.
  merged.exited(1)
  merged.exited(3)
  const d = worker()
  merged.answered(4, await metricsJson(d.metrics.registry))
  m = await scrape(merged, [4], 0)
  t.equal(m.get(REQUESTS), 27)
  t.equal(m.get('outrider_request_duration_seconds_bucket{le="+Inf",route="all"}'), 27)
  t.equal(m.get(HEALTHY), 1, 'the exited workers\' gauges are gone')
})

t.test('config reloads are the primary\'s count, not each worker\'s', async (t) => {
  const merged = new WorkerMetrics()
  merged.configReloads.labels('success').inc()
  const [a, b] = [worker(), worker()]
  merged.answered(1, await metricsJson(a.metrics.registry))
  merged.answered(2, await metricsJson(b.metrics.registry))
  let m = await scrape(merged, [1, 2], 0)
  t.equal(m.get('outrider_config_reloads_total{result="success"}'), 1, 'one load, two workers')
  merged.exited(2)
  m = await scrape(merged, [1], 0)
  t.equal(m.get('outrider_config_reloads_total{result="success"}'), 1, 'an exited worker\'s count is not folded in either')
})
