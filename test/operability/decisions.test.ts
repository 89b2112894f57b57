import t from 'tap'
import type { Test } from 'tap'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { SignJWT } from 'jose'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.ts'
import { startTestProxy } from '../helpers/proxy.ts'
import { droppingPort } from '../helpers/ports.ts'
import { startOtlpReceiver, SPAN_KIND, type ReceivedSpan } from '../helpers/otlp-receiver.ts'
import { flushAccessLogs } from '../../src/access-log.ts'
import { hashApiKey } from '../../plugins/api-key/hash.ts'

/**
 * Plugin decisions end to end (issue #7): a real proxy whose plugins refuse
 * and admit requests, an access log in a file and traces to a real OTLP/HTTP
 * receiver. Each decision made with `ctx.annotate(key, value)` must be a field
 * of the exchange's access-log line and an `outrider.<key>` event (attribute
 * `value`) on its SERVER span.
 */

const API_KEY = 'ak_5d1f0c3b9e7a4f2c8b6d0e1a3c5f7b9d'
const SECRET = 'decisions-test-hmac-secret-0123456789abcdef'
const XSS = encodeURIComponent('<script>alert(1)</script>')

function route (name: string, plugins: Array<Record<string, unknown>>): Record<string, unknown> {
  return { name, match: { pathPrefix: `/${name}/` }, cluster: 'c', plugins }
}

/** The file's records once every id in `ids` has one (async destination: poll, bounded). */
async function records (file: string, ids: readonly string[]): Promise<Map<string, Record<string, unknown>>> {
  const byId = new Map<string, Record<string, unknown>>()
  for (let i = 0; i < 250 && !ids.every((id) => byId.has(id)); i++) {
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, 20))
    flushAccessLogs()
    const text = await readFile(file, 'utf8').catch(() => '')
    for (const line of text.split('\n')) {
      if (line === '') continue
      const rec = JSON.parse(line) as Record<string, unknown>
      byId.set(rec.requestId as string, rec)
    }
  }
  return byId
}

/** The SERVER span's `outrider.*` decision events as `{ key: value }` (plugin_reply left out). */
function decisions (t: Test, span: ReceivedSpan | undefined): Record<string, unknown> {
  const events = (span?.events ?? []).filter((e) => e.name.startsWith('outrider.') && e.name !== 'outrider.plugin_reply')
  t.same(events.map((e) => Object.keys(e.attributes)), events.map(() => ['value']), 'each decision event carries one attribute, value')
  return Object.fromEntries(events.map((e) => [e.name.slice('outrider.'.length), e.attributes.value]))
}

t.test('WAF, rate-limit, auth and cache decisions are access-log fields and span events', async (t) => {
  const receiver = await startOtlpReceiver()
  t.teardown(receiver.close)
  const up = await startUpstream()
  t.teardown(up.close)
  // Answers the cache may keep for a minute.
  const cacheable = await startUpstream((_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '2' }); res.end('ok') })
  t.teardown(cacheable.close)
  const dir = await mkdtemp(path.join(tmpdir(), 'outrider-decisions-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'access.log')
  const redisPort = await droppingPort(t)

  const proxy = await startTestProxy({
    accessLog: { destination: file },
    tracing: { endpoint: receiver.url, exportDelay: 20 },
    clusters: [{ name: 'c', endpoints: [{ url: up.url }] }, { name: 'cc', endpoints: [{ url: cacheable.url }] }],
    routes: [
      { ...route('cached', [{ name: 'cache', config: {} }]), cluster: 'cc' },
      route('waf', [{ name: 'waf', config: { mode: 'block' } }]),
      route('detect', [{ name: 'waf', config: { mode: 'detect' } }]),
      route('scored', [{ name: 'waf', config: { anomalyThreshold: 1000 } }]),
      route('limited', [{ name: 'rate-limit', config: { points: 1, duration: 60 } }]),
      // Redis is down and onStoreError lets requests through: said so per request.
      route('fallback', [{ name: 'rate-limit', config: { points: 1, duration: 60, store: { type: 'redis', url: `redis://127.0.0.1:${redisPort}`, connectTimeout: 200, onStoreError: 'allow' } } }]),
      route('key', [{ name: 'api-key', config: { keys: [{ id: 'svc', hash: hashApiKey(API_KEY), scopes: ['read'] }] } }]),
      route('scope', [{ name: 'api-key', config: { keys: [{ id: 'svc', hash: hashApiKey(API_KEY), scopes: ['read'] }], requiredScopes: ['write'] } }]),
      route('jwt', [{ name: 'jwt-auth', config: { keys: [{ type: 'secret', secret: SECRET }], algorithms: ['HS256'] } }]),
    ],
  }, t)

  const now = Math.floor(Date.now() / 1000)
  const hmac = new TextEncoder().encode(SECRET)
  const expired = await new SignJWT({ sub: 'carol', iat: now - 7200, exp: now - 3600 }).setProtectedHeader({ alg: 'HS256' }).sign(hmac)
  const valid = await new SignJWT({ sub: 'carol', iat: now, exp: now + 300 }).setProtectedHeader({ alg: 'HS256' }).sign(hmac)

  // id → [path, headers, expected status]
  const cases: Array<[string, string, Record<string, string>, number, ('GET' | 'OPTIONS')?]> = [
    ['waf-block', `/waf/search?q=${XSS}`, {}, 403],
    ['waf-clean', '/waf/search?q=shoes', {}, 200],
    ['waf-detect', `/detect/search?q=${XSS}`, {}, 200],
    ['waf-scored', `/scored/search?q=${XSS}`, {}, 200],
    ['rl-first', '/limited/x', {}, 200],
    ['rl-second', '/limited/x', {}, 429],
    ['rl-fallback', '/fallback/x', {}, 200],
    ['key-missing', '/key/x', {}, 401],
    ['key-wrong', '/key/x', { 'x-api-key': 'ak_not_a_key_of_ours' }, 401],
    ['key-ok', '/key/x', { 'x-api-key': API_KEY }, 200],
    ['key-scope', '/scope/x', { 'x-api-key': API_KEY }, 403],
    ['jwt-expired', '/jwt/x', { authorization: `Bearer ${expired}` }, 401],
    ['jwt-ok', '/jwt/x', { authorization: `Bearer ${valid}` }, 200],
    ['cache-miss', '/cached/x', {}, 200],
    ['cache-hit', '/cached/x', {}, 200],
    // A method the cache does not serve (it would store the answer to a range request now).
    ['cache-bypass', '/cached/x', {}, 200, 'OPTIONS'],
  ]
  for (const [id, url, headers, status, method] of cases) {
    const res = await request(`${proxy.url}${url}`, { method: method ?? 'GET', headers: { ...headers, 'x-request-id': id } })
    await res.body.text()
    t.equal(res.statusCode, status, `${id}: ${status}`)
  }

  const ids = cases.map(([id]) => id)
  const logs = await records(file, ids)
  const spans = await receiver.waitForSpans(cases.length, (s) => s.kind === SPAN_KIND.SERVER, 15_000)
  const spanOf = (id: string): ReceivedSpan | undefined => spans.find((s) => s.attributes['outrider.request_id'] === id)

  // What each request's access-log line and SERVER span must say.
  const expected: Record<string, Record<string, unknown>> = {
    'waf-block': { waf: 'blocked' },
    'waf-clean': {},
    'waf-detect': { waf: 'detected' },
    'waf-scored': { waf: 'allowed' },
    'rl-first': { rateLimit: 'allow' },
    'rl-second': { rateLimit: 'deny', rateLimitPolicy: 'default' },
    'rl-fallback': { rateLimit: 'store_error_allow' },
    'key-missing': { auth: 'missing' },
    'key-wrong': { auth: 'invalid', authReason: 'unknownKey' },
    'key-ok': { auth: 'ok' },
    'key-scope': { auth: 'forbidden', authReason: 'scope' },
    'jwt-expired': { auth: 'expired', authReason: 'expired' },
    'jwt-ok': { auth: 'ok' },
    'cache-miss': { cache: 'miss' },
    'cache-hit': { cache: 'hit' },
    'cache-bypass': { cache: 'bypass' },
  }
  const KEYS = ['waf', 'wafScore', 'wafRules', 'rateLimit', 'rateLimitPolicy', 'auth', 'authReason', 'cache']
  for (const id of ids) {
    const rec = logs.get(id)
    t.ok(rec !== undefined, `${id}: logged`)
    const want = { ...expected[id] }
    // The WAF adds its score and the matched rule ids to every outcome.
    if (typeof want.waf === 'string') {
      t.ok((rec?.wafScore as number) >= 5, `${id}: the anomaly score (a critical match scores 5)`)
      t.match(rec?.wafRules, /^\d+(,\d+)*(,\+\d+)?$/, `${id}: the matched rule ids`)
      want.wafScore = rec?.wafScore
      want.wafRules = rec?.wafRules
    }
    const logged: Record<string, unknown> = {}
    for (const k of KEYS) if (rec?.[k] !== undefined) logged[k] = rec[k]
    t.same(logged, want, `${id}: access-log decision fields`)
    t.same(decisions(t, spanOf(id)), want, `${id}: span events of the SERVER span`)
  }
  t.equal(logs.get('waf-block')?.status, 403)
  t.equal(logs.get('rl-second')?.status, 429)
  t.equal(logs.get('waf-block')?.traceId, spanOf('waf-block')?.traceId, 'the line and the span are the same exchange')
  // A refusal is both the plugin's decision and the proxy's reply, in that order.
  t.same(spanOf('key-missing')?.events.map((e) => e.name), ['outrider.auth', 'outrider.plugin_reply'])
})

t.test('the WAF names a bounded number of rules, however many matched', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const dir = await mkdtemp(path.join(tmpdir(), 'outrider-decisions-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'access.log')
  const proxy = await startTestProxy({
    accessLog: { destination: file },
    clusters: [{ name: 'c', endpoints: [{ url: up.url }] }],
    // Detect mode and paranoia 4: every family gets its say on one request.
    routes: [route('waf', [{ name: 'waf', config: { mode: 'detect', paranoiaLevel: 4 } }])],
  }, t)
  const attacks = [
    '<script>alert(1)</script>', '<img src=x onerror=alert(1)>', 'javascript:alert(1)',
    '\' OR 1=1 --', '1 UNION SELECT password FROM users', '1; DROP TABLE users',
    '../../../../etc/passwd', '; cat /etc/passwd', '$(id)', '`whoami`',
    '<?php system($_GET[c]); ?>', '{{7*7}}', 'eval(atob(x))', '/bin/bash -c id',
  ]
  const query = attacks.map((a, i) => `p${i}=${encodeURIComponent(a)}`).join('&')
  const res = await request(`${proxy.url}/waf/x?${query}`, { headers: { 'x-request-id': 'many', 'user-agent': 'sqlmap/1.7' } })
  await res.body.text()
  t.equal(res.statusCode, 200, 'detect mode lets it through')
  const rec = (await records(file, ['many'])).get('many')
  const rules = String(rec?.wafRules).split(',')
  t.ok(rules.length > 8, `more than eight rules matched (${String(rec?.wafRules)})`)
  t.equal(rules.length, 9, 'eight ids and a count of the rest')
  t.match(rules.at(-1), /^\+\d+$/, 'the rest is a count')
  t.equal(rec?.waf, 'detected')
})

t.test('WebSocket handshakes are traced: a SERVER span with the decision, the upstream handshake continuing the trace', async (t) => {
  const { startWsEcho } = await import('../helpers/ws-echo.ts')
  const { rawRequest } = await import('../helpers/raw-http.ts')
  const receiver = await startOtlpReceiver()
  t.teardown(receiver.close)
  const echo = await startWsEcho()
  t.teardown(echo.close)
  const proxy = await startTestProxy({
    tracing: { endpoint: receiver.url, exportDelay: 20 },
    clusters: [{ name: 'c', endpoints: [{ url: `http://127.0.0.1:${echo.port}` }] }],
    routes: [route('ws', [{ name: 'api-key', config: { keys: [{ id: 'svc', hash: hashApiKey(API_KEY), scopes: [] }] } }])],
  }, t)
  const handshake = (id: string, key: string): string => `GET /ws/chat HTTP/1.1\r\nHost: x.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
    `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Request-Id: ${id}\r\n${key}\r\n`
  t.equal((await rawRequest(proxy.port, handshake('ws-ok', `X-Api-Key: ${API_KEY}\r\n`), { expect: 1 })).responses[0]?.status, 101)
  t.equal((await rawRequest(proxy.port, handshake('ws-denied', ''))).responses[0]?.status, 401)
  const servers = await receiver.waitForSpans(2, (s) => s.kind === SPAN_KIND.SERVER, 15_000)
  const ok = servers.find((s) => s.attributes['outrider.request_id'] === 'ws-ok')
  const denied = servers.find((s) => s.attributes['outrider.request_id'] === 'ws-denied')
  t.equal(ok?.attributes['http.response.status_code'], 101, 'the tunnel\'s span says 101')
  t.same(decisions(t, ok), { auth: 'ok' })
  t.equal(denied?.attributes['http.response.status_code'], 401)
  t.same(decisions(t, denied), { auth: 'missing' })
  const traceparent = echo.upgrades[0]?.headers.traceparent
  t.match(traceparent, new RegExp(`^00-${ok?.traceId ?? 'none'}-`), 'the upstream handshake carries the same trace')
  const clients = await receiver.waitForSpans(1, (s) => s.kind === SPAN_KIND.CLIENT, 15_000)
  t.equal(clients[0]?.traceId, ok?.traceId, 'with a CLIENT span of its own')
})
