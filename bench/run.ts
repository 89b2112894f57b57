/**
 * Outrider's benchmark: a named table of experiments against one real upstream,
 * all in the same run, always with the `direct` baseline (STYLE §11).
 *
 *   npm run bench -- [--duration 10] [--warmup 3] [--connections 50] [--reps 1]
 *                    [--settle 30] [--retries 2] [--only a,b,c] [--workers]
 *                    [--headers] [--no-pin] [--json]
 *
 * Every flag has an environment twin (BENCH_DURATION, BENCH_WARMUP,
 * BENCH_CONNECTIONS, BENCH_REPS, BENCH_SETTLE, BENCH_RETRIES, BENCH_ONLY,
 * BENCH_WORKERS=<n>, BENCH_HEADERS=1, BENCH_PIN=0, BENCH_JSON=1); a flag wins
 * over its twin. See bench/README.md.
 *
 * It only reports: no number fails the run. It exits non-zero only when a target
 * could not be started or did not answer 200 with the 1 KiB body.
 */
import { execFileSync, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { children, startChild as startCommand, stopChild, type Started } from './child.ts'
import { runLoad, stopLoad, type LoadResult } from './load.ts'
import { median } from './stats.ts'
import { machineBusySeconds, processCpu, waitUntilQuiet } from './proc-cpu.ts'
import { startRedis, type TestRedis } from '../test/helpers/redis.ts'

const BODY_SIZE = 1024
/** CPU the proxy under test gets to itself; the upstream and the load generator share the other. */
const PROXY_CPU = '0'
const LOAD_CPU = '1'
/** A sample whose "other CPU" (% of one core) is above this was disturbed and is measured again. */
const DISTURBED = 15
/** Read before this process pins itself: availableParallelism() follows the affinity mask. */
const CPU_COUNT = availableParallelism()

/**
 * The `headers` plugin config for experiment e: a few request and response
 * edits typical of a gateway route, two of them with per-request variables.
 * BENCH_HEADERS_CONFIG (JSON) replaces it.
 */
const HEADERS_CONFIG: unknown = JSON.parse(process.env.BENCH_HEADERS_CONFIG ?? JSON.stringify({
  request: { set: { 'x-route': '${route}' }, remove: ['x-debug'] },
  response: { set: { 'x-frame-options': 'DENY' }, add: { 'x-served-by': 'outrider ${request_id}' }, remove: ['server'] },
}))

// ---- options ------------------------------------------------------------------------------

interface Options {
  duration: number
  warmup: number
  connections: number
  reps: number
  settle: number
  retries: number
  only: string[] | undefined
  workers: number
  headers: boolean
  plugins: boolean
  pin: boolean
  json: boolean
}

const HELP = `usage: node bench/run.ts [options]
  --duration S      seconds measured per experiment (10; BENCH_DURATION)
  --warmup S        seconds of unmeasured load first (3; BENCH_WARMUP)
  --connections N   concurrent keep-alive connections (50; BENCH_CONNECTIONS)
  --reps N          repetitions, experiments interleaved; medians reported (1; BENCH_REPS)
  --settle S        before each experiment, wait up to S s for other load to stop (30; BENCH_SETTLE)
  --retries N       measure a rep again, up to N times, when other load took over 15% of a core (2; BENCH_RETRIES)
  --only a,b        experiments by letter or name (BENCH_ONLY)
  --workers         add d: Outrider with 2 workers (BENCH_WORKERS=<n> for another count)
  --headers         add e: Outrider with the headers plugin (BENCH_HEADERS=1)
  --plugins         add f–i: the cache (L1 hit, L2-only hit) and rate-limit (memory, Redis) plugins (BENCH_PLUGINS=1)
  --no-pin          do not pin with taskset (BENCH_PIN=0)
  --json            print JSON instead of the table (BENCH_JSON=1)
experiments: a direct, b outrider, c undici-min, d outrider-<n>w, e outrider+headers,
  f outrider+cache, g outrider+cache-l2, h outrider+ratelimit, i outrider+ratelimit-redis`

function readOptions (): Options {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string' },
      reps: { type: 'string' },
      settle: { type: 'string' },
      retries: { type: 'string' },
      only: { type: 'string' },
      workers: { type: 'boolean' },
      headers: { type: 'boolean' },
      plugins: { type: 'boolean' },
      'no-pin': { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help === true) { process.stdout.write(HELP + '\n'); process.exit(0) }
  const env = process.env
  const num = (flag: string | undefined, envValue: string | undefined, name: string, fallback: number, min: number): number => {
    const raw = flag ?? envValue
    if (raw === undefined || raw === '') return fallback
    const n = Number(raw)
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number >= ${min}, got ${JSON.stringify(raw)}`)
    return n
  }
  const yes = (v: string | undefined): boolean => v !== undefined && v !== '' && v !== '0' && v !== 'false'
  const only = values.only ?? env.BENCH_ONLY
  const envWorkers = env.BENCH_WORKERS === undefined || env.BENCH_WORKERS === '' ? undefined : num(undefined, env.BENCH_WORKERS, 'workers', 2, 0)
  return {
    duration: num(values.duration, env.BENCH_DURATION, 'duration', 10, 1),
    warmup: num(values.warmup, env.BENCH_WARMUP, 'warmup', 3, 0),
    connections: Math.round(num(values.connections, env.BENCH_CONNECTIONS, 'connections', 50, 1)),
    reps: Math.round(num(values.reps, env.BENCH_REPS, 'reps', 1, 1)),
    settle: num(values.settle, env.BENCH_SETTLE, 'settle', 30, 0),
    retries: Math.round(num(values.retries, env.BENCH_RETRIES, 'retries', 2, 0)),
    only: only === undefined || only === '' ? undefined : only.split(',').map((s) => s.trim()).filter((s) => s !== ''),
    // --workers alone means 2 (this is a two-core bench); BENCH_WORKERS picks another count.
    workers: values.workers === true ? Math.max(2, envWorkers ?? 2) : envWorkers !== undefined && envWorkers > 1 ? envWorkers : 0,
    headers: values.headers === true || yes(env.BENCH_HEADERS),
    plugins: values.plugins === true || yes(env.BENCH_PLUGINS),
    pin: values['no-pin'] !== true && env.BENCH_PIN !== '0',
    json: values.json === true || yes(env.BENCH_JSON),
  }
}

// ---- child processes ----------------------------------------------------------------------

const script = (name: string): string => fileURLToPath(new URL(name, import.meta.url))

/** Starts `bench/<file>` with this Node, on `cpu` when pinning. */
function startChild (file: string, args: string[], cpu: string | undefined): Promise<Started> {
  const node = [process.execPath, script(file), ...args]
  return startCommand(cpu === undefined ? node : ['taskset', '-c', cpu, ...node], file)
}

// ---- measurement --------------------------------------------------------------------------

/** CPU seconds (user + system) a process has used, from /proc; undefined when unreadable. */
function cpuSeconds (pid: number): number | undefined {
  try {
    const { user, system } = processCpu(pid)
    return user + system
  } catch {
    return undefined
  }
}

function sumCpu (pids: readonly number[]): number | undefined {
  let total = 0
  for (const pid of pids) {
    const s = cpuSeconds(pid)
    if (s === undefined) return undefined
    total += s
  }
  return total
}

interface Target {
  readonly url: string
  /** Processes of the proxy under test; empty for `direct`. */
  readonly pids: readonly number[]
  readonly child: ChildProcess | undefined
}

interface Experiment {
  readonly id: string
  readonly name: string
  /** How it was placed on the CPUs, for the notes under the table. */
  readonly placement: string
  /**
   * Lets the upstream and the load generator use every CPU while this runs.
   * Multi-worker runs need it: with the load pinned to one core, the kernel
   * wakes the workers next to it (wake-affine) and the other core sits idle.
   */
  readonly floatLoad?: boolean
  start (upstream: string): Promise<Target>
}

interface Sample {
  reqPerSec: number
  p50: number
  p99: number
  errors: number
  non2xx: number
  /** % of one core used by the proxy processes while measured. */
  proxyCpu: number | undefined
  /**
   * Proxy CPU time per request, in µs. Unlike req/s it does not drop when the
   * load side, rather than the proxy, is the bottleneck.
   */
  proxyUsPerReq: number | undefined
  /** % of one core used by the upstream + load generator while measured. */
  loadCpu: number | undefined
  /** % of one core used by everything else on the machine (kernel work outside our processes included). */
  otherCpu: number | undefined
}

interface Row extends Sample {
  id: string
  experiment: string
  placement: string
  /** The highest req/s of the reps: other load on the machine only ever lowers it. */
  bestReqPerSec: number
  /** Every rep, in order (in the JSON output). */
  samples: Sample[]
  /** Reps where the target could not be started or failed the sanity check. */
  failures?: string[]
  /** Set when no rep succeeded: the row has no numbers. */
  failed?: string
}

/** A proxy in its own process, in front of `upstream`. */
async function proxyTarget (file: string, upstream: string, extra: string[], cpu: string | undefined): Promise<Target> {
  const { child, ready } = await startChild(file, ['--upstream', upstream, ...extra], cpu)
  return { url: `http://127.0.0.1:${ready.port}`, pids: ready.pids, child }
}

function experiments (opts: Options): Experiment[] {
  const pinned = (cpu: string) => (opts.pin ? cpu : undefined)
  const pinNote = opts.pin ? `proxy on CPU ${PROXY_CPU}` : 'unpinned'
  const all: Experiment[] = [
    {
      id: 'a',
      name: 'direct',
      placement: 'load generator straight to the upstream (no proxy)',
      start: async (upstream) => ({ url: upstream, pids: [], child: undefined }),
    },
    {
      id: 'b',
      name: 'outrider',
      placement: `Outrider, 1 worker, no plugins, ${pinNote}`,
      start: (upstream) => proxyTarget('outrider-proc.ts', upstream, [], pinned(PROXY_CPU)),
    },
    {
      id: 'c',
      name: 'undici-min',
      placement: `bench/undici-min.ts (node:http + undici Pool.dispatch), ${pinNote}`,
      start: (upstream) => proxyTarget('undici-min.ts', upstream, [], pinned(PROXY_CPU)),
    },
    {
      id: 'd',
      name: `outrider-${opts.workers || 2}w`,
      placement: `Outrider, ${opts.workers || 2} workers (SO_REUSEPORT). NOT pinned, and neither are the upstream and load generator while it runs: all share both cores`,
      floatLoad: true,
      start: (upstream) => proxyTarget('outrider-proc.ts', upstream, ['--workers', String(opts.workers || 2)], undefined),
    },
    {
      id: 'e',
      name: 'outrider+headers',
      placement: `Outrider, 1 worker, the headers plugin on the route, ${pinNote}`,
      start: (upstream) => proxyTarget('outrider-proc.ts', upstream, ['--plugins', JSON.stringify([{ name: 'headers', config: HEADERS_CONFIG }])], pinned(PROXY_CPU)),
    },
    // The upstream marks its answers `cache-control: max-age=3600`, so after
    // the sanity check every request of f is an L1 hit; g keeps nothing in L1
    // (maxSize 1), so every request is an L2 (Redis) hit.
    {
      id: 'f',
      name: 'outrider+cache',
      placement: `Outrider, 1 worker, the cache plugin, every request a fresh L1 hit (the upstream is not asked), ${pinNote}`,
      start: (upstream) => proxyTarget('outrider-proc.ts', upstream, ['--plugins', JSON.stringify([{ name: 'cache', config: {} }])], pinned(PROXY_CPU)),
    },
    {
      id: 'g',
      name: 'outrider+cache-l2',
      placement: `Outrider, 1 worker, the cache plugin with L1 off and L2 in a local redis-server, every request an L2 hit, ${pinNote}`,
      start: async (upstream) => proxyTarget('outrider-proc.ts', upstream, ['--plugins', JSON.stringify([{ name: 'cache', config: { maxSize: 1, l2: { type: 'redis', url: await benchRedis() } } }])], pinned(PROXY_CPU)),
    },
    {
      id: 'h',
      name: 'outrider+ratelimit',
      placement: `Outrider, 1 worker, rate-limit per client IP in memory (a limit never reached), ${pinNote}`,
      start: (upstream) => proxyTarget('outrider-proc.ts', upstream, ['--plugins', JSON.stringify([{ name: 'rate-limit', config: { points: 1e9, duration: 1 } }])], pinned(PROXY_CPU)),
    },
    {
      id: 'i',
      name: 'outrider+ratelimit-redis',
      placement: `Outrider, 1 worker, rate-limit per client IP in a local redis-server (one round trip per decision), ${pinNote}`,
      start: async (upstream) => proxyTarget('outrider-proc.ts', upstream, ['--plugins', JSON.stringify([{ name: 'rate-limit', config: { points: 1e9, duration: 1, store: { type: 'redis', url: await benchRedis() } } }])], pinned(PROXY_CPU)),
    },
  ]
  if (opts.only !== undefined) {
    for (const key of opts.only) {
      if (!all.some((e) => e.id === key || e.name === key)) throw new Error(`--only: unknown experiment ${JSON.stringify(key)} (a to i, or a name)`)
    }
    return all.filter((e) => opts.only!.includes(e.id) || opts.only!.includes(e.name))
  }
  return all.filter((e) => (e.id === 'd' ? opts.workers > 1 : e.id === 'e' ? opts.headers : e.id >= 'f' ? opts.plugins : true))
}

let redis: Promise<TestRedis> | undefined
/** One redis-server for the whole run, started on first use (test/helpers/redis.ts: no persistence, a free port). */
async function benchRedis (): Promise<string> {
  if (redis === undefined) {
    redis = startRedis()
    const r = await redis
    stopAtExit.push(() => r.close())
  }
  return (await redis).url
}
const stopAtExit: Array<() => Promise<void>> = []

/** GETs the target a few times (reusing the connection) and checks status and body length. */
async function sanityCheck (url: string): Promise<void> {
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`${url}/bench/sanity?i=${i}`, { signal: AbortSignal.timeout(5000) })
    const body = await res.arrayBuffer()
    if (res.status !== 200) throw new Error(`sanity check: GET ${url} answered ${res.status}: ${Buffer.from(body).toString('utf8', 0, 300)}`)
    if (body.byteLength !== BODY_SIZE) throw new Error(`sanity check: GET ${url} returned ${body.byteLength} bytes, expected ${BODY_SIZE}`)
  }
}

let interrupted = false

/** Moves every thread of `pids` to `cpus` (a taskset list such as `1` or `0-1`). */
function setAffinity (pids: readonly number[], cpus: string): void {
  for (const pid of pids) execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' })
}

async function measure (exp: Experiment, upstream: Started, opts: Options): Promise<Sample> {
  const loadPids = [process.pid, ...upstream.ready.pids]
  if (opts.pin && exp.floatLoad === true) setAffinity(loadPids, `0-${CPU_COUNT - 1}`)
  try {
    return await measureTarget(exp, upstream, opts)
  } finally {
    if (opts.pin && exp.floatLoad === true) setAffinity(loadPids, LOAD_CPU)
  }
}

async function measureTarget (exp: Experiment, upstream: Started, opts: Options): Promise<Sample> {
  await waitUntilQuiet(opts.settle, `[${exp.id} ${exp.name}]`, progress, () => interrupted)
  const target = await exp.start(`http://127.0.0.1:${upstream.ready.port}`)
  try {
    await sanityCheck(target.url)
    const load = { url: `${target.url}/`, connections: opts.connections }
    if (opts.warmup > 0) {
      progress(`[${exp.id} ${exp.name}] warmup ${opts.warmup}s`)
      await runLoad({ ...load, duration: opts.warmup })
    }
    if (interrupted) throw new Error('interrupted')
    progress(`[${exp.id} ${exp.name}] measuring ${opts.duration}s with ${opts.connections} connections`)
    const proxy0 = sumCpu(target.pids)
    const up0 = cpuSeconds(upstream.ready.pids[0]!)
    const self0 = process.cpuUsage()
    const busy0 = machineBusySeconds()
    const t0 = performance.now()
    const r: LoadResult = await runLoad({ ...load, duration: opts.duration })
    const wall = (performance.now() - t0) / 1000
    const self = process.cpuUsage(self0)
    const busy1 = machineBusySeconds()
    const proxy1 = sumCpu(target.pids)
    const up1 = cpuSeconds(upstream.ready.pids[0]!)
    if (interrupted) throw new Error('interrupted')
    const pct = (a: number | undefined, b: number | undefined): number | undefined =>
      a === undefined || b === undefined ? undefined : (100 * (b - a)) / wall
    const upPct = pct(up0, up1)
    const proxyCpu = target.pids.length === 0 ? 0 : pct(proxy0, proxy1)
    const loadCpu = upPct === undefined ? undefined : upPct + (100 * (self.user + self.system)) / 1e6 / wall
    const busy = pct(busy0, busy1)
    const sample: Sample = {
      reqPerSec: r.requests.average,
      p50: r.latency.p50,
      p99: r.latency.p99,
      errors: r.errors,
      non2xx: r.non2xx,
      proxyCpu: target.pids.length === 0 ? undefined : proxyCpu,
      proxyUsPerReq: target.pids.length === 0 || proxyCpu === undefined || !(r.requests.average > 0) ? undefined : (proxyCpu / 100) * 1e6 / r.requests.average,
      loadCpu,
      otherCpu: busy === undefined || proxyCpu === undefined || loadCpu === undefined ? undefined : Math.max(0, busy - proxyCpu - loadCpu),
    }
    progress(`[${exp.id} ${exp.name}] ${Math.round(sample.reqPerSec)} req/s, p99 ${sample.p99} ms, proxy CPU ${pctCell(sample.proxyCpu)} (${fmt(sample.proxyUsPerReq, 1)} µs/req), load CPU ${pctCell(sample.loadCpu)}, other CPU ${pctCell(sample.otherCpu)}`)
    return sample
  } finally {
    if (target.child !== undefined) await stopChild(target.child)
  }
}

/**
 * Measures again (up to `retries` times) when something else on the machine
 * took a noticeable share of the CPU, and keeps the least disturbed sample.
 * Other load only ever lowers the numbers, so this removes noise, not signal.
 */
async function measureUndisturbed (exp: Experiment, upstream: Started, opts: Options): Promise<Sample> {
  let best = await measure(exp, upstream, opts)
  for (let retry = 0; retry < opts.retries && (best.otherCpu ?? 0) > DISTURBED && !interrupted; retry++) {
    progress(`[${exp.id} ${exp.name}] disturbed (other CPU ${pctCell(best.otherCpu)}): measuring again`)
    const next = await measure(exp, upstream, opts)
    if ((next.otherCpu ?? 0) < (best.otherCpu ?? 0)) best = next
  }
  return best
}

// ---- report -------------------------------------------------------------------------------

function medianOpt (xs: Array<number | undefined>): number | undefined {
  return xs.some((x) => x === undefined) ? undefined : median(xs as number[])
}

/** The first line of a failure and its first error line: the stderr tail is in the progress output. */
function shortReason (why: string): string {
  const lines = why.split('\n')
  const error = lines.slice(1).find((l) => /\b[A-Za-z]*Error\b/.test(l))
  return error === undefined ? lines[0]! : `${lines[0]!} ${error.trim()}`
}

function aggregate (exp: Experiment, samples: Sample[], failures: string[]): Row {
  return {
    id: exp.id,
    experiment: exp.name,
    placement: exp.placement,
    reqPerSec: samples.length === 0 ? NaN : median(samples.map((s) => s.reqPerSec)),
    bestReqPerSec: samples.length === 0 ? NaN : Math.max(...samples.map((s) => s.reqPerSec)),
    p50: samples.length === 0 ? NaN : median(samples.map((s) => s.p50)),
    p99: samples.length === 0 ? NaN : median(samples.map((s) => s.p99)),
    errors: samples.reduce((n, s) => n + s.errors, 0),
    non2xx: samples.reduce((n, s) => n + s.non2xx, 0),
    proxyCpu: medianOpt(samples.map((s) => s.proxyCpu)),
    proxyUsPerReq: medianOpt(samples.map((s) => s.proxyUsPerReq)),
    loadCpu: medianOpt(samples.map((s) => s.loadCpu)),
    otherCpu: medianOpt(samples.map((s) => s.otherCpu)),
    samples,
    ...(failures.length === 0 ? {} : { failures: failures.map(shortReason) }),
    ...(samples.length === 0 ? { failed: shortReason(failures[0] ?? 'no samples') } : {}),
  }
}

interface Ratio {
  name: string
  /** From the medians. */
  value: number | undefined
  /** From the best reps (req/s ratios only). */
  best: number | undefined
  meaning: string
}

function ratios (rows: Row[], opts: Options): Ratio[] {
  const get = (id: string): Row | undefined => rows.find((r) => r.id === id && r.failed === undefined)
  const div = (a: number | undefined, b: number | undefined): number | undefined =>
    a === undefined || b === undefined || !(b > 0) ? undefined : a / b
  const [a, b, c, d, e] = ['a', 'b', 'c', 'd', 'e'].map(get)
  const ran = (id: string): boolean => rows.some((r) => r.id === id)
  const n = opts.workers || 2
  const rps = (name: string, x: Row | undefined, y: Row | undefined, meaning: string): Ratio =>
    ({ name, value: div(x?.reqPerSec, y?.reqPerSec), best: div(x?.bestReqPerSec, y?.bestReqPerSec), meaning })
  const out: Ratio[] = [
    rps('b/a', b, a, 'Outrider req/s as a share of direct'),
    rps('b/c', b, c, 'Outrider req/s as a share of the raw undici ceiling'),
    { name: 'p99 b/c', value: div(b?.p99, c?.p99), best: undefined, meaning: 'Outrider p99 over undici-min p99 (lower is better)' },
    { name: 'CPU/req b/c', value: div(b?.proxyUsPerReq, c?.proxyUsPerReq), best: undefined, meaning: 'Outrider CPU per request over undici-min\'s (lower is better)' },
  ]
  if (ran('d')) out.push(rps(`${n}w/1w`, d, b, `req/s with ${n} workers over 1 worker (unpinned, see notes)`))
  if (ran('e')) out.push(rps('e/b', e, b, 'req/s with the headers plugin over no plugins'))
  return out
}

interface Machine {
  date: string
  node: string
  cpus: number
  cpuModel: string
  pinning: string
}

function machine (opts: Options, canPin: boolean): Machine {
  let cpuModel = 'unknown'
  try {
    cpuModel = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? 'unknown'
  } catch {}
  return {
    date: new Date().toISOString(),
    node: process.version,
    cpus: CPU_COUNT,
    cpuModel,
    pinning: canPin
      ? `taskset: proxy on CPU ${PROXY_CPU}; upstream and load generator on CPU ${LOAD_CPU}`
      : opts.pin ? 'none (taskset missing or fewer than 2 CPUs)' : 'none (--no-pin)',
  }
}

const fmt = (n: number | undefined, digits = 0): string =>
  n === undefined || Number.isNaN(n) ? 'n/a' : n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })

const pctCell = (n: number | undefined): string => (n === undefined ? '-' : `${fmt(n)}%`)

function table (headers: string[], body: string[][], right: boolean[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)))
  const line = (cells: string[]): string => '| ' + cells.map((c, i) => (right[i] === true ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ') + ' |'
  const rule = '|' + widths.map((w, i) => (right[i] === true ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|') + '|'
  return [line(headers), rule, ...body.map(line)].join('\n')
}

function report (rows: Row[], rs: Ratio[], m: Machine, opts: Options): string {
  const out: string[] = []
  out.push(`Outrider bench: GET, ${BODY_SIZE} B body, ${opts.connections} connections, ${opts.warmup} s warmup + ${opts.duration} s measured, ${opts.reps} rep(s)${opts.reps > 1 ? ' (medians)' : ''}`)
  out.push(`${m.date} · Node ${m.node} · ${m.cpus} CPUs · ${m.cpuModel} · pinning: ${m.pinning}`)
  out.push('')
  const reps = opts.reps > 1
  out.push(table(
    ['experiment', 'req/s', ...(reps ? ['best req/s'] : []), 'p50 ms', 'p99 ms', 'errors', 'non-2xx', 'proxy CPU', 'µs/req', 'load CPU', 'other CPU'],
    rows.map((r) => {
      if (r.failed !== undefined) return [`${r.id} ${r.experiment}`, 'FAILED', ...Array<string>(reps ? 9 : 8).fill('')]
      return [`${r.id} ${r.experiment}`, fmt(r.reqPerSec), ...(reps ? [fmt(r.bestReqPerSec)] : []), fmt(r.p50), fmt(r.p99), fmt(r.errors), fmt(r.non2xx),
        pctCell(r.proxyCpu), r.proxyUsPerReq === undefined ? '-' : fmt(r.proxyUsPerReq, 1), pctCell(r.loadCpu), pctCell(r.otherCpu)]
    }),
    [false, true, ...(reps ? [true] : []), true, true, true, true, true, true, true, true],
  ))
  out.push('')
  const x = (v: number | undefined): string => (v === undefined ? 'n/a' : `${fmt(v, 2)}×`)
  out.push(reps
    ? table(['ratio', 'medians', 'best', 'meaning'], rs.map((r) => [r.name, x(r.value), r.best === undefined ? '' : x(r.best), r.meaning]), [false, true, true, false])
    : table(['ratio', 'value', 'meaning'], rs.map((r) => [r.name, x(r.value), r.meaning]), [false, true, false]))
  out.push('')
  out.push('CPU columns are % of one core over the measured window: proxy = the proxy process(es), µs/req = its CPU time per request; load = upstream + load generator (they share one core when pinned);')
  out.push('other = the rest of the machine (other programs, and kernel work not charged to our processes). A large "other" means the run was disturbed.')
  if (reps) out.push('req/s, latencies and CPU are medians over the reps; best req/s is the highest rep (other load only ever lowers it); errors are summed.')
  for (const r of rows) {
    out.push(`${r.id} ${r.experiment}: ${r.placement}`)
    if (r.failed !== undefined) out.push(`  FAILED: ${r.failed}`)
    else for (const f of r.failures ?? []) out.push(`  failed ${f} (that rep is left out)`)
  }
  return out.join('\n') + '\n'
}

function progress (msg: string): void {
  process.stderr.write(msg + '\n')
}

// ---- main ---------------------------------------------------------------------------------

function canPin (): boolean {
  if (CPU_COUNT < 2) return false
  try {
    execFileSync('taskset', ['-c', PROXY_CPU, 'true'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

async function main (): Promise<number> {
  const opts = readOptions()
  const pin = opts.pin && canPin()
  const effective: Options = { ...opts, pin }
  const exps = experiments(effective)
  const m = machine(opts, pin)
  // The load generator runs in this process: pin it (all its threads) next to the upstream.
  if (pin) setAffinity([process.pid], LOAD_CPU)

  const upstream = await startChild('upstream.ts', ['--size', String(BODY_SIZE)], pin ? LOAD_CPU : undefined)
  progress(`upstream on http://127.0.0.1:${upstream.ready.port}; experiments: ${exps.map((e) => `${e.id} ${e.name}`).join(', ')}`)
  const samples = new Map<string, Sample[]>(exps.map((e) => [e.id, []]))
  /** Per experiment, every rep that failed, with why. A rep that fails does not stop the others. */
  const failures = new Map<string, string[]>(exps.map((e) => [e.id, []]))
  try {
    await sanityCheck(`http://127.0.0.1:${upstream.ready.port}`)
    for (let rep = 0; rep < opts.reps; rep++) {
      if (opts.reps > 1) progress(`rep ${rep + 1}/${opts.reps}`)
      for (const exp of exps) {
        if (interrupted) throw new Error('interrupted')
        try {
          samples.get(exp.id)!.push(await measureUndisturbed(exp, upstream, effective))
        } catch (err) {
          if (interrupted) throw err
          const why = err instanceof Error ? err.message : String(err)
          failures.get(exp.id)!.push(`rep ${rep + 1}: ${why}`)
          progress(`[${exp.id} ${exp.name}] FAILED: ${why}`)
        }
      }
    }
  } finally {
    await stopChild(upstream.child)
    await Promise.all(stopAtExit.map((stop) => stop()))
  }

  const rows = exps.map((e) => aggregate(e, samples.get(e.id)!, failures.get(e.id)!))
  const rs = ratios(rows, effective)
  if (opts.json) {
    // null, not a missing key, for what could not be measured
    process.stdout.write(JSON.stringify({ machine: m, options: effective, rows, ratios: rs }, (_k, v: unknown) => (v === undefined ? null : v), 2) + '\n')
  } else {
    process.stdout.write(report(rows, rs, m, effective))
  }
  return [...failures.values()].some((f) => f.length > 0) ? 1 : 0
}

process.on('SIGINT', () => {
  if (interrupted) process.exit(130)
  interrupted = true
  progress('interrupted: stopping the load and every child process (^C again to force)')
  stopLoad()
})
process.on('SIGTERM', () => { interrupted = true; stopLoad() })

main().then(
  (code) => { process.exitCode = code },
  async (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`)
    await Promise.all([...children].map(stopChild))
    process.exitCode = interrupted ? 130 : 1
  },
)
