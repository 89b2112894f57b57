import t from 'tap'
import * as grpc from '@grpc/grpc-js'
import { applyActions, parseCondition, parseRule, patchPath } from '../../control-plane/rules.ts'
import type { CallError } from '../../control-plane/operator-client.ts'
import type { RunningControlPlane } from '../../control-plane/server.ts'
import { startUpstream } from '../helpers/upstream.ts'
import { baseDocument, operatorClient, startTestControlPlane, startTestDataPlane, tempDir, waitFor } from './helpers.ts'

t.test('the condition language', async (t) => {
  t.match(parseCondition('p99 > 500ms for 2m'), { metric: 'p99', op: '>', value: 500, forSeconds: 120 })
  t.match(parseCondition('p90 >= 1.5s'), { metric: 'p90', op: '>=', value: 1500, forSeconds: 0 })
  t.match(parseCondition('errorRatio > 5%'), { metric: 'errorRatio', value: 0.05 })
  t.match(parseCondition('forecast rps in 15m > 1000'), { metric: 'forecastRps', horizonSeconds: 900, value: 1000 })
  t.match(parseCondition('rate < 1 for 10m'), { metric: 'rps', op: '<', forSeconds: 600 })
  t.match(parseCondition('anomaly >= 0.5'), { metric: 'anomaly', value: 0.5 })
  t.type(parseCondition('forecast rps > 1'), 'string', 'a forecast needs a horizon')
  t.match(parseCondition('forecast rps in 7d > 1'), { horizonSeconds: 7 * 86_400 }, 'up to a week ahead, as GetForecast')
  t.match(parseCondition('forecast rps in 100w > 1'), /at most 7d/, 'not further: each step of the horizon costs a point')
  t.throws(() => parseRule({ name: 'x', route: 'api', when: 'forecast rps in 8d > 1', then: [{ type: 'webhook', url: 'http://127.0.0.1:1/' }] }), { code: 'INVALID_CONFIG', issues: [{ path: 'when', expected: /at most 7d/ }] })
  t.type(parseCondition('rps > 5%'), 'string')
  t.type(parseCondition('p99 is high'), 'string')
  t.throws(() => parseRule({ name: 'x', route: 'api', when: 'p99 >> 1', then: [] }), { code: 'INVALID_CONFIG', issues: [{ path: 'when' }, { path: 'then' }] })
  t.throws(() => parseRule({ name: 'x', route: 'api', when: 'rps > 1', then: [{ type: 'explode' }] }), { code: 'INVALID_CONFIG', issues: [{ path: 'then.0.type' }] })
})

t.test('actions apply to a copy of the document', async (t) => {
  const doc = {
    clusters: [{ name: 'svc', endpoints: [{ url: 'http://a:1' }, { url: 'http://b:1', weight: 2 }] }],
    routes: [{ name: 'api', cluster: 'svc', plugins: [{ name: 'rate-limit', config: { limits: [{ points: 10, duration: 1 }, { points: 1000, duration: 3600 }] } }] }],
  }
  const rule = parseRule({
    name: 'r',
    route: 'api',
    when: 'rps > 1',
    then: [
      { type: 'scale-rate-limit', factor: 0.25, min: 5 },
      { type: 'set-weights', cluster: 'svc', weights: { 'http://b:1/': 5 } },
      { type: 'plugin', plugin: 'cache', enabled: true },
      { type: 'patch', path: '/routes/api/timeout', value: '2s' },
      { type: 'patch', path: '/routes/nope/x', value: 1 },
    ],
  })
  const r = applyActions(rule, doc)
  t.same(r.document.routes, [{
    name: 'api',
    cluster: 'svc',
    timeout: '2s',
    plugins: [{ name: 'rate-limit', config: { limits: [{ points: 5, duration: 1 }, { points: 250, duration: 3600 }] } }, { name: 'cache', config: {} }],
  }])
  t.same((r.document.clusters as Array<{ endpoints: unknown[] }>)[0]?.endpoints, [{ url: 'http://a:1' }, { url: 'http://b:1', weight: 5 }])
  t.same(r.errors, ['/routes/nope/x: no element "nope"'])
  t.equal(r.changes.length, 5)
  t.equal(doc.routes[0]?.plugins.length, 1, 'the input is untouched')
  t.same(patchPath({ a: [{ name: 'x', v: 1 }] }, '/a/x/v', 2), { before: 1 })
})

t.test('a patch never reaches a prototype', async (t) => {
  for (const path of ['/__proto__/polluted', '/constructor/prototype/polluted', '/routes/api/__proto__/polluted', '/routes/0/prototype']) {
    t.throws(() => parseRule({ name: 'x', route: 'api', when: 'rps > 1', then: [{ type: 'patch', path, value: 'yes' }] }), { code: 'INVALID_CONFIG', issues: [{ path: 'then.0.path' }] }, path)
    t.type(patchPath({ routes: [{ name: 'api' }] }, path, 'yes'), 'string', `patchPath refuses ${path}`)
  }
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is untouched')
  // An inherited property is not part of the document: the patch makes an own one.
  const doc: Record<string, unknown> = {}
  t.same(patchPath(doc, '/toString/x', 1), { before: undefined })
  t.same(doc, { toString: { x: 1 } })
  t.same(patchPath({}, '/hasOwnProperty', 1), { before: undefined }, 'the old value of an absent key is undefined, not the inherited one')
})

t.test('a viewer\'s backtest and an operator\'s dry run cannot pollute the control plane', async (t) => {
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json`, ruleIntervalMs: 0 })
  await operatorClient(t, cp.address, 'admin').putConfig({ configJson: JSON.stringify(baseDocument([['up', 'http://127.0.0.1:9']], [{ name: 'api', cluster: 'up' }])) })
  const now = cp.analytics.now()
  for (let at = now - 3600; at < now; at += 60) cp.analytics.record('n1', [{ route: 'api', requests: 50, errors: 0, bounds: [], buckets: [] }], at)
  const rule = { name: 'evil', route: 'api', when: 'requests >= 0', then: [{ type: 'patch', path: '/__proto__/isAdmin', value: true }] }
  const put = await operatorClient(t, cp.address, 'operator').putRule({ ruleJson: JSON.stringify(rule), dryRun: true }).catch((e: unknown) => e as CallError)
  t.equal((put as CallError).code, grpc.status.INVALID_ARGUMENT)
  const bt = await operatorClient(t, cp.address, 'viewer').backtestRule({ ruleJson: JSON.stringify(rule), range: '1h' }).catch((e: unknown) => e as CallError)
  t.equal((bt as CallError).code, grpc.status.INVALID_ARGUMENT)
  t.equal(({} as Record<string, unknown>).isAdmin, undefined)
})

const SLOW = [0, 0, 10, 0] // every request between 0.5 s and 1 s
const FAST = [10, 0, 0, 0]

function traffic (cp: RunningControlPlane, buckets: number[], errors = 0, at?: number): void {
  cp.analytics.record('n1', [{ route: 'api', requests: 10, errors, bounds: [0.1, 0.5, 1], buckets }], at)
}

t.test('a rule fires after its condition held for its duration, changes the config, respects cooldown and priority, and can be rolled back', async (t) => {
  const up = await startUpstream((_req, res) => { res.writeHead(200); res.end('ok') })
  t.teardown(() => up.close())
  let now = 1_800_000_000_000
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json`, now: () => now, ruleIntervalMs: 0 })
  const admin = operatorClient(t, cp.address, 'admin')
  const op = operatorClient(t, cp.address, 'operator')
  const viewer = operatorClient(t, cp.address, 'viewer')
  const v0 = (await admin.putConfig({ configJson: JSON.stringify(baseDocument([['up', up.url]], [{ name: 'api', match: { pathPrefix: '/' }, cluster: 'up', plugins: [{ name: 'rate-limit', config: { points: 100, duration: 1 } }] }])) })).version
  const dp = await startTestDataPlane(t, cp.address, 'dp-1')
  await dp.started
  // The parsed config normalises the shorthand into `limits`.
  const points = (): unknown => (dp.proxy?.snapshot.config.routes[0]?.plugins[0]?.config as { limits?: Array<{ points: number }> } | undefined)?.limits?.[0]?.points

  await op.putRule({ ruleJson: JSON.stringify({ name: 'shed', route: 'api', when: 'p99 > 500ms for 2m', then: [{ type: 'scale-rate-limit', factor: 0.5 }], cooldown: '10m', priority: 10 }) })
  await op.putRule({ ruleJson: JSON.stringify({ name: 'also-shed', route: 'api', when: 'p99 > 500ms', then: [{ type: 'scale-rate-limit', factor: 0.1 }], priority: 1 }) })
  await op.putRule({ ruleJson: JSON.stringify({ name: 'watch-errors', route: 'api', when: 'errorRatio > 5%', then: [{ type: 'patch', path: '/routes/api/plugins/rate-limit/config/headersOnAllowed', value: true }], dryRun: true }) })
  const refused = await op.putRule({ ruleJson: JSON.stringify({ name: 'bad', route: 'api', when: 'rps > 1', then: [{ type: 'patch', path: '/routes/api/plugins/rate-limit/config/points', value: -1 }] }) }).catch((e: unknown) => e as CallError)
  t.equal((refused as CallError).code, grpc.status.INVALID_ARGUMENT, 'a rule whose action would break the config is refused')
  t.equal((await viewer.putRule({ ruleJson: '{}' }).catch((e: unknown) => e as CallError) as CallError).code, grpc.status.PERMISSION_DENIED)

  // t0: slow and failing. also-shed fires at once (no `for`); shed only holds; the dry run only audits.
  traffic(cp, SLOW, 1)
  const first = await cp.rules.tick()
  t.same(first.map((f) => [f.rule, f.outcome]), [['also-shed', 'applied'], ['watch-errors', 'dry-run']])
  await waitFor('points 10', () => points() === 10)
  t.pass('also-shed cut the limit to 10 on the data plane')
  const dry = (await viewer.listAudit({ limit: 1 })).entries[0]
  t.match(dry, { action: 'rule_fired', actor: 'rule:watch-errors', summary: /^dry run: would change \/routes\/api\/plugins\/rate-limit\/config\/headersOnAllowed undefined → true/, message: /errorRatio > 5% \(0.1\)/ })
  await op.deleteRule({ name: 'also-shed' })
  await op.putRule({ ruleJson: JSON.stringify({ name: 'also-shed', route: 'api', when: 'p99 > 500ms', then: [{ type: 'scale-rate-limit', factor: 0.1 }], priority: 1, cooldown: '1h' }) })
  await op.rollback({ version: v0 })
  await waitFor('points 100 again', () => points() === 100)

  now += 60_000
  traffic(cp, SLOW)
  t.same((await cp.rules.tick()).map((f) => [f.rule, f.outcome]), [['also-shed', 'applied']], 'shed has held for 1m of 2m')
  await op.rollback({ version: v0 })

  now += 60_000
  traffic(cp, SLOW)
  const fired = await cp.rules.tick()
  t.same(fired.map((f) => [f.rule, f.outcome]), [['shed', 'applied']], 'shed fires after 2m; also-shed is in its cooldown')
  const shedVersion = fired[0]?.version ?? 0
  await waitFor('points 50 on the data plane', () => points() === 50)
  t.match((await viewer.listHistory({ limit: 1 })).entries[0], { version: shedVersion, action: 'apply_rule', author: 'rule:shed', message: /p99 > 500ms for 2m \(\d+/ })
  t.match((await viewer.listAudit({ limit: 1 })).entries[0], { action: 'rule_fired', target: 'shed', summary: 'changed /routes/api/plugins/rate-limit/config/points 100 → 50' })

  now += 60_000
  traffic(cp, SLOW)
  t.same(await cp.rules.tick(), [], 'both in their cooldown')
  now += 10 * 60_000
  traffic(cp, SLOW)
  now += 1000
  traffic(cp, SLOW)
  const again = await cp.rules.tick()
  t.same(again.map((f) => f.rule), ['shed'], 'after the cooldown it fires again (it kept holding)')
  await waitFor('points 25', () => points() === 25)

  // Priority: when both fire in one evaluation, the lower one is suppressed.
  await op.putRule({ ruleJson: JSON.stringify({ name: 'shed', route: 'api', when: 'p99 > 500ms', then: [{ type: 'scale-rate-limit', factor: 0.5 }], cooldown: '10m', priority: 10 }) })
  now += 3_600_000
  traffic(cp, SLOW)
  t.same((await cp.rules.tick()).map((f) => [f.rule, f.outcome]), [['shed', 'applied'], ['also-shed', 'suppressed']])

  const listed = await viewer.listRules({})
  t.same(listed.rules.map((r) => r.name), ['shed', 'also-shed', 'watch-errors'], 'by priority')
  t.match(listed.rules[0], { holding: true, firings: 3 })
  t.ok((listed.rules[0]?.lastValues['p99 > 500ms'] ?? 0) > 500)

  // A rule's change is a version like any other: roll it back.
  await op.rollback({ version: shedVersion - 1 })
  await waitFor('points back to 100', () => points() === 100)
  now += 3_600_000
  traffic(cp, FAST)
  t.same(await cp.rules.tick(), [], 'fast traffic: nothing holds')
})

t.test('latency past the histograms\' week is no data, not 0 ms: GetSeries omits it, rules do not fire on it', async (t) => {
  const day = 1_800_028_800 // a multiple of 300
  let now = (day + 9 * 86_400) * 1000
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json`, now: () => now, ruleIntervalMs: 0 })
  const admin = operatorClient(t, cp.address, 'admin')
  const viewer = operatorClient(t, cp.address, 'viewer')
  await admin.putConfig({ configJson: JSON.stringify(baseDocument([['up', 'http://127.0.0.1:9']], [{ name: 'api', cluster: 'up', plugins: [{ name: 'rate-limit', config: { points: 100, duration: 1 } }] }])) })
  // Nine days of slow traffic: the 5-minute tier keeps the counts of all, the histograms of the last seven.
  for (let i = 0; i < 9 * 288; i++) traffic(cp, SLOW, 0, day + i * 300)

  const points = (await viewer.getSeries({ route: 'api', stepSeconds: 300 })).points
  t.equal(points.length, 9 * 288)
  const old = points.filter((p) => p.p99Ms === undefined)
  t.equal(old.length, 2 * 288, 'the two oldest days have no p99')
  t.ok(old.every((p) => p.t < day + 2 * 86_400 && p.requests === 10), 'but still their counts')
  t.ok(points.slice(2 * 288).every((p) => (p.p99Ms ?? 0) > 500), 'the last week has its p99')

  const rule = { name: 'relax', route: 'api', when: 'p99 < 100ms', then: [{ type: 'scale-rate-limit', factor: 2 }], window: '5m' }
  const r = await viewer.backtestRule({ ruleJson: JSON.stringify(rule), range: '9d' })
  t.equal(r.evaluations, 9 * 288)
  t.same(r.firings, [], 'intervals without a histogram do not hold "p99 < 100ms"')
  const wide = await viewer.backtestRule({ ruleJson: JSON.stringify({ ...rule, window: '1h' }), range: '9d' })
  t.same(wide.firings, [], 'nor do 1-hour windows: before the edge they have no data, across it the latency of their newer intervals')

  // Live: a route whose reports have counts but no histogram has no p99 either.
  now += 86_400_000
  await operatorClient(t, cp.address, 'operator').putRule({ ruleJson: JSON.stringify({ ...rule, window: '1m' }) })
  cp.analytics.record('n1', [{ route: 'api', requests: 10, errors: 0, bounds: [0.1, 0.5, 1], buckets: [] }])
  t.same(await cp.rules.tick(), [], 'counts without buckets do not hold "p99 < 100ms"')
  t.same((await viewer.listRules({})).rules[0]?.lastValues, {}, 'its value: no data')
})

t.test('backtesting replays a rule over the stored history', async (t) => {
  const day = 1_800_028_800 // a multiple of 300
  let now = (day + 86_400) * 1000
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json`, now: () => now, ruleIntervalMs: 0 })
  const admin = operatorClient(t, cp.address, 'admin')
  const viewer = operatorClient(t, cp.address, 'viewer')
  await admin.putConfig({ configJson: JSON.stringify(baseDocument([['up', 'http://127.0.0.1:9']], [{ name: 'api', cluster: 'up', plugins: [{ name: 'rate-limit', config: { points: 100, duration: 1 } }] }])) })
  // A day of fast traffic with three slow spells of 15 minutes (3 intervals), at 03:00, 10:00 and 10:30.
  const slow = new Set([3 * 12, 3 * 12 + 1, 3 * 12 + 2, 10 * 12, 10 * 12 + 1, 10 * 12 + 2, 10 * 12 + 6, 10 * 12 + 7, 10 * 12 + 8])
  for (let i = 0; i < 288; i++) traffic(cp, slow.has(i) ? SLOW : FAST, 0, day + i * 300)
  now = (day + 86_400) * 1000

  const rule = { name: 'shed', route: 'api', when: 'p99 > 500ms for 5m', then: [{ type: 'scale-rate-limit', factor: 0.5 }], cooldown: '1h' }
  const r = await viewer.backtestRule({ ruleJson: JSON.stringify(rule), range: '24h' })
  t.equal(r.stepSeconds, 300)
  t.equal(r.evaluations, 288)
  const iso = (s: number): string => new Date(s * 1000).toISOString()
  t.same(r.firings.map((f) => f.at), [iso(day + (3 * 12 + 2) * 300), iso(day + (10 * 12 + 2) * 300)], 'the second spell at 10:30 is within the hour of cooldown')
  t.same(r.firings.map((f) => f.changes[0]?.afterJson), ['50', '25'], 'firings compound: what it would have set')
  t.ok((r.firings[0]?.values['p99 > 500ms for 5m'] ?? 0) > 500)

  await operatorClient(t, cp.address, 'operator').putRule({ ruleJson: JSON.stringify({ ...rule, cooldown: '10m' }) })
  const stored = await viewer.backtestRule({ name: 'shed', range: '16h' })
  t.equal(stored.firings.length, 2, 'the last 16 hours: 10:00 and 10:30 (03:00 is out of range)')
  t.equal(stored.firings.length === 2 && stored.firings[1]?.at, iso(day + (10 * 12 + 8) * 300))
  t.equal((await viewer.listAudit({ limit: 1 })).entries[0]?.action, 'put_rule', 'a backtest changes nothing')
})
