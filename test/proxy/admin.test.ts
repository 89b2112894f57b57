import t from 'tap'
import type { Test } from 'tap'
import { execFile } from 'node:child_process'
import { writeFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.ts'
import { startTestProxy, simpleDoc, testConfig, testLogger } from '../helpers/proxy.ts'
import { startProxy } from '../../src/proxy.ts'
import { createMetrics } from '../../src/metrics.ts'
import { parseMetrics } from '../helpers/metrics.ts'

const run = promisify(execFile)

async function hasPromtool (): Promise<boolean> {
  try { await run('promtool', ['--version']); return true } catch { return false }
}


t.test('admin endpoints', async (t) => {
  const up = await startUpstream((_req, res) => { res.end('ok') })
  t.teardown(up.close)
  const proxy = await startTestProxy({
    clusters: [{ name: 'users', endpoints: [{ url: up.url }, { url: up.url.replace('127.0.0.1', 'localhost'), weight: 3 }] }],
    routes: [{ name: 'users-api', match: { pathPrefix: '/users' }, cluster: 'users' }],
  }, t)

  const live = await request(`${proxy.adminUrl}/live`)
  t.equal(live.statusCode, 200)
  await live.body.dump()
  const ready = await request(`${proxy.adminUrl}/ready`)
  t.equal(ready.statusCode, 200)
  t.match(await ready.body.json(), { status: 'ready', version: proxy.snapshot.version })

  const cfg = await (await request(`${proxy.adminUrl}/config`)).body.json() as Record<string, unknown>
  t.match(cfg, { version: proxy.snapshot.version, source: 'test', config: { routes: [{ name: 'users-api' }] } })

  const clusters = await (await request(`${proxy.adminUrl}/clusters`)).body.json() as { clusters: Array<{ name: string, endpoints: Array<Record<string, unknown>> }> }
  t.equal(clusters.clusters[0]?.name, 'users')
  t.equal(clusters.clusters[0]?.endpoints.length, 2)
  t.match(clusters.clusters[0]?.endpoints[1], { weight: 3, healthy: true, inflight: 0, pool: { size: Number } })

  const nf = await request(`${proxy.adminUrl}/nope`)
  t.equal(nf.statusCode, 404)
  await nf.body.dump()
})

t.test('/metrics: per-route series with bounded labels', async (t) => {
  const up = await startUpstream((req, res) => { res.statusCode = req.url?.includes('fail') === true ? 503 : 200; res.end('x') })
  t.teardown(up.close)
  const proxy = await startTestProxy({
    clusters: [{ name: 'users', endpoints: [{ url: up.url }] }],
    routes: [{ name: 'users-api', match: { pathPrefix: '/users' }, cluster: 'users' }],
  }, t)
  for (const p of ['/users/1', '/users/2?secret=1', '/users/fail']) await (await request(proxy.url + p)).body.dump()
  await (await request(proxy.url + '/users/3', { method: 'POST', body: 'hi' })).body.dump()
  await (await request(proxy.url + '/elsewhere/attacker-chosen')).body.dump()
  await (await request(proxy.url + '/users/4', { method: 'PROPFIND' })).body.dump()

  const res = await request(`${proxy.adminUrl}/metrics`)
  t.match(res.headers['content-type'], /text\/plain/)
  const text = await res.body.text()
  const m = parseMetrics(text)
  t.equal(m.get('outrider_requests_total{route="users-api",method="GET",status_class="2xx"}'), 2)
  t.equal(m.get('outrider_requests_total{route="users-api",method="GET",status_class="5xx"}'), 1)
  t.equal(m.get('outrider_requests_total{route="users-api",method="POST",status_class="2xx"}'), 1)
  t.equal(m.get('outrider_requests_total{route="users-api",method="OTHER",status_class="2xx"}'), 1, 'unknown methods are folded into OTHER')
  t.equal(m.get('outrider_requests_total{route="__unmatched__",method="GET",status_class="4xx"}'), 1)
  t.equal(m.get('outrider_request_duration_seconds_count{route="users-api"}'), 5)
  t.equal(m.get('outrider_upstream_duration_seconds_count{cluster="users"}'), 5)
  t.equal(m.get('outrider_requests_in_flight'), 0)
  t.equal(m.get('outrider_config_reloads_total{result="success"}'), 1)
  t.notOk(text.includes('attacker-chosen') || text.includes('secret') || text.includes('PROPFIND'), 'no client input in label values')

  await promtoolCheck(t, text)
})

/** `promtool check metrics` on an exposition: no output is no problem. Skipped (with a comment) without promtool. */
async function promtoolCheck (t: Test, text: string): Promise<void> {
  if (!await hasPromtool()) { t.comment('promtool not installed: exposition format not cross-checked'); return }
  const dir = await mkdtemp(path.join(tmpdir(), 'outrider-metrics-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'metrics.txt')
  await writeFile(file, text)
  const { stdout, stderr } = await run('sh', ['-c', `promtool check metrics < ${file}`]).catch((e: { stdout: string, stderr: string }) => e)
  t.equal(`${stdout}${stderr}`.trim(), '', 'promtool check metrics finds no problem')
}

t.test('/metrics as served, process metrics included, passes promtool', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  // Not startTestProxy: it leaves prom-client's default metrics out.
  const proxy = await startProxy({ config: testConfig(simpleDoc(up.url)), source: 'test', log: testLogger(), metrics: createMetrics() })
  t.teardown(() => proxy.shutdown(0))
  await (await request(`http://127.0.0.1:${proxy.port}/`)).body.dump()
  const text = await (await request(`http://127.0.0.1:${proxy.adminPort ?? 0}/metrics`)).body.text()
  t.match(text, /^outrider_process_cpu_seconds_total /m, 'the default metrics are there')
  t.match(text, /^outrider_nodejs_active_handles\{type="[^"]+"\} \d+$/m, 'active handles by type')
  t.notMatch(text, /^outrider_nodejs_active_\w+_total/m, 'no gauge named like a counter')
  await promtoolCheck(t, text)
})

t.test('weight hints for peak_ewma clusters', async (t) => {
  const a = await startUpstream((_req, res) => { res.end('a') })
  const b = await startUpstream((_req, res) => { res.end('b') })
  t.teardown(a.close)
  t.teardown(b.close)
  const proxy = await startTestProxy({
    clusters: [
      { name: 'smart', loadBalancer: { policy: 'peak_ewma' }, endpoints: [{ url: a.url }, { url: b.url }] },
      { name: 'plain', endpoints: [{ url: a.url }] },
    ],
    routes: [{ name: 'r', cluster: 'smart' }],
  }, t)
  const post = async (cluster: string, body: unknown): Promise<{ status: number, json: Record<string, unknown> }> => {
    const res = await request(`${proxy.adminUrl}/clusters/${cluster}/weight-hints`, { method: 'POST', body: JSON.stringify(body) })
    return { status: res.statusCode, json: await res.body.json() as Record<string, unknown> }
  }
  const ok = await post('smart', { endpoint: `${b.url}/`, weight: 5 })
  t.equal(ok.status, 200)
  const state = await (await request(`${proxy.adminUrl}/clusters`)).body.json() as { clusters: Array<{ endpoints: Array<{ score: { weightHint: number | null } }> }> }
  t.equal(state.clusters[0]?.endpoints[1]?.score.weightHint, 5, 'the hint shows on /clusters')
  t.equal((await post('smart', { endpoint: b.url, weight: null })).status, 200, 'null clears it')
  t.equal((await post('plain', { endpoint: a.url, weight: 2 })).status, 404, 'only latency-aware policies take hints')
  t.equal((await post('smart', { endpoint: 'http://127.0.0.1:1', weight: 2 })).status, 404, 'unknown endpoint')
  t.equal((await post('smart', { endpoint: b.url, weight: -1 })).status, 400)
  t.equal((await post('nope', { endpoint: b.url, weight: 1 })).status, 404)
})

t.test('log level can be changed at runtime', async (t) => {
  const proxy = await startTestProxy({}, t)
  const set = async (body: unknown): Promise<number> => {
    const res = await request(`${proxy.adminUrl}/log-level`, { method: 'POST', body: JSON.stringify(body) })
    await res.body.dump()
    return res.statusCode
  }
  t.equal(await set({ level: 'debug' }), 200)
  t.equal(proxy.log.level, 'debug')
  t.equal(proxy.log.child({ a: 1 }).level, 'debug', 'children follow')
  t.equal(await set({ level: 'loud' }), 400)
  t.equal(await set({ level: 'warn' }), 200)
  t.equal(proxy.log.level, 'warn')
})
