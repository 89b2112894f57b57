import t from 'tap'
import type { Test } from 'tap'
import http from 'node:http'
import { mkdtemp, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { request } from 'undici'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import { startTestProxy } from '../helpers/proxy.ts'
import { rawRequest } from '../helpers/raw-http.ts'
import { startOtlpReceiver, SPAN_KIND, STATUS_CODE, type OtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.ts'
import { flushAccessLogs } from '../../src/access-log.ts'
import { hashApiKey } from '../../plugins/api-key/hash.ts'
import { configSchema } from '../../src/config/schema.ts'
import { tracesEndpoint } from '../../src/tracing.ts'

/**
 * Tracing (issue #7): spans exported over OTLP/HTTP to a real receiver that
 * decodes the protobuf, checked against the OpenTelemetry HTTP semantic
 * conventions; trace context extracted from clients and injected upstream.
 */

type Teardown = { teardown (fn: () => unknown): void }

async function receiver (t: Teardown): Promise<OtlpReceiver> {
  const r = await startOtlpReceiver()
  t.teardown(r.close)
  return r
}

async function upstream (t: Teardown, handler?: http.RequestListener): Promise<Upstream> {
  const u = await startUpstream(handler)
  t.teardown(u.close)
  return u
}

/** A short batch delay, so spans arrive within a test's patience. */
function tracing (r: OtlpReceiver, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { endpoint: r.url, exportDelay: 20, ...extra }
}

function doc (urls: string[], trace: Record<string, unknown> | undefined, extra: { route?: Record<string, unknown>, cluster?: Record<string, unknown>, top?: Record<string, unknown> } = {}): Record<string, unknown> {
  return {
    ...(trace === undefined ? {} : { tracing: trace }),
    clusters: [{ name: 'c', endpoints: urls.map((url) => ({ url })), outlierDetection: { enabled: false }, retryBudget: { percent: 100, minRetriesPerSecond: 1000 }, ...extra.cluster }],
    routes: [{ name: 'api', match: { pathPrefix: '/api/' }, cluster: 'c', ...extra.route }],
    ...extra.top,
  }
}

async function send (url: string, headers: Record<string, string> = {}): Promise<{ status: number, body: string, headers: Record<string, unknown> }> {
  const res = await request(url, { headers })
  return { status: res.statusCode, body: await res.body.text(), headers: res.headers }
}

/** `traceparent` (W3C Trace Context §3.2): version-traceid-parentid-flags. */
function parseTraceparent (v: unknown): { traceId: string, parentId: string, flags: string } {
  const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(String(v))
  if (m === null) throw new Error(`not a traceparent: ${String(v)}`)
  return { traceId: m[1] as string, parentId: m[2] as string, flags: m[3] as string }
}

/** Every span id once: a span ended twice would be exported twice. */
function assertEndedOnce (t: Test, spans: readonly ReceivedSpan[]): void {
  const ids = spans.map((s) => s.spanId)
  t.equal(new Set(ids).size, ids.length, 'no span was exported twice')
  for (const s of spans) t.ok(s.endTimeUnixNano >= s.startTimeUnixNano && s.endTimeUnixNano > 0n, `span ${s.name} has an end`)
}

const CLIENT_SPAN_ID = '00f067aa0ba902b7'
const CLIENT_TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736'

t.test('a proxied request: a SERVER span with a CLIENT child, HTTP semconv attributes, traceparent upstream', async (t) => {
  const r = await receiver(t)
  const up = await upstream(t)
  const dir = await mkdtemp(path.join(tmpdir(), 'outrider-trace-'))
  const file = path.join(dir, 'access.log')
  const proxy = await startTestProxy(doc([up.url], tracing(r, { serviceName: 'edge-test' }), { top: { accessLog: { destination: file } } }), t)
  const res = await send(`${proxy.url}/api/items?token=secret`, { 'user-agent': 'tracing-test/1.0' })
  t.equal(res.status, 200)
  const spans = await r.waitForSpans(2)
  t.equal(spans.length, 2)
  const server = spans.find((s) => s.kind === SPAN_KIND.SERVER) as ReceivedSpan
  const client = spans.find((s) => s.kind === SPAN_KIND.CLIENT) as ReceivedSpan
  t.ok(server !== undefined && client !== undefined, 'one SERVER and one CLIENT span')
  t.equal(r.contentTypes[0], 'application/x-protobuf', 'OTLP/HTTP protobuf by default')

  t.equal(server.parentSpanId, '', 'the server span is the root without a client traceparent')
  t.equal(client.traceId, server.traceId, 'one trace')
  t.equal(client.parentSpanId, server.spanId, 'the attempt is a child of the exchange')
  t.equal(server.name, 'GET /api/*', 'semconv span name: {method} {http.route}')
  t.equal(client.name, 'GET', 'client span name: {method} (no url.template)')
  t.same(server.attributes, {
    'http.request.method': 'GET',
    'url.path': '/api/items',
    'url.scheme': 'http',
    'server.address': '127.0.0.1',
    'server.port': proxy.port,
    'client.address': '127.0.0.1',
    'network.protocol.version': '1.1',
    'http.route': '/api/*',
    'outrider.route': 'api',
    'outrider.request_id': res.headers['x-request-id'],
    'user_agent.original': 'tracing-test/1.0',
    'http.response.status_code': 200,
  }, 'server span attributes (semconv HTTP server)')
  t.same(client.attributes, {
    'http.request.method': 'GET',
    'server.address': '127.0.0.1',
    'server.port': up.port,
    'url.full': `${up.url}/api/items`,
    'http.response.status_code': 200,
  }, 'client span attributes (semconv HTTP client), no query in url.full')
  t.equal(server.status.code, STATUS_CODE.UNSET)
  t.equal(client.status.code, STATUS_CODE.UNSET)
  t.equal(server.resource['service.name'], 'edge-test')
  t.type(server.resource['service.instance.id'], 'string')
  t.equal(server.scope, 'outrider')
  t.ok(server.startTimeUnixNano <= client.startTimeUnixNano, 'the attempt starts within the exchange')

  const tp = parseTraceparent(up.seen[0]?.headers.traceparent)
  t.equal(tp.traceId, server.traceId, 'the upstream continues the same trace')
  t.equal(tp.parentId, client.spanId, 'its parent is the CLIENT span of the attempt')
  t.equal(tp.flags, '01', 'sampled')
  assertEndedOnce(t, spans)

  // The access log record names the trace.
  let rec: Record<string, unknown> | undefined
  for (let i = 0; i < 100 && rec === undefined; i++) {
    flushAccessLogs()
    const line = (await readFile(file, 'utf8').catch(() => '')).split('\n')[0] ?? ''
    if (line !== '') rec = JSON.parse(line) as Record<string, unknown>
    else await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.equal(rec?.traceId, server.traceId, 'access log traceId is the exchange\'s')
})

t.test('an incoming traceparent is continued, tracestate passed on', async (t) => {
  const r = await receiver(t)
  const up = await upstream(t)
  const proxy = await startTestProxy(doc([up.url], tracing(r)), t)
  const res = await send(`${proxy.url}/api/x`, {
    traceparent: `00-${CLIENT_TRACE_ID}-${CLIENT_SPAN_ID}-01`,
    tracestate: 'vendor=abc,other=1',
  })
  t.equal(res.status, 200)
  const spans = await r.waitForSpans(2)
  const server = spans.find((s) => s.kind === SPAN_KIND.SERVER) as ReceivedSpan
  const client = spans.find((s) => s.kind === SPAN_KIND.CLIENT) as ReceivedSpan
  t.equal(server.traceId, CLIENT_TRACE_ID, 'same trace id as the client')
  t.equal(server.parentSpanId, CLIENT_SPAN_ID, 'the server span\'s parent is the client\'s span')
  t.equal(server.traceState, 'vendor=abc,other=1', 'tracestate kept on the span')
  t.equal(client.parentSpanId, server.spanId)
  const seen = up.seen[0]?.headers
  const tp = parseTraceparent(seen?.traceparent)
  t.equal(tp.traceId, CLIENT_TRACE_ID)
  t.equal(tp.parentId, client.spanId, 'the upstream\'s parent is the attempt, not the client')
  t.equal(seen?.tracestate, 'vendor=abc,other=1', 'tracestate forwarded (W3C Trace Context §3.3)')
})

t.test('a tracestate without a valid traceparent is discarded, not sent beside a trace started here', async (t) => {
  const r = await receiver(t)
  const up = await upstream(t)
  const proxy = await startTestProxy(doc([up.url], tracing(r)), t)
  for (const traceparent of [undefined, `00-${'0'.repeat(32)}-${CLIENT_SPAN_ID}-01`, 'garbage']) {
    const headers: Record<string, string> = { tracestate: 'congo=t61rcWkgMzE' }
    if (traceparent !== undefined) headers.traceparent = traceparent
    t.equal((await send(`${proxy.url}/api/x`, headers)).status, 200)
    const seen = up.seen.at(-1)?.headers
    t.not(parseTraceparent(seen?.traceparent).traceId, CLIENT_TRACE_ID, `${traceparent ?? 'no traceparent'}: a new trace`)
    t.equal(seen?.tracestate, undefined, `${traceparent ?? 'no traceparent'}: the client's tracestate is dropped`)
  }
})

t.test('a retried request: two CLIENT spans under one SERVER span, the second with resend_count 1', async (t) => {
  const r = await receiver(t)
  let n = 0
  const up = await upstream(t, (req, res) => {
    req.resume()
    if (n++ === 0) { res.writeHead(503, { 'content-length': '4' }).end('busy'); return }
    res.writeHead(200, { 'content-length': '2' }).end('ok')
  })
  const proxy = await startTestProxy(doc([up.url], tracing(r), {
    route: { retry: { retryOn: ['gateway-error'], maxAttempts: 2, backoff: { base: 1, max: 2 }, attemptsHeader: true } },
  }), t)
  const res = await send(`${proxy.url}/api/retry`)
  t.equal(res.status, 200)
  t.equal(res.headers['x-outrider-attempts'], '2')
  const spans = await r.waitForSpans(3)
  const server = spans.find((s) => s.kind === SPAN_KIND.SERVER) as ReceivedSpan
  const clients = spans.filter((s) => s.kind === SPAN_KIND.CLIENT).sort((a, b) => Number(a.startTimeUnixNano - b.startTimeUnixNano))
  t.equal(clients.length, 2, 'one CLIENT span per attempt')
  for (const c of clients) {
    t.equal(c.parentSpanId, server.spanId, 'each attempt is a child of the exchange')
    t.equal(c.traceId, server.traceId)
  }
  const [first, second] = clients as [ReceivedSpan, ReceivedSpan]
  t.equal(first.attributes['http.response.status_code'], 503)
  t.equal(first.attributes['error.type'], '503', 'semconv: a 5xx on a CLIENT span is an error')
  t.equal(first.status.code, STATUS_CODE.ERROR)
  t.equal(first.attributes['http.request.resend_count'], undefined, 'the first attempt is not a resend')
  t.equal(second.attributes['http.request.resend_count'], 1)
  t.equal(second.attributes['http.response.status_code'], 200)
  t.equal(second.status.code, STATUS_CODE.UNSET)
  t.equal(server.attributes['http.response.status_code'], 200)
  t.equal(server.status.code, STATUS_CODE.UNSET, 'the exchange succeeded')
  // Each attempt told the upstream its own span.
  t.equal(up.seen.length, 2)
  t.same(up.seen.map((s) => parseTraceparent(s.headers.traceparent).parentId), [first.spanId, second.spanId])
  assertEndedOnce(t, spans)
})

t.test('a hedged request: the hedge is marked, the loser ends cancelled', async (t) => {
  const r = await receiver(t)
  let slowTimer: NodeJS.Timeout | undefined
  const slow = await upstream(t, (req, res) => {
    req.resume()
    slowTimer = setTimeout(() => { if (!res.destroyed) res.writeHead(200, { 'content-length': '4' }).end('slow') }, 2000)
    res.on('close', () => { clearTimeout(slowTimer) })
  })
  const fast = await upstream(t, (req, res) => { req.resume(); res.writeHead(200, { 'content-length': '4' }).end('fast') })
  // Round robin: the first request goes to the slow endpoint, the hedge to the fast one.
  const proxy = await startTestProxy(doc([slow.url, fast.url], tracing(r), { route: { hedge: { delay: '30ms' } } }), t)
  const res = await send(`${proxy.url}/api/hedge`)
  t.equal(res.body, 'fast')
  const spans = await r.waitForSpans(3)
  const server = spans.find((s) => s.kind === SPAN_KIND.SERVER) as ReceivedSpan
  const clients = spans.filter((s) => s.kind === SPAN_KIND.CLIENT)
  t.equal(clients.length, 2)
  const hedge = clients.find((c) => c.attributes['outrider.hedge'] === true) as ReceivedSpan
  const loser = clients.find((c) => c.attributes['outrider.hedge'] === undefined) as ReceivedSpan
  t.ok(hedge !== undefined && loser !== undefined, 'one original attempt and one hedge')
  t.equal(hedge.attributes['server.port'], fast.port)
  t.equal(hedge.attributes['http.response.status_code'], 200)
  t.equal(loser.attributes['server.port'], slow.port)
  t.equal(loser.attributes['outrider.attempt.cancelled'], 'lost_race', 'the loser says it was cancelled')
  t.ok(loser.events.some((e) => e.name === 'outrider.cancelled' && e.attributes.reason === 'lost_race'))
  t.equal(loser.attributes['error.type'], undefined, 'a cancelled attempt is not an upstream failure')
  t.equal(loser.attributes['http.response.status_code'], undefined)
  for (const c of clients) t.equal(c.parentSpanId, server.spanId)
  t.equal(parseTraceparent(fast.seen[0]?.headers.traceparent).parentId, hedge.spanId)
  t.equal(parseTraceparent(slow.seen[0]?.headers.traceparent).parentId, loser.spanId, 'the queued first attempt kept its own traceparent')
  assertEndedOnce(t, spans)
})

t.test('connect failure: error.type on the CLIENT span, a 502 SERVER span with status ERROR', async (t) => {
  const r = await receiver(t)
  const gone = await startUpstream()
  await gone.close()
  const proxy = await startTestProxy(doc([gone.url], tracing(r)), t)
  const res = await send(`${proxy.url}/api/down`)
  t.equal(res.status, 502)
  const spans = await r.waitForSpans(2)
  const server = spans.find((s) => s.kind === SPAN_KIND.SERVER) as ReceivedSpan
  const client = spans.find((s) => s.kind === SPAN_KIND.CLIENT) as ReceivedSpan
  t.equal(client.attributes['error.type'], 'UPSTREAM_CONNECT_FAILED')
  t.equal(client.attributes['outrider.error.phase'], 'connect')
  t.equal(client.status.code, STATUS_CODE.ERROR)
  t.equal(client.attributes['http.response.status_code'], undefined, 'no response, no status code')
  t.equal(server.attributes['http.response.status_code'], 502)
  t.equal(server.attributes['error.type'], 'UPSTREAM_CONNECT_FAILED')
  t.equal(server.status.code, STATUS_CODE.ERROR, 'semconv: 5xx on a SERVER span is an error')
  assertEndedOnce(t, spans)
})

t.test('the upstream resets mid-body: both spans are errors', async (t) => {
  const r = await receiver(t)
  const up = await upstream(t, (req, res) => {
    req.resume()
    res.writeHead(200, { 'content-length': '100' })
    res.write('partial')
    setTimeout(() => { res.socket?.destroy() }, 20)
  })
  const proxy = await startTestProxy(doc([up.url], tracing(r)), t)
  await t.rejects(send(`${proxy.url}/api/reset`), 'the client sees the response cut, not a clean end')
  const spans = await r.waitForSpans(2)
  const server = spans.find((s) => s.kind === SPAN_KIND.SERVER) as ReceivedSpan
  const client = spans.find((s) => s.kind === SPAN_KIND.CLIENT) as ReceivedSpan
  t.equal(client.attributes['http.response.status_code'], 200)
  t.equal(client.attributes['error.type'], 'UPSTREAM_PROTOCOL_ERROR')
  t.equal(client.attributes['outrider.error.phase'], 'reset')
  t.equal(client.status.code, STATUS_CODE.ERROR)
  t.equal(server.attributes['http.response.status_code'], 200, 'the status that went out')
  t.equal(server.attributes['error.type'], 'UPSTREAM_PROTOCOL_ERROR')
  t.equal(server.status.code, STATUS_CODE.ERROR, 'a response cut by the upstream is a server error')
  t.equal(server.attributes['outrider.client_closed'], undefined)
  assertEndedOnce(t, spans)
})

t.test('a plugin\'s verdict is a span event; a 4xx leaves the server span status unset', async (t) => {
  const r = await receiver(t)
  const up = await upstream(t)
  const proxy = await startTestProxy(doc([up.url], tracing(r), {
    route: { plugins: [{ name: 'api-key', config: { keys: [{ id: 'svc', hash: hashApiKey('k3y') }] } }] },
  }), t)
  const denied = await send(`${proxy.url}/api/secret`)
  t.equal(denied.status, 401)
  const [server] = await r.waitForSpans(1)
  t.equal(server?.kind, SPAN_KIND.SERVER)
  t.equal(server?.attributes['http.response.status_code'], 401)
  t.equal(server?.attributes['outrider.error.code'], 'UNAUTHORIZED')
  t.equal(server?.attributes['error.type'], undefined, 'semconv: a 4xx is not an error of the server')
  t.equal(server?.status.code, STATUS_CODE.UNSET)
  t.match(server?.events, [
    { name: 'outrider.auth', attributes: { value: 'missing' } },
    { name: 'outrider.plugin_reply', attributes: { 'http.response.status_code': 401, 'outrider.error.code': 'UNAUTHORIZED' } },
  ], 'the plugin\'s decision (annotate), then the reply it caused')
  t.equal(up.seen.length, 0)

  const allowed = await send(`${proxy.url}/api/secret`, { 'x-api-key': 'k3y' })
  t.equal(allowed.status, 200)
  const spans = await r.waitForSpans(3)
  t.equal(spans.filter((s) => s.kind === SPAN_KIND.CLIENT).length, 1, 'only the allowed request went upstream')
  // An admitted request carries its decision too (test/operability/decisions.test.ts covers every plugin).
  const ok = spans.find((s) => s.kind === SPAN_KIND.SERVER && s.attributes['http.response.status_code'] === 200)
  t.same(ok?.events.map((e) => [e.name, e.attributes.value]), [['outrider.auth', 'ok']])
  assertEndedOnce(t, spans)
})

t.test('requests no route takes are traced from the listener', async (t) => {
  const r = await receiver(t)
  const up = await upstream(t)
  const proxy = await startTestProxy(doc([up.url], tracing(r)), t)
  const res = await send(`${proxy.url}/nowhere?q=1`, { traceparent: `00-${CLIENT_TRACE_ID}-${CLIENT_SPAN_ID}-01` })
  t.equal(res.status, 404)
  const [span] = await r.waitForSpans(1)
  t.equal(span?.name, 'GET', 'no route template: {method}')
  t.equal(span?.kind, SPAN_KIND.SERVER)
  t.equal(span?.traceId, CLIENT_TRACE_ID, 'the client\'s trace is continued')
  t.equal(span?.parentSpanId, CLIENT_SPAN_ID)
  t.match(span?.attributes, { 'http.request.method': 'GET', 'url.path': '/nowhere', 'outrider.route': '__unmatched__', 'http.response.status_code': 404, 'outrider.error.code': 'NO_ROUTE' })
  t.equal(span?.status.code, STATUS_CODE.UNSET)
})

t.test('requests the listener answers itself on the raw socket or as the last hop are traced too', async (t) => {
  const r = await receiver(t)
  const up = await upstream(t)
  const proxy = await startTestProxy(doc([up.url], tracing(r)), t)
  await rawRequest(proxy.port, 'CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n')
  await rawRequest(proxy.port, 'GET /nope HTTP/1.1\r\nHost: x.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
    'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
  await rawRequest(proxy.port, 'OPTIONS /api/x HTTP/1.1\r\nHost: x.test\r\nMax-Forwards: 0\r\n\r\n')
  const spans = await r.waitForSpans(3)
  const by = (method: string): ReceivedSpan | undefined => spans.find((s) => s.attributes['http.request.method'] === method)
  t.match(by('CONNECT'), { kind: SPAN_KIND.SERVER, attributes: { 'outrider.route': '__unmatched__', 'http.response.status_code': 405, 'outrider.error.code': 'METHOD_NOT_ALLOWED' } })
  t.match(by('GET'), { kind: SPAN_KIND.SERVER, attributes: { 'url.path': '/nope', 'http.response.status_code': 404, 'outrider.error.code': 'NO_ROUTE' } })
  t.match(by('OPTIONS'), { kind: SPAN_KIND.SERVER, attributes: { 'url.path': '/api/x', 'http.response.status_code': 200 }, status: { code: STATUS_CODE.UNSET } })
  t.equal(by('OPTIONS')?.attributes['outrider.error.code'], undefined)
})

t.test('the client goes away mid-response: both spans end once, saying so', async (t) => {
  const r = await receiver(t)
  let streaming: http.ServerResponse | undefined
  const up = await upstream(t, (req, res) => {
    req.resume()
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('first chunk\n')
    streaming = res
  })
  const proxy = await startTestProxy(doc([up.url], tracing(r)), t)
  await new Promise<void>((resolve, reject) => {
    const req = http.get(`${proxy.url}/api/stream`, (res) => {
      res.once('data', () => { req.destroy(); resolve() })
    })
    req.on('error', (err) => { if ((err as { code?: string }).code !== 'ECONNRESET') reject(err) })
  })
  const spans = await r.waitForSpans(2)
  streaming?.destroy()
  const server = spans.find((s) => s.kind === SPAN_KIND.SERVER) as ReceivedSpan
  const client = spans.find((s) => s.kind === SPAN_KIND.CLIENT) as ReceivedSpan
  t.equal(server.attributes['outrider.client_closed'], true)
  t.equal(server.attributes['http.response.status_code'], 200, 'the status that went out')
  t.equal(server.status.code, STATUS_CODE.UNSET, 'a client leaving is not a server error')
  t.equal(client.attributes['outrider.attempt.cancelled'], 'client_closed')
  t.equal(client.attributes['error.type'], undefined)
  await new Promise((resolve) => setTimeout(resolve, 100))
  assertEndedOnce(t, r.spans)
  t.equal(r.spans.length, 2)
})

t.test('samplingRatio 0: no new trace is recorded, a sampled client trace still is', async (t) => {
  const r = await receiver(t)
  const up = await upstream(t)
  const proxy = await startTestProxy(doc([up.url], tracing(r, { samplingRatio: 0 })), t)
  for (let i = 0; i < 5; i++) t.equal((await send(`${proxy.url}/api/quiet`)).status, 200)
  for (const s of up.seen) t.equal(parseTraceparent(s.headers.traceparent).flags, '00', 'an unsampled context is still propagated')
  // Parent-based: the client decided to sample this trace.
  t.equal((await send(`${proxy.url}/api/sampled`, { traceparent: `00-${CLIENT_TRACE_ID}-${CLIENT_SPAN_ID}-01` })).status, 200)
  // And a client's "not sampled" is respected whatever the ratio.
  t.equal((await send(`${proxy.url}/api/unsampled`, { traceparent: `00-${'1'.repeat(32)}-${CLIENT_SPAN_ID}-00` })).status, 200)
  await proxy.shutdown(1000)
  t.equal(r.spans.length, 2, 'only the client-sampled exchange was exported')
  t.ok(r.spans.every((s) => s.traceId === CLIENT_TRACE_ID))
})

t.test('sampling ratio 0 and no parent: nothing is exported at all', async (t) => {
  const r = await receiver(t)
  const up = await upstream(t)
  const proxy = await startTestProxy(doc([up.url], tracing(r, { samplingRatio: 0 })), t)
  for (let i = 0; i < 3; i++) await send(`${proxy.url}/api/x`)
  await send(`${proxy.url}/nowhere`)
  await proxy.shutdown(1000)
  t.equal(r.spans.length, 0)
  t.equal(r.contentTypes.length, 0, 'not even an empty export')
})

t.test('tracing off (no section, or enabled: false): no exports, the exchange as before', async (t) => {
  const r = await receiver(t)
  const up = await upstream(t)
  const absent = await startTestProxy(doc([up.url], undefined), t)
  const disabled = await startTestProxy(doc([up.url], tracing(r, { enabled: false })), t)
  for (const proxy of [absent, disabled]) {
    const plain = await send(`${proxy.url}/api/x`)
    t.equal(plain.status, 200)
    // A client's trace headers pass through untouched: the proxy is not part of the trace.
    const traced = await send(`${proxy.url}/api/x`, { traceparent: `00-${CLIENT_TRACE_ID}-${CLIENT_SPAN_ID}-01`, tracestate: 'a=b' })
    t.equal(traced.status, 200)
    t.equal((await send(`${proxy.url}/nowhere`)).status, 404)
  }
  t.equal(up.seen.length, 4)
  t.equal(up.seen[0]?.headers.traceparent, undefined, 'no traceparent is made up')
  t.equal(up.seen[1]?.headers.traceparent, `00-${CLIENT_TRACE_ID}-${CLIENT_SPAN_ID}-01`)
  t.equal(up.seen[1]?.headers.tracestate, 'a=b')
  t.equal(up.seen[3]?.headers.traceparent, `00-${CLIENT_TRACE_ID}-${CLIENT_SPAN_ID}-01`)
  await absent.shutdown(1000)
  await disabled.shutdown(1000)
  t.equal(r.spans.length, 0)
  t.equal(r.contentTypes.length, 0)
})

t.test('B3 propagation: extracted from a client, injected (multi-header) upstream', async (t) => {
  const r = await receiver(t)
  const up = await upstream(t)
  const proxy = await startTestProxy(doc([up.url], tracing(r, { propagators: ['tracecontext', 'b3multi'] })), t)
  const res = await send(`${proxy.url}/api/b3`, { b3: `${CLIENT_TRACE_ID}-${CLIENT_SPAN_ID}-1` })
  t.equal(res.status, 200)
  const spans = await r.waitForSpans(2)
  const server = spans.find((s) => s.kind === SPAN_KIND.SERVER) as ReceivedSpan
  const client = spans.find((s) => s.kind === SPAN_KIND.CLIENT) as ReceivedSpan
  t.equal(server.traceId, CLIENT_TRACE_ID, 'the single-header b3 context was continued')
  t.equal(server.parentSpanId, CLIENT_SPAN_ID)
  const h = up.seen[0]?.headers
  t.equal(h?.['x-b3-traceid'], CLIENT_TRACE_ID)
  t.equal(h?.['x-b3-spanid'], client.spanId)
  t.equal(h?.['x-b3-sampled'], '1')
  t.equal(parseTraceparent(h?.traceparent).parentId, client.spanId, 'and W3C beside it')
})

t.test('OTLP/HTTP JSON is supported too', async (t) => {
  const r = await receiver(t)
  const up = await upstream(t)
  const proxy = await startTestProxy(doc([up.url], tracing(r, { protocol: 'http/json' })), t)
  t.equal((await send(`${proxy.url}/api/json`)).status, 200)
  const spans = await r.waitForSpans(2)
  t.equal(r.contentTypes[0], 'application/json')
  const server = spans.find((s) => s.kind === SPAN_KIND.SERVER) as ReceivedSpan
  const client = spans.find((s) => s.kind === SPAN_KIND.CLIENT) as ReceivedSpan
  t.equal(client.parentSpanId, server.spanId)
  t.equal(server.attributes['http.route'], '/api/*')
  t.equal(server.attributes['http.response.status_code'], 200)
})

t.test('a collector that is down costs the requests nothing, and shutdown stays bounded', async (t) => {
  const gone = await startOtlpReceiver()
  await gone.close()
  const up = await upstream(t)
  const proxy = await startTestProxy(doc([up.url], { endpoint: gone.url, exportDelay: 10, exportTimeout: 500 }), t)
  for (let i = 0; i < 5; i++) t.equal((await send(`${proxy.url}/api/x`)).status, 200)
  await new Promise((resolve) => setTimeout(resolve, 100))
  const t0 = Date.now()
  await proxy.shutdown(1000)
  t.ok(Date.now() - t0 < 3000, `shutdown took ${Date.now() - t0} ms`)
})

t.test('graceful shutdown exports the spans still queued', async (t) => {
  const r = await receiver(t)
  const up = await upstream(t)
  // A batch delay far longer than the test: only the shutdown flush can export.
  const proxy = await startTestProxy(doc([up.url], tracing(r, { exportDelay: '1h' })), t)
  t.equal((await send(`${proxy.url}/api/last`)).status, 200)
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(r.spans.length, 0, 'nothing exported yet')
  await proxy.shutdown(1000)
  t.equal(r.spans.length, 2, 'flushed on shutdown')
})

t.test('config: defaults and the OTLP environment variables', async (t) => {
  const cfg = configSchema.parse({ tracing: {} }).tracing
  t.match(cfg, { enabled: true, protocol: 'http/protobuf', samplingRatio: 1, propagators: ['tracecontext'], exportDelay: 5000 })
  t.equal(configSchema.parse({}).tracing, undefined, 'off unless the section is present')
  const c = cfg as NonNullable<typeof cfg>
  t.equal(tracesEndpoint(c, {}), 'http://127.0.0.1:4318/v1/traces')
  t.equal(tracesEndpoint(c, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }), 'http://collector:4318/v1/traces')
  t.equal(tracesEndpoint(c, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://traces:9/x' }), 'http://traces:9/x')
  t.equal(tracesEndpoint({ ...c, endpoint: 'http://cfg:1/v1/traces' }, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://traces:9/x' }), 'http://cfg:1/v1/traces', 'the config wins')
  const bad = configSchema.safeParse({ tracing: { samplingRatio: 2, protocol: 'grpc', propagators: ['b3', 'b3'] } })
  t.notOk(bad.success)
  t.same(bad.error?.issues.map((i) => i.path.join('.')).sort(), ['tracing.propagators', 'tracing.protocol', 'tracing.samplingRatio'])
})
