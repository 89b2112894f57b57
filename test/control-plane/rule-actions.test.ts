import t from 'tap'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { applyActions, parseRule } from '../../control-plane/rules.ts'
import type { RunningControlPlane } from '../../control-plane/server.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import { get, operatorClient, proxyUrl, startTestControlPlane, startTestDataPlane, tempDir, waitFor } from './helpers.ts'

function failing (cp: RunningControlPlane): void {
  cp.analytics.record('n1', [{ route: 'api', requests: 10, errors: 1, bounds: [0.1], buckets: [10, 0] }])
}

interface Received { path: string, headers: http.IncomingHttpHeaders, body: Record<string, unknown> }

/** A webhook receiver: /ok answers 503 once then 200, /down always 500, /hang never answers. */
async function startReceiver (t: { teardown (fn: () => unknown): void }): Promise<{ url: string, received: Received[], hanging: http.ServerResponse[] }> {
  const received: Received[] = []
  const hanging: http.ServerResponse[] = []
  let okCalls = 0
  const server = http.createServer((req, res) => {
    let text = ''
    req.on('data', (c: Buffer) => { text += c.toString() })
    req.on('end', () => {
      const path = req.url ?? ''
      received.push({ path, headers: req.headers, body: JSON.parse(text) as Record<string, unknown> })
      if (path.startsWith('/hang')) { hanging.push(res); return }
      res.writeHead(path.startsWith('/ok') ? (okCalls++ === 0 ? 503 : 200) : 500).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => { for (const r of hanging) r.destroy(); server.closeAllConnections(); server.close(resolve) }))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received, hanging }
}

t.test('webhook alerts: posted off the rule loop, retried, bounded, counted; secrets redacted in the audit log', async (t) => {
  const rx = await startReceiver(t)
  const now = 1_800_000_000_000
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json`, now: () => now, ruleIntervalMs: 0, webhooks: { backoffMs: 10 } })
  const admin = operatorClient(t, cp.address, 'admin')
  const op = operatorClient(t, cp.address, 'operator')
  const viewer = operatorClient(t, cp.address, 'viewer')
  await admin.putConfig({ configJson: JSON.stringify({ listen: { host: '127.0.0.1', port: 0 }, clusters: [{ name: 'up', endpoints: [{ url: 'http://127.0.0.1:9' }] }], routes: [{ name: 'api', cluster: 'up' }] }) })

  await op.putRule({
    ruleJson: JSON.stringify({
      name: 'page',
      route: 'api',
      when: 'errorRatio > 5%',
      priority: 1,
      then: [
        { type: 'patch', path: '/routes/api/timeouts/request', value: '3s' },
        { type: 'webhook', url: `${rx.url}/ok?token=q-secret`, headers: { authorization: 'Bearer s3cret', 'x-team': 'edge' } },
        { type: 'webhook', url: `${rx.url}/down`, retries: 2 },
        { type: 'webhook', url: `${rx.url}/hang`, timeout: '1s', retries: 0 },
      ],
    }),
  })
  // Answered only when the test says so: proves the evaluation does not wait for a receiver.
  await op.putRule({ ruleJson: JSON.stringify({ name: 'watch', route: 'api', when: 'errorRatio > 5%', dryRun: true, then: [{ type: 'webhook', url: `${rx.url}/hang-long`, timeout: '60s', retries: 0 }] }) })
  const bad = await op.putRule({ ruleJson: JSON.stringify({ name: 'x', route: 'api', when: 'rps > 1', then: [{ type: 'webhook', url: 'ftp://nope' }] }) }).catch((e: unknown) => e as Error)
  t.match(bad, { message: /then\.0\.url.*http/ }, 'a webhook needs an http(s) URL')

  failing(cp)
  const fired = await cp.rules.tick()
  t.same(fired.map((f) => [f.rule, f.outcome]), [['page', 'applied'], ['watch', 'dry-run']], 'the tick returned while /hang-long still holds its request')
  const version = fired[0]?.version

  await waitFor('/ok delivered on its second attempt', () => rx.received.filter((r) => r.path.startsWith('/ok')).length === 2 && cp.rules.webhooks.stats.delivered === 1)
  const ok = rx.received.filter((r) => r.path.startsWith('/ok'))[1] as Received
  t.match(ok.headers, { authorization: 'Bearer s3cret', 'x-team': 'edge', 'content-type': 'application/json' }, 'the real header values are sent')
  t.same(ok.body, {
    rule: 'page',
    route: 'api',
    cluster: 'up',
    conditions: ['errorRatio > 5%'],
    values: { 'errorRatio > 5%': 0.1 },
    firedAt: new Date(now).toISOString(),
    dryRun: false,
    outcome: 'applied',
    version,
    changes: [{ path: '/routes/api/timeouts/request', after: '3s' }],
    errors: [],
  })
  await waitFor('/hang-long got the dry run', () => rx.received.some((r) => r.path === '/hang-long'))
  t.match(rx.received.find((r) => r.path === '/hang-long')?.body, { rule: 'watch', dryRun: true, outcome: 'dry-run' })

  await waitFor('/down failed after 3 attempts, /hang timed out', () => cp.rules.webhooks.stats.failed === 2)
  t.equal(rx.received.filter((r) => r.path === '/down').length, 3, 'one attempt and two retries')
  t.equal(rx.received.filter((r) => r.path === '/hang').length, 1, 'a timed-out attempt with retries: 0 is not retried')
  t.match(cp.rules.webhooks.stats, { delivered: 1, failed: 2, retried: 3 })
  const page = (await viewer.listRules({})).rules.find((r) => r.name === 'page')
  t.match(page, { alertsDelivered: 1, alertsFailed: 2 }, 'counted per rule in ListRules')

  // Secrets: the store keeps them (deliveries need them); the audit log and ListRules do not show them.
  const audit = JSON.stringify((await viewer.listAudit({})).entries)
  t.notOk(audit.includes('s3cret') || audit.includes('q-secret'), 'no header value or query token in the audit log')
  t.match(audit, /"authorization\\":\\"redacted\\"/)
  t.match((await viewer.listAudit({ limit: 2 })).entries.map((e) => e.summary).join('\n'), /alert to http:\/\/127\.0\.0\.1:\d+\/ok\?token=redacted/)
  t.notOk(page?.ruleJson.includes('s3cret'), 'ListRules redacts too')
  t.ok(JSON.stringify(cp.desired.rules()).includes('s3cret'))

  for (const r of rx.hanging) r.writeHead(200).end()
  await cp.rules.webhooks.idle()
  t.equal(cp.rules.webhooks.stats.delivered, 2, '/hang-long answered at last')
})

t.test('eject-endpoint refuses the last endpoint and more than maxEjectedPercent', async (t) => {
  const doc = { clusters: [{ name: 'c', endpoints: [{ url: 'http://a:1' }, { url: 'http://b:1' }, { url: 'http://c:1', weight: 2 }] }] }
  const eject = (endpoint: string, extra: Record<string, unknown> = {}) => ({ type: 'eject-endpoint', cluster: 'c', endpoint, ...extra })
  const rule = (...then: unknown[]) => parseRule({ name: 'r', route: 'api', when: 'rps > 1', then })

  const one = applyActions(rule(eject('http://c:1/', { readmitAfter: '10m' })), doc)
  t.same(one.errors, [])
  t.same(one.ejections, [{ cluster: 'c', endpoint: { url: 'http://c:1', weight: 2 }, readmitAfterSeconds: 600 }], 'the configured object, to put back as it was')
  t.same(one.changes, [{ path: '/clusters/c/endpoints/http://c:1', before: { url: 'http://c:1', weight: 2 }, after: null }])

  const two = applyActions(rule(eject('http://a:1'), eject('http://b:1')), doc)
  t.equal(two.ejections.length, 1)
  t.match(two.errors, [/^not ejecting http:\/\/b:1 from cluster "c": 2 of its 3 endpoints would be out, more than maxEjectedPercent \(50%\)$/])
  t.match(applyActions(rule(eject('http://a:1')), doc, { ejected: () => 2 }).errors, [/3 of its 5 endpoints/], 'earlier ejections count')
  t.equal(applyActions(rule(eject('http://a:1', { maxEjectedPercent: 100 }), eject('http://b:1', { maxEjectedPercent: 100 }), eject('http://c:1', { maxEjectedPercent: 100 })), doc).errors[0],
    'not ejecting http://c:1 from cluster "c": it is the cluster\'s last endpoint')
  t.match(applyActions(rule(eject('http://z:1')), doc).errors, [/has no endpoint http:\/\/z:1/])
})

async function named (t: { teardown (fn: () => unknown): void }, name: string): Promise<Upstream> {
  const up = await startUpstream((_req, res) => { res.writeHead(200); res.end(name) })
  t.teardown(() => up.close())
  return up
}

t.test('eject-endpoint: a version the data plane applies, refused for the last endpoint, readmitted later, and forgotten after a rollback', async (t) => {
  const a = await named(t, 'a')
  const b = await named(t, 'b')
  let now = 1_800_000_000_000
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json`, now: () => now, ruleIntervalMs: 0 })
  const admin = operatorClient(t, cp.address, 'admin')
  const op = operatorClient(t, cp.address, 'operator')
  const viewer = operatorClient(t, cp.address, 'viewer')
  const doc = {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    clusters: [{ name: 'up', endpoints: [{ url: a.url }, { url: b.url }] }],
    routes: [{ name: 'api', match: { pathPrefix: '/' }, cluster: 'up' }],
  }
  const v0 = (await admin.putConfig({ configJson: JSON.stringify(doc) })).version
  const dp = await startTestDataPlane(t, cp.address, 'dp-1')
  await dp.started
  const served = async (n: number): Promise<Set<string>> => {
    const seen = new Set<string>()
    for (let i = 0; i < n; i++) seen.add((await get(proxyUrl(dp, '/'))).body)
    return seen
  }
  t.same([...await served(4)].sort(), ['a', 'b'])

  await op.putRule({ ruleJson: JSON.stringify({ name: 'eject-b', route: 'api', when: 'errorRatio > 5%', then: [{ type: 'eject-endpoint', cluster: 'up', endpoint: b.url, readmitAfter: '5m' }], cooldown: '5m', priority: 2 }) })
  await op.putRule({ ruleJson: JSON.stringify({ name: 'eject-a', route: 'api', when: 'errorRatio > 5%', then: [{ type: 'eject-endpoint', cluster: 'up', endpoint: a.url }], cooldown: '1m', priority: 1 }) })

  failing(cp)
  const fired = await cp.rules.tick()
  t.match(fired, [
    { rule: 'eject-b', outcome: 'applied' },
    { rule: 'eject-a', outcome: 'refused', errors: [/: it is the cluster's last endpoint$/] },
  ], 'the lower rule sees the higher one\'s ejection: the last endpoint stays, with the reason')
  const ejectVersion = fired[0]?.version ?? 0
  await waitFor('the data plane runs the ejecting version', () => dp.proxy?.snapshot.config.clusters[0]?.endpoints.length === 1)
  t.same([...await served(4)], ['a'], 'b is out')
  t.match((await viewer.listHistory({ limit: 1 })).entries[0], { version: ejectVersion, action: 'apply_rule', author: 'rule:eject-b' })
  t.match(cp.desired.ejections(), [{ cluster: 'up', endpoint: { url: b.url }, rule: 'eject-b', version: ejectVersion, readmitAt: now + 300_000 }])

  now += 60_000
  failing(cp)
  const refused = await cp.rules.tick()
  t.match(refused, [{ rule: 'eject-a', outcome: 'refused', errors: [/: it is the cluster's last endpoint$/] }], 'and again after its cooldown')
  t.match((await viewer.listAudit({ limit: 1 })).entries[0], { action: 'rule_fired', actor: 'rule:eject-a', summary: /could not: not ejecting .* it is the cluster's last endpoint/ })
  t.equal(cp.desired.current?.version, ejectVersion, 'no version for a refusal')
  await op.deleteRule({ name: 'eject-a' })

  now += 240_000
  t.same(await cp.rules.tick(), [], 'nothing fires: the failing traffic left the window')
  t.equal(cp.desired.current?.version, ejectVersion + 1, 'readmitAfter passed: b is back in a new version')
  t.match((await viewer.listHistory({ limit: 1 })).entries[0], { action: 'readmit_endpoint', author: 'rule:eject-b', message: `readmitted after rule eject-b ejected it in v${ejectVersion}` })
  await waitFor('the data plane serves b again', async () => (await served(4)).has('b'))
  t.same(cp.desired.ejections(), [])

  // A rollback brings an ejected endpoint back: the record is forgotten, no readmission later.
  now += 60_000
  failing(cp)
  t.match(await cp.rules.tick(), [{ rule: 'eject-b', outcome: 'applied' }])
  t.equal(cp.desired.ejections().length, 1)
  await op.rollback({ version: v0 })
  await cp.rules.tick()
  t.same(cp.desired.ejections(), [])
  t.match((await viewer.listAudit({ limit: 1 })).entries[0], { action: 'ejection_ended', actor: 'rule:eject-b', summary: /back in the cluster/ })
  await waitFor('b served after the rollback', async () => (await served(4)).has('b'))
})

t.test('a cooldown outlives the control plane that fired (read back from the audit log)', async (t) => {
  // The audit log is stamped by the wall clock, so this engine clock follows it.
  let offset = 0
  const now = (): number => Date.now() + offset
  const store = `${await tempDir(t)}/store.json`
  const rule = { name: 'patch', route: 'api', when: 'errorRatio > 5%', then: [{ type: 'patch', path: '/routes/api/timeouts/request', value: '3s' }], cooldown: '1h' }
  const cp1 = await startTestControlPlane(t, { store, now, ruleIntervalMs: 0 })
  await operatorClient(t, cp1.address, 'admin').putConfig({ configJson: JSON.stringify({ listen: { host: '127.0.0.1', port: 0 }, clusters: [{ name: 'up', endpoints: [{ url: 'http://127.0.0.1:9' }] }], routes: [{ name: 'api', cluster: 'up' }] }) })
  await operatorClient(t, cp1.address, 'operator').putRule({ ruleJson: JSON.stringify(rule) })
  failing(cp1)
  t.match(await cp1.rules.tick(), [{ rule: 'patch', outcome: 'applied' }])
  await cp1.close()

  const cp2 = await startTestControlPlane(t, { store, now, ruleIntervalMs: 0 })
  failing(cp2)
  t.same(await cp2.rules.tick(), [], 'the new process knows the rule fired within the hour')
  offset += 2 * 3_600_000
  failing(cp2)
  t.match(await cp2.rules.tick(), [{ rule: 'patch', outcome: 'applied' }], 'and fires once the cooldown is over')
})
