import t from 'tap'
import type { Test } from 'tap'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile, copyFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { request } from 'undici'
import YAML from 'yaml'
import { createMetrics } from '../../src/metrics.ts'
import { startProxy } from '../../src/proxy.ts'
import { testConfig, testLogger } from '../helpers/proxy.ts'
import { startUpstream } from '../helpers/upstream.ts'
import { freePort, runCli } from '../helpers/cli.ts'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const PROM_DIR = path.join(ROOT, 'examples/prometheus')
const CONFIG = path.join(PROM_DIR, 'prometheus.yml')
const RULES = path.join(PROM_DIR, 'rules.yml')
const RULES_TEST = path.join(PROM_DIR, 'rules.test.yml')
const DASHBOARD = path.join(ROOT, 'examples/grafana/outrider.json')


async function onPath (cmd: string): Promise<boolean> {
  try { await run(cmd, ['--version']); return true } catch { return false }
}
const hasPromtool = await onPath('promtool')
const hasPrometheus = await onPath('prometheus')
const NO_PROMTOOL = 'promtool is not on PATH (Debian/Ubuntu: apt-get install prometheus; CI installs it)'
const NO_PROMETHEUS = 'prometheus is not on PATH (Debian/Ubuntu: apt-get install prometheus; CI installs it)'

interface Result { code: number, out: string }

/** Runs a command and returns its exit code and stdout+stderr, never throwing on a non-zero exit. */
async function sh (cmd: string, args: string[], cwd = ROOT): Promise<Result> {
  try {
    const { stdout, stderr } = await run(cmd, args, { cwd })
    return { code: 0, out: `${stdout}${stderr}` }
  } catch (err) {
    const e = err as { code?: number, stdout?: string, stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` }
  }
}

async function tempDir (t: Test, prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

// ---- PromQL metric-name extraction (for the dashboard and rule checks) ------------

const PROMQL_FUNCTIONS = new Set([
  // aggregations
  'sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile',
  // functions
  'abs', 'absent', 'absent_over_time', 'ceil', 'changes', 'clamp', 'clamp_max', 'clamp_min', 'day_of_month', 'day_of_week',
  'day_of_year', 'days_in_month', 'delta', 'deriv', 'exp', 'floor', 'histogram_quantile', 'holt_winters', 'hour', 'idelta',
  'increase', 'irate', 'label_join', 'label_replace', 'ln', 'log2', 'log10', 'minute', 'month', 'predict_linear', 'rate',
  'resets', 'round', 'scalar', 'sgn', 'sort', 'sort_desc', 'sqrt', 'time', 'timestamp', 'vector', 'year',
  'avg_over_time', 'min_over_time', 'max_over_time', 'sum_over_time', 'count_over_time', 'quantile_over_time',
  'stddev_over_time', 'stdvar_over_time', 'last_over_time', 'present_over_time',
])
const PROMQL_KEYWORDS = new Set(['and', 'or', 'unless', 'offset', 'bool', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan'])

/**
 * The metric names an expression selects, and any identifier called like a
 * function that PromQL does not have. Grafana variables are stripped first.
 */
function promqlNames (expr: string): { metrics: string[], unknownFunctions: string[] } {
  let s = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""') // string literals
    .replace(/\$\{[^}]*\}|\$\w+/g, '') // Grafana variables
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // ranges and subqueries
  s = s.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
  const metrics: string[] = []
  const unknownFunctions: string[] = []
  for (const m of s.matchAll(/\d[\w.]*|[a-zA-Z_:][\w:]*/g)) {
    const word = m[0]
    if (/^\d/.test(word)) continue // numbers and durations (1e3, 0.99, 15m)
    if (PROMQL_KEYWORDS.has(word.toLowerCase())) continue
    if (/^\s*\(/.test(s.slice((m.index ?? 0) + word.length))) {
      if (!PROMQL_FUNCTIONS.has(word)) unknownFunctions.push(word)
      continue
    }
    metrics.push(word)
  }
  return { metrics, unknownFunctions }
}

/** Every name the real registry (src/metrics.ts, default metrics included) serves, with histogram/summary series suffixes. */
/** The core metric names (src/metrics.ts), with the series names histograms and summaries expose. */
async function coreNames (): Promise<Set<string>> {
  const metrics = createMetrics()
  const names = seriesNames(await metrics.registry.getMetricsAsJSON())
  metrics.registry.clear()
  return names
}

function seriesNames (list: Array<{ name: string, type: unknown }>): Set<string> {
  const names = new Set<string>()
  for (const m of list) {
    names.add(m.name)
    if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m.name + s)
    if (String(m.type) === 'summary') for (const s of ['_sum', '_count']) names.add(m.name + s)
  }
  return names
}

/**
 * Every metric name a real Outrider serves: the core ones and those the
 * plugins and tracing declare when a config uses them (a proxy with all of
 * them on, never sent a request).
 */
async function servedNames (): Promise<Set<string>> {
  const up = await startUpstream()
  const metrics = createMetrics()
  const proxy = await startProxy({
    config: testConfig({
      tracing: { endpoint: 'http://127.0.0.1:9/v1/traces' },
      clusters: [{ name: 'up', endpoints: [{ url: up.url }] }],
      routes: [{
        name: 'all',
        match: { pathPrefix: '/' },
        cluster: 'up',
        plugins: [
          { name: 'waf', config: {} },
          { name: 'rate-limit', config: { points: 10, duration: 1 } },
          { name: 'cache', config: {} },
          { name: 'compression', config: {} },
        ],
      }],
    }),
    source: 'test',
    log: testLogger(),
    metrics,
  })
  try {
    return seriesNames(await metrics.registry.getMetricsAsJSON())
  } finally {
    await proxy.shutdown(0)
    await up.close()
    metrics.registry.clear()
  }
}

interface Dashboard {
  schemaVersion: number
  panels: Panel[]
  templating: { list: Array<{ name: string, type: string, query?: unknown, definition?: string, datasource?: unknown }> }
  annotations?: { list: Array<Record<string, unknown>> }
}
interface Panel {
  id: number
  type: string
  title: string
  gridPos: { x: number, y: number, w: number, h: number }
  datasource?: { type?: string, uid?: string }
  targets?: Array<{ expr: string, format?: string, datasource?: { uid?: string } }>
  panels?: Panel[]
}

async function loadDashboard (): Promise<Dashboard> {
  return JSON.parse(await readFile(DASHBOARD, 'utf8')) as Dashboard
}

/** Every `expr` string anywhere in a JSON value. */
function allExprs (v: unknown, out: string[] = []): string[] {
  if (Array.isArray(v)) for (const x of v) allExprs(x, out)
  else if (v !== null && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      if (k === 'expr' && typeof x === 'string') out.push(x)
      else allExprs(x, out)
    }
  }
  return out
}

function allPanels (panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])])
}

/** `label_values(selector, label)` of a Grafana query variable, parsed. */
function labelValuesQuery (q: string): { selector: string, label: string } | undefined {
  const m = /^\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*$/.exec(q)
  return m === null ? undefined : { selector: m[1] as string, label: m[2] as string }
}

function variableQuery (v: { query?: unknown, definition?: string }): string {
  if (typeof v.query === 'string') return v.query
  if (v.query !== null && typeof v.query === 'object' && typeof (v.query as { query?: unknown }).query === 'string') return (v.query as { query: string }).query
  return v.definition ?? ''
}

/** The expression as Prometheus would get it from Grafana with every variable at "All". */
function substituteGrafana (expr: string): string {
  return expr
    .replace(/\$__rate_interval|\$\{__rate_interval\}|\$__interval|\$\{__interval\}/g, '15s')
    .replace(/\$__range|\$\{__range\}/g, '5m')
    .replace(/\$\{?\w+\}?/g, '.*')
}

// ---- (a) promtool ------------------------------------------------------------------

t.test('promtool: the scrape config, the rules and their unit tests', { skip: hasPromtool ? false : NO_PROMTOOL }, async (t) => {
  const config = await sh('promtool', ['check', 'config', CONFIG])
  t.equal(config.code, 0, 'promtool check config examples/prometheus/prometheus.yml', { output: config.out })
  t.match(config.out, /SUCCESS: 1 rule files found/, 'the config points at the rules file')

  const rules = await sh('promtool', ['check', 'rules', RULES])
  t.equal(rules.code, 0, 'promtool check rules examples/prometheus/rules.yml', { output: rules.out })

  const tests = await sh('promtool', ['test', 'rules', RULES_TEST])
  t.equal(tests.code, 0, 'promtool test rules examples/prometheus/rules.test.yml', { output: tests.out })
  t.match(tests.out, /SUCCESS/)
})

t.test('promtool: the commented Kubernetes pod-SD job is valid once uncommented', { skip: hasPromtool ? false : NO_PROMTOOL }, async (t) => {
  const text = await readFile(CONFIG, 'utf8')
  const start = text.indexOf('  # - job_name: outrider-sidecars')
  t.ok(start > 0, 'the example is there')
  const block = text.slice(start).split('\n').map((l) => l.startsWith('  # ') ? `  ${l.slice(4)}` : l).join('\n')
  const dir = await tempDir(t, 'outrider-promcfg-')
  await copyFile(RULES, path.join(dir, 'rules.yml'))
  const file = path.join(dir, 'prometheus.yml')
  await writeFile(file, text.slice(0, start) + block)
  const doc = YAML.parse(await readFile(file, 'utf8')) as { scrape_configs: Array<{ job_name: string, relabel_configs?: unknown[] }> }
  const job = doc.scrape_configs.find((j) => j.job_name === 'outrider-sidecars')
  t.ok((job?.relabel_configs?.length ?? 0) >= 4, 'relabelling by pod annotations')

  let res = await sh('promtool', ['check', 'config', file])
  if (res.code !== 0 && res.out.includes('kubernetes_sd_configs not found')) {
    // Debian builds Prometheus without the Kubernetes SD; the relabel rules
    // are still checked, on a static target instead.
    t.comment('this promtool has no kubernetes_sd_configs: checking the relabel rules on a static target')
    await writeFile(file, (text.slice(0, start) + block).replace('kubernetes_sd_configs:\n      - role: pod', "static_configs:\n      - targets: ['10.0.0.1:8080']"))
    res = await sh('promtool', ['check', 'config', file])
  }
  t.equal(res.code, 0, 'promtool check config on the uncommented example', { output: res.out })
})

t.test('promtool: the unit tests catch an alert that never fires', { skip: hasPromtool ? false : NO_PROMTOOL }, async (t) => {
  // Break each required alert in a copy of rules.yml: the unit tests must fail.
  const original = YAML.parse(await readFile(RULES, 'utf8')) as { groups: Array<{ rules: Array<{ alert?: string, expr: string }> }> }
  for (const alert of ['OutriderHighErrorRatio', 'OutriderClusterCircuitOpen', 'OutriderCircuitOpen', 'OutriderConfigReloadFailures']) {
    const doc = structuredClone(original)
    const rule = doc.groups.flatMap((g) => g.rules).find((r) => r.alert === alert)
    t.ok(rule, `${alert} is defined`)
    if (rule === undefined) continue
    rule.expr = 'vector(1) == 0'
    const dir = await tempDir(t, 'outrider-rules-')
    await writeFile(path.join(dir, 'rules.yml'), YAML.stringify(doc))
    await copyFile(RULES_TEST, path.join(dir, 'rules.test.yml'))
    const res = await sh('promtool', ['test', 'rules', path.join(dir, 'rules.test.yml')])
    t.not(res.code, 0, `a never-firing ${alert} fails the unit tests`)
    t.match(res.out, `alertname: ${alert}`)
  }
})

// ---- (c) dashboard and rules use real metric names ------------------------------------

t.test('the PromQL name extractor', async (t) => {
  t.same(promqlNames('histogram_quantile(0.99, sum by (route, le) (rate(a_bucket{route=~"$route", x="b_total"}[$__rate_interval])))'), { metrics: ['a_bucket'], unknownFunctions: [] })
  t.same(promqlNames('sum(rate(x_total[5m] offset 1h)) by (route) / on (route) group_left max(y) > 1e3 or z unless w offset 15m'), { metrics: ['x_total', 'y', 'z', 'w'], unknownFunctions: [] })
  t.same(promqlNames('up == 0 and bogus_fn(up)'), { metrics: ['up', 'up'], unknownFunctions: ['bogus_fn'] })
  t.same(promqlNames('a > 0 or (b unless on (x) c)'), { metrics: ['a', 'b', 'c'], unknownFunctions: [] })
  t.same(promqlNames('a:b:rate5m > 0.1'), { metrics: ['a:b:rate5m'], unknownFunctions: [] })
})

t.test('dashboard: valid JSON on the real metric names', async (t) => {
  const known = await servedNames()
  known.add('up')
  // Every core metric has a panel; plugin metrics need not (they are checked to exist above).
  const custom = [...await coreNames()].filter((n) => !/^outrider_(process|nodejs)_/.test(n) && !/_(bucket|sum|count)$/.test(n))
  t.ok(custom.includes('outrider_requests_total') && custom.includes('outrider_circuit_state'), 'names come from src/metrics.ts')

  const dash = await loadDashboard()
  t.ok(dash.schemaVersion >= 36 && dash.schemaVersion <= 41, `schemaVersion ${dash.schemaVersion}`)

  const vars = new Map(dash.templating.list.map((v) => [v.name, v]))
  t.equal(vars.get('DS_PROMETHEUS')?.type, 'datasource', 'the data source is a ${DS_PROMETHEUS} variable')
  for (const name of ['route', 'cluster']) {
    const v = vars.get(name)
    t.equal(v?.type, 'query', `$${name} is a query variable`)
    const lv = labelValuesQuery(variableQuery(v ?? {}))
    t.equal(lv?.label, name, `$${name} comes from label_values(..., ${name})`)
  }

  const panels = allPanels(dash.panels)
  const ids = panels.map((p) => p.id)
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique')
  const visible = panels.filter((p) => p.type !== 'row')
  for (const p of visible) {
    t.equal(p.datasource?.uid, '${DS_PROMETHEUS}', `${p.title}: data source`)
    t.ok((p.targets?.length ?? 0) > 0, `${p.title}: has queries`)
  }
  for (const [i, a] of visible.entries()) {
    for (const b of visible.slice(i + 1)) {
      const overlap = a.gridPos.x < b.gridPos.x + b.gridPos.w && b.gridPos.x < a.gridPos.x + a.gridPos.w &&
        a.gridPos.y < b.gridPos.y + b.gridPos.h && b.gridPos.y < a.gridPos.y + a.gridPos.h
      if (overlap) t.fail(`panels "${a.title}" and "${b.title}" overlap`)
    }
  }

  const exprs = allExprs(dash)
  for (const v of dash.templating.list) {
    if (v.type !== 'query') continue
    const lv = labelValuesQuery(variableQuery(v))
    t.ok(lv, `$${v.name}: label_values query`)
    if (lv !== undefined) exprs.push(lv.selector)
  }
  t.ok(exprs.length >= 30, `${exprs.length} expressions`)
  const used = new Set<string>()
  for (const expr of exprs) {
    const { metrics, unknownFunctions } = promqlNames(expr)
    t.same(unknownFunctions, [], `functions in ${expr}`)
    t.ok(metrics.length > 0, `selects something: ${expr}`)
    for (const m of metrics) {
      used.add(m)
      if (!known.has(m)) t.fail(`unknown metric ${m} in ${expr}`)
    }
  }
  for (const m of custom) t.ok(used.has(m) || used.has(`${m}_bucket`), `the dashboard shows ${m}`)
  for (const m of ['outrider_cache_lookups_total', 'outrider_ratelimit_decisions_total']) t.ok(used.has(m), `the dashboard has a panel for the plugin metric ${m}`)

  const heatmaps = visible.filter((p) => p.type === 'heatmap')
  t.ok(heatmaps.length >= 1, 'a latency heatmap')
  for (const h of heatmaps) t.match(h.targets?.[0], { format: 'heatmap', expr: /_duration_seconds_bucket/ }, `${h.title}: from the histogram buckets`)
})

t.test('rules: only real metric names', async (t) => {
  const known = await servedNames()
  known.add('up')
  const doc = YAML.parse(await readFile(RULES, 'utf8')) as { groups: Array<{ rules: Array<{ record?: string, alert?: string, expr: string | number, for?: string, labels?: Record<string, string>, annotations?: Record<string, string> }> }> }
  const rules = doc.groups.flatMap((g) => g.rules)
  for (const r of rules) if (r.record !== undefined) known.add(r.record)
  for (const r of rules) {
    const { metrics, unknownFunctions } = promqlNames(String(r.expr))
    t.same(unknownFunctions, [], `${r.record ?? r.alert}: functions`)
    for (const m of metrics) if (!known.has(m)) t.fail(`${r.record ?? r.alert}: unknown metric ${m}`)
    if (r.alert !== undefined) {
      t.ok(r.for, `${r.alert}: has for:`)
      t.match(r.labels, { severity: /^(critical|warning|info)$/ }, `${r.alert}: severity`)
      t.match(r.annotations, { summary: String, description: /\{\{ *\$labels\./ }, `${r.alert}: summary and templated description`)
    }
  }
  const alerts = rules.flatMap((r) => r.alert ?? [])
  for (const name of ['OutriderHighErrorRatio', 'OutriderHighP99Latency', 'OutriderCircuitOpen', 'OutriderEndpointUnhealthy', 'OutriderRateLimitDenialsHigh',
    'OutriderConfigReloadFailures', 'OutriderRetryBudgetExhausted', 'OutriderOverloadRejections', 'OutriderProxyDown']) {
    t.ok(alerts.includes(name), `alert ${name}`)
  }
})

// ---- (b) a real Prometheus scrapes a real Outrider ---------------------------------------

interface Sample { metric: Record<string, string>, value: [number, string] }

async function query (base: string, q: string): Promise<{ status: string, error?: string, data?: { resultType: string, result: Sample[] } }> {
  const res = await request(`${base}/api/v1/query?query=${encodeURIComponent(q)}`)
  return await res.body.json() as { status: string, error?: string, data?: { resultType: string, result: Sample[] } }
}

/** Polls `fn` until it returns a value (not undefined) or `ms` pass. */
async function waitFor<T> (what: string, ms: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms
  let last: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v !== undefined) return v
    } catch (err) { last = err }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms}ms waiting for ${what}${last === undefined ? '' : `: ${String(last)}`}`)
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
}

async function stopProcess (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => { resolve() }))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

t.test('a real Prometheus scrapes per-route series from a running Outrider', { skip: hasPrometheus ? false : NO_PROMETHEUS, timeout: 90_000 }, async (t) => {
  const up = await startUpstream((req, res) => {
    res.statusCode = req.url?.includes('fail') === true ? 503 : 200
    res.end('ok')
  })
  t.teardown(up.close)

  // The real binary (src/cli.ts), two routes on one cluster.
  const dir = await tempDir(t, 'outrider-prom-')
  const [port, admin, promPort] = [await freePort(), await freePort(), await freePort()]
  const outriderConfig = path.join(dir, 'outrider.yaml')
  await writeFile(outriderConfig, `listen: { host: 127.0.0.1, port: ${port} }
admin: { host: 127.0.0.1, port: ${admin} }
shutdown: { drainTimeout: 1s }
clusters:
  - name: backend
    endpoints: [{ url: ${up.url} }]
    outlierDetection: { enabled: false }
    circuitBreaker: { trigger: { by: consecutive, failures: 1000 } }
routes:
  - name: users-api
    match: { pathPrefix: /users }
    cluster: backend
  - name: orders-api
    match: { pathPrefix: /orders }
    cluster: backend
`)
  const proxy = runCli(['--config', outriderConfig])
  t.teardown(() => stopProcess(proxy.child))
  await proxy.waitForLog('proxy listening')

  // Steady traffic while Prometheus scrapes: both routes, 1 in 4 orders fail.
  const url = `http://127.0.0.1:${port}`
  let tick = 0
  let sending = Promise.resolve()
  const send = async (p: string): Promise<void> => { await (await request(url + p)).body.dump() }
  const traffic = setInterval(() => {
    tick++
    sending = Promise.all([send(`/users/${tick}`), send(tick % 4 === 0 ? '/orders/fail' : `/orders/${tick}`), tick % 10 === 0 ? send('/nowhere') : undefined]).then(() => {}, () => {})
  }, 50)
  t.teardown(async () => { clearInterval(traffic); await sending })
  await waitFor('first requests', 5000, async () => tick >= 8 ? true : undefined)

  // Prometheus: the example rules (evaluated every second here) and a 1s scrape of the admin port.
  const rules = (await readFile(RULES, 'utf8')).replace(/^(\s+)interval: \d+[smh]$/m, '$1interval: 1s')
  await writeFile(path.join(dir, 'rules.yml'), rules)
  const promConfig = path.join(dir, 'prometheus.yml')
  await writeFile(promConfig, `global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - rules.yml
scrape_configs:
  - job_name: outrider
    metrics_path: /metrics
    static_configs:
      - targets: ['127.0.0.1:${admin}']
        labels:
          service: it
`)
  const check = hasPromtool ? await sh('promtool', ['check', 'config', promConfig]) : { code: 0, out: '' }
  t.equal(check.code, 0, 'the test\'s own scrape config is valid', { output: check.out })

  let promLog = ''
  const prom = spawn('prometheus', [
    `--config.file=${promConfig}`,
    `--storage.tsdb.path=${path.join(dir, 'data')}`,
    '--storage.tsdb.retention.time=1h',
    `--web.listen-address=127.0.0.1:${promPort}`,
    '--log.level=warn',
  ], { stdio: ['ignore', 'pipe', 'pipe'] })
  prom.stdout.on('data', (c: Buffer) => { promLog += c.toString() })
  prom.stderr.on('data', (c: Buffer) => { promLog += c.toString() })
  t.teardown(() => stopProcess(prom))
  const base = `http://127.0.0.1:${promPort}`
  const fail = (err: unknown): never => { throw new Error(`${String(err)}\n--- prometheus log ---\n${promLog}`) }

  await waitFor('Prometheus ready', 30_000, async () => {
    if (prom.exitCode !== null) fail(`prometheus exited with ${prom.exitCode}`)
    const res = await request(`${base}/-/ready`)
    await res.body.dump()
    return res.statusCode === 200 ? true : undefined
  }).catch(fail)

  // The raw per-route series, with the target's labels.
  const series = await waitFor('outrider_requests_total for both routes', 30_000, async () => {
    const r = await query(base, 'outrider_requests_total')
    const result = r.data?.result ?? []
    const routes = new Set(result.map((s) => s.metric.route))
    return routes.has('users-api') && routes.has('orders-api') && result.some((s) => s.metric.status_class === '5xx') ? result : undefined
  }).catch(fail)
  const routes = new Set(series.map((s) => s.metric.route))
  t.same([...routes].sort(), ['__unmatched__', 'orders-api', 'users-api'], 'one route label per configured route, plus unmatched')
  for (const s of series) {
    t.match(s.metric, { __name__: 'outrider_requests_total', job: 'outrider', instance: `127.0.0.1:${admin}`, service: 'it', method: 'GET', status_class: /^[1-5]xx$/ })
  }
  const value = (route: string, cls: string): number => Number(series.find((s) => s.metric.route === route && s.metric.status_class === cls)?.value[1] ?? NaN)
  t.ok(value('users-api', '2xx') > 0, 'users-api 2xx counted')
  t.ok(value('orders-api', '5xx') > 0, 'orders-api 5xx counted')
  t.notOk(series.some((s) => s.metric.route === 'users-api' && s.metric.status_class === '5xx'), 'users-api has no 5xx')
  t.equal(value('__unmatched__', '4xx') > 0, true, 'unmatched requests as route="__unmatched__"')

  const upRes = await query(base, 'up{job="outrider"}')
  t.equal(upRes.data?.result[0]?.value[1], '1', 'the target is up')

  // The example's recording rules evaluate on real data.
  const ratios = await waitFor('the error-ratio recording rule for both routes', 30_000, async () => {
    const r = await query(base, 'service_route:outrider_requests_errors:ratio_rate5m')
    const result = r.data?.result ?? []
    const byRoute = new Map(result.map((s) => [s.metric.route, Number(s.value[1])]))
    return (byRoute.get('orders-api') ?? 0) > 0 && byRoute.has('users-api') ? byRoute : undefined
  }).catch(fail)
  t.equal(ratios.get('users-api'), 0, 'users-api error ratio is 0, not absent')
  t.ok((ratios.get('orders-api') ?? 0) > 0.1 && (ratios.get('orders-api') ?? 1) < 0.5, `orders-api error ratio ${ratios.get('orders-api')} (1 in 4 fail)`)
  const p99 = await waitFor('the p99 recording rule', 30_000, async () => {
    const r = await query(base, 'service_route:outrider_request_duration_seconds:p99_5m{route="users-api"}')
    const v = Number(r.data?.result[0]?.value[1])
    return Number.isFinite(v) ? v : undefined
  }).catch(fail)
  t.ok(p99 > 0 && p99 < 5, `users-api p99 ${p99}s`)

  const rulesApi = await (await request(`${base}/api/v1/rules`)).body.json() as { data: { groups: Array<{ rules: Array<{ name: string, health: string, lastError?: string }> }> } }
  const all = rulesApi.data.groups.flatMap((g) => g.rules)
  t.ok(all.length >= 20, `${all.length} rules loaded`)
  await waitFor('every rule evaluated', 10_000, async () => {
    const again = await (await request(`${base}/api/v1/rules`)).body.json() as typeof rulesApi
    return again.data.groups.flatMap((g) => g.rules).every((r) => r.health === 'ok') ? true : undefined
  }).catch(() => {
    for (const r of all) if (r.health !== 'ok') t.fail(`rule ${r.name}: ${r.health} ${r.lastError ?? ''}`)
  })

  // Every dashboard query parses in this Prometheus; the ones on metrics this
  // setup produces return data.
  const dash = await loadDashboard()
  for (const p of allPanels(dash.panels)) {
    for (const target of p.targets ?? []) {
      const q = substituteGrafana(target.expr)
      const r = await query(base, q)
      t.equal(r.status, 'success', `${p.title}: ${q} ${r.error ?? ''}`)
    }
  }
  const shouldHaveData = ['Request rate', 'Error ratio (5xx)', 'p99 latency', 'In flight', 'Outriders up', 'Requests by route and status class',
    'Error ratio (5xx / all) by route', 'In-flight requests by instance', 'Request duration heatmap', 'Request duration p50 / p99 by route',
    'Upstream duration p50 / p99 by cluster', 'Upstream duration heatmap', 'Endpoint health', 'Circuit state', 'Config reloads by result',
    'Config versions', 'Process: CPU, memory, event-loop lag']
  for (const title of shouldHaveData) {
    const p = allPanels(dash.panels).find((x) => x.title === title)
    t.ok(p, `panel "${title}"`)
    if (p === undefined) continue
    const expr = substituteGrafana(p.targets?.[0]?.expr ?? '')
    await waitFor(`data for "${title}"`, 15_000, async () => ((await query(base, expr)).data?.result.length ?? 0) > 0 ? true : undefined)
      .then(() => { t.pass(`"${title}" has data`) }, (err: unknown) => { t.fail(`"${title}" has no data: ${expr} (${String(err)})`) })
  }
  for (const v of dash.templating.list) {
    const lv = v.type === 'query' ? labelValuesQuery(variableQuery(v)) : undefined
    if (lv === undefined) continue
    const res = await (await request(`${base}/api/v1/label/${lv.label}/values?match[]=${encodeURIComponent(substituteGrafana(lv.selector))}`)).body.json() as { data: string[] }
    const expected = { service: ['it'], route: ['orders-api', 'users-api'], cluster: ['backend'] }[v.name] ?? []
    for (const e of expected) t.ok(res.data.includes(e), `$${v.name} offers ${e}`)
  }
})
