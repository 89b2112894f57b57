import t from 'tap'
import { Agent, request } from 'undici'
import { startTestProxy, type TestProxy } from '../helpers/proxy.ts'
import { startOtlpReceiver, type ReceiverBehaviour, type OtlpReceiver } from '../helpers/otlp-receiver.ts'
import { startUpstream } from '../helpers/upstream.ts'
import { droppingPort } from '../helpers/ports.ts'
import { SPANS_DROPPED_METRIC, type DropReason } from '../../src/tracing.ts'

/**
 * Spans that never reach the collector are counted in
 * `outrider_tracing_spans_dropped_total{reason}` (issue #7): a collector that
 * is down or refusing (`export_failed`) and one that cannot keep up, so the
 * export queue overflows (`queue_full`). Waits poll with a generous deadline;
 * nothing here depends on how fast the machine is.
 */

/** The SDK's queue bound, which src/tracing.ts enforces and counts against. */
const MAX_QUEUE = 2048

async function receiver (t: { teardown (fn: () => unknown): void }, behaviour: ReceiverBehaviour): Promise<OtlpReceiver> {
  const r = await startOtlpReceiver(behaviour)
  t.teardown(r.close)
  return r
}

async function metricsText (proxy: TestProxy): Promise<string> {
  const res = await request(`${proxy.adminUrl}/metrics`)
  return res.body.text()
}

async function dropped (proxy: TestProxy, reason: DropReason): Promise<number | undefined> {
  const m = new RegExp(`^${SPANS_DROPPED_METRIC}\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(await metricsText(proxy))
  return m === null ? undefined : Number(m[1])
}

/** Polls until `check` holds; fails after a deadline far beyond any normal run. */
async function eventually (what: string, check: () => Promise<boolean>, deadlineMs = 60_000): Promise<void> {
  const end = Date.now() + deadlineMs
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

function doc (endpoint: string, upstreamUrl: string, tracing: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    tracing: { endpoint, exportDelay: 20, exportTimeout: 500, ...tracing },
    clusters: [{ name: 'c', endpoints: [{ url: upstreamUrl }] }],
    routes: [{ name: 'api', match: { pathPrefix: '/api/' }, cluster: 'c' }],
  }
}

t.test('tracing off: no dropped-span metric at all', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy({ clusters: [{ name: 'c', endpoints: [{ url: up.url }] }], routes: [{ name: 'api', match: { pathPrefix: '/' }, cluster: 'c' }] }, t)
  t.notMatch(await metricsText(proxy), SPANS_DROPPED_METRIC)
})

t.test('both reasons are exported at 0 as soon as tracing is on', async (t) => {
  const r = await receiver(t, 'ok')
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(doc(r.url, up.url), t)
  t.equal(await dropped(proxy, 'queue_full'), 0)
  t.equal(await dropped(proxy, 'export_failed'), 0)
  const res = await request(`${proxy.url}/api/ok`)
  await res.body.text()
  await r.waitForSpans(2)
  t.equal(await dropped(proxy, 'export_failed'), 0, 'a delivered export drops nothing')
})

t.test('a collector that is down: the spans of the failed export are counted', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(doc(`http://127.0.0.1:${await droppingPort(t)}/v1/traces`, up.url), t)
  const res = await request(`${proxy.url}/api/x`)
  await res.body.text()
  t.equal(res.statusCode, 200, 'the request itself is not affected')
  // One exchange: a SERVER and a CLIENT span, in one batch.
  await eventually('export_failed counts 2 spans', async () => (await dropped(proxy, 'export_failed') ?? 0) >= 2)
  t.equal(await dropped(proxy, 'export_failed'), 2)
  t.equal(await dropped(proxy, 'queue_full'), 0)
})

t.test('a collector answering 503: the spans are counted once the exporter gives up', async (t) => {
  const r = await receiver(t, 503)
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(doc(r.url, up.url), t)
  const res = await request(`${proxy.url}/api/x`)
  await res.body.text()
  await eventually('export_failed counts 2 spans', async () => (await dropped(proxy, 'export_failed') ?? 0) >= 2)
  t.ok(r.contentTypes.length >= 1, 'the export reached the collector and was refused')
  t.equal(await dropped(proxy, 'export_failed'), 2)
})

t.test('a collector that stops reading: the queue fills and every span beyond it is counted as queue_full', async (t) => {
  const r = await receiver(t, 'hold')
  const up = await startUpstream()
  t.teardown(up.close)
  // The held export stays in flight for the whole test: nothing else leaves the queue.
  const proxy = await startTestProxy(doc(r.url, up.url, { exportTimeout: '10m' }), t)
  // Requests no route takes: one SERVER span each, ended before the 404 is written.
  const requests = MAX_QUEUE + 700
  const agent = new Agent({ connections: 16 })
  t.teardown(() => agent.close())
  for (let sent = 0; sent < requests;) {
    const batch: Array<Promise<unknown>> = []
    for (let i = 0; i < 64 && sent < requests; i++, sent++) {
      batch.push(request(`${proxy.url}/unrouted/${sent}`, { dispatcher: agent }).then(async (res) => { await res.body.text(); return res.statusCode }))
    }
    const statuses = await Promise.all(batch)
    if (statuses.some((s) => s !== 404)) t.fail(`unexpected statuses ${statuses.join(',')}`)
  }
  // The one export in flight took a first batch; the queue held the next MAX_QUEUE.
  await eventually('the held export arrived', async () => r.spans.length > 0)
  const exported = r.spans.length
  t.ok(exported <= 512, `one batch is in flight (${exported} spans)`)
  await eventually('queue_full counts the overflow', async () => (await dropped(proxy, 'queue_full') ?? 0) >= requests - MAX_QUEUE - exported)
  t.equal(await dropped(proxy, 'queue_full'), requests - MAX_QUEUE - exported, 'every span beyond the queue, exactly')
  t.equal(await dropped(proxy, 'export_failed'), 0, 'nothing has failed yet: the export is still in flight')
  t.equal(r.spans.length, exported, 'and still only one export reached the collector')
  // The collector recovers: what was queued is delivered, so shutdown's final flush is quick.
  r.release()
  await r.waitForSpans(exported + MAX_QUEUE, undefined, 60_000)
  t.equal(await dropped(proxy, 'export_failed'), 0, 'the queued spans were delivered, none failed')
})
