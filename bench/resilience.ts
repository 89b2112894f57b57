import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir, cpus, setPriority } from 'node:os'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { runOpenLoop, type OpenLoopOptions, type OpenLoopResult } from './open-loop.ts'
import { machineBusySeconds, processCpu, waitUntilQuiet } from './proc-cpu.ts'

/**
 * Resilience benchmarks (issue #3), against real processes: upstreams that
 * misbehave on purpose (bench/resilience-upstreams.ts, their own process),
 * the real `outrider` CLI (another process), and bench/open-loop.ts in this
 * one: a constant request rate on a fixed timetable, latency measured from
 * each request's due time (coordinated omission corrected), so neither a slow
 * endpoint nor a stalled proxy can hide by slowing the load down.
 *
 *   node bench/resilience.ts [--rate 1000] [--duration 10] [--warmup 2] [--reps 5] [--settle 45] [--retries 1] [--nice 0]
 *                            [--only latency,errors,downup,adapt,orca] [--cases peak_ewma,…] [--json]
 *
 * 1. latency: 3 endpoints, one adds 50 ms. p50/p99 for round_robin,
 *    least_request, peak_ewma, peak_ewma with all endpoints fast, and the
 *    generator straight to one fast upstream (`direct`: the floor of this
 *    machine). Cases interleaved within each rep; medians over reps.
 * 2. errors: one of 3 endpoints answers 503 to half its requests; retries +
 *    outlier detection. Client-visible error ratio and retries per request.
 * 3. down/up: one endpoint refuses connections, then comes back: time to
 *    eject it and time to re-admit it, with client errors meanwhile.
 * 4. adapt: peak_ewma; an endpoint turns 50 ms slow mid-run, then recovers:
 *    its share of requests over time.
 * 5. orca: peak_ewma; an endpoint as fast as the others reports 90% ORCA
 *    utilization: its share with and without `useOrca`.
 *
 * The machine is shared: before each run it waits (up to --settle s) for
 * other load to stop, and every run reports `other CPU`, the share of the
 * machine used by anything but our three processes. A latency run with more
 * than a quarter of a core of it is tried again, up to --retries times, and
 * the least disturbed attempt is kept.
 */
const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '1000' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    reps: { type: 'string', default: '5' },
    settle: { type: 'string', default: '45' },
    retries: { type: 'string', default: '1' },
    nice: { type: 'string', default: '0' },
    only: { type: 'string', default: 'latency,errors,downup,adapt,orca' },
    cases: { type: 'string', default: '' },
    json: { type: 'boolean', default: false },
  },
})
const RATE = Number(values.rate)
const DURATION = Number(values.duration)
const WARMUP = Number(values.warmup)
const REPS = Number(values.reps)
const SETTLE = Number(values.settle)
const RETRIES = Number(values.retries)
const NICE = Number(values.nice)
/** Other programs' CPU (share of one core) above which a latency run counts as disturbed. */
const DISTURBED = 0.25
const ONLY = new Set(values.only.split(','))
const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url))
const children: ChildProcess[] = []
process.on('exit', () => { for (const c of children) c.kill('SIGKILL') })
process.on('SIGINT', () => { process.exit(130) })
process.on('SIGTERM', () => { process.exit(143) })
const progress = (msg: string): void => { process.stderr.write(`${msg}\n`) }
/**
 * Sets our processes' scheduling priority (--nice; 0, unchanged, by default).
 * A negative value lets the proxy, upstreams and generator preempt the shared
 * machine's other work (test suites) sooner; it also pushes that work's own
 * benchmarks aside, so it is opt-in. Needs CAP_SYS_NICE for a negative value;
 * without it, runs go on at normal priority and say so.
 */
function prioritize (pid: number): void {
  if (NICE === 0) return
  try { setPriority(pid, NICE) } catch { if (!warnedNice) { progress(`could not set nice ${NICE}; running at normal priority`); warnedNice = true } }
}
let warnedNice = false
prioritize(0)
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

// ---- processes --------------------------------------------------------------------

function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => { const { port } = s.address() as net.AddressInfo; s.close(() => { resolve(port) }) })
  })
}

interface Upstreams { ports: number[], pid: number, send (line: string): void, stop (): void }

async function startUpstreams (spec: string): Promise<Upstreams> {
  const child = spawn(process.execPath, [here('./resilience-upstreams.ts'), '--spec', spec], { stdio: ['pipe', 'pipe', 'inherit'] })
  children.push(child)
  prioritize(child.pid ?? 0)
  const ports = await new Promise<number[]>((resolve, reject) => {
    let out = ''
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString()
      const nl = out.indexOf('\n')
      if (nl !== -1) resolve((JSON.parse(out.slice(0, nl)) as { ports: number[] }).ports)
    })
    child.once('exit', () => { reject(new Error('upstreams exited')) })
  })
  return { ports, pid: child.pid ?? 0, send: (line) => { child.stdin?.write(`${line}\n`) }, stop: () => { child.kill() } }
}

interface Proxy { url: string, admin: string, pid: number, stop (): Promise<void> }

async function startOutrider (clusterYaml: string): Promise<Proxy> {
  const [port, admin] = [await freePort(), await freePort()]
  const dir = await mkdtemp(path.join(tmpdir(), 'outrider-resilience-'))
  const file = path.join(dir, 'outrider.yaml')
  await writeFile(file, `listen: { host: 127.0.0.1, port: ${port} }
admin: { host: 127.0.0.1, port: ${admin} }
clusters:
${clusterYaml}
routes:
  - name: all
    cluster: c
`)
  const child = spawn(process.execPath, [here('../src/outrider.js'), '--config', file, '--workers', '1'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, OUTRIDER_LOG_LEVEL: 'warn' } })
  children.push(child)
  prioritize(child.pid ?? 0)
  await new Promise<void>((resolve, reject) => {
    const t0 = Date.now()
    const poll = (): void => {
      const s = net.connect(port, '127.0.0.1')
      s.once('connect', () => { s.destroy(); resolve() })
      s.once('error', () => { if (Date.now() - t0 > 15_000) reject(new Error('outrider did not start')); else setTimeout(poll, 50) })
    }
    poll()
  })
  return {
    url: `http://127.0.0.1:${port}/`,
    admin: `http://127.0.0.1:${admin}`,
    pid: child.pid ?? 0,
    stop: () => new Promise((resolve) => { child.once('exit', () => { resolve() }); child.kill('SIGTERM') }),
  }
}

function endpointsYaml (ports: number[]): string {
  return ports.map((p) => `      - url: http://127.0.0.1:${p}`).join('\n')
}

async function metric (admin: string, name: string): Promise<number> {
  const text = await (await fetch(`${admin}/metrics`)).text()
  let sum = 0
  for (const line of text.split('\n')) if (line.startsWith(name)) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  return sum
}

// ---- how busy the machine is ------------------------------------------------------

const CPU_COUNT = cpus().length

/** CPU seconds (user + system) of a process, from /proc (proc(5): utime and stime are fields 14 and 15); 0 when unreadable. */
function cpuSeconds (pid: number): number {
  try {
    const { user, system } = processCpu(pid)
    return user + system
  } catch {
    return 0
  }
}

interface Measured extends OpenLoopResult {
  /** CPU of the proxy process, as a share of one core. */
  proxyCpu: number
  /** CPU of everything but the proxy, the upstreams and this process, as a share of one core. */
  otherCpu: number
}

/** One open-loop run, with the CPU each party used over it. */
async function measure (opts: OpenLoopOptions, pids: number[]): Promise<Measured> {
  const t0 = performance.now()
  const ours0 = pids.reduce((s, p) => s + cpuSeconds(p), 0) + cpuSeconds(process.pid)
  const proxy0 = cpuSeconds(pids[0] ?? 0)
  const busy0 = machineBusySeconds() ?? 0
  const r = await runOpenLoop(opts)
  const wall = (performance.now() - t0) / 1000
  const ours = pids.reduce((s, p) => s + cpuSeconds(p), 0) + cpuSeconds(process.pid) - ours0
  return {
    ...r,
    proxyCpu: pids.length > 1 ? (cpuSeconds(pids[0] ?? 0) - proxy0) / wall : 0,
    otherCpu: Math.max(0, ((machineBusySeconds() ?? 0) - busy0 - ours) / wall),
  }
}

const median = (xs: number[]): number => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return Number.NaN
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
const pct = (x: number): string => `${(x * 100).toFixed(1)}%`
const ms = (x: number): string => Number.isFinite(x) ? x.toFixed(2) : '-'

// ---- 1. latency-aware balancing --------------------------------------------------

interface LatencyRun { experiment: string, rep: number, p50: number, p90: number, p99: number, p999: number, max: number, slowShare: number, errorRatio: number, sendLagP99: number, proxyCpu: number, otherCpu: number, generatorCpu: number }

async function latency (): Promise<{ runs: LatencyRun[], rows: Array<Record<string, number | string>> }> {
  const all: Array<[string, string | undefined, string]> = [
    ['direct (one fast upstream, no proxy)', undefined, '0:0'],
    ['round_robin', 'round_robin', '50:0,0:0,0:0'],
    ['least_request', 'least_request', '50:0,0:0,0:0'],
    ['peak_ewma', 'peak_ewma', '50:0,0:0,0:0'],
    ['peak_ewma, all fast', 'peak_ewma', '0:0,0:0,0:0'],
  ]
  // --cases round_robin,peak_ewma: only the experiments whose name starts with one of these.
  const wanted = values.cases.split(',').filter((c) => c !== '')
  const cases = wanted.length === 0 ? all : all.filter(([name]) => wanted.some((w) => name.startsWith(w)))
  const runs: LatencyRun[] = []
  for (let rep = 1; rep <= REPS; rep++) {
    for (const [name, policy, spec] of cases) {
      const ups = await startUpstreams(spec)
      const proxy = policy === undefined
        ? undefined
        : await startOutrider(`  - name: c
    loadBalancer: { policy: ${policy} }
    outlierDetection: { enabled: false }
    endpoints:
${endpointsYaml(ups.ports)}`)
      const url = proxy?.url ?? `http://127.0.0.1:${ups.ports[0]}/`
      // A run during which other programs used more than DISTURBED of a core
      // is tried again (after waiting for quiet), up to --retries times; the
      // least disturbed attempt is kept. The choice looks only at other
      // programs' CPU, never at the latencies. A retry reuses the processes
      // (and so the balancer's state), like one longer run.
      let run: LatencyRun | undefined
      for (let attempt = 0; attempt <= RETRIES; attempt++) {
        await waitUntilQuiet(SETTLE, `[${name}] rep ${rep}`, progress)
        const r = await measure({ url, rate: RATE, duration: DURATION, warmup: WARMUP, groupBy: 'x-upstream' }, proxy === undefined ? [ups.pid] : [proxy.pid, ups.pid])
        const answered = Object.values(r.groups).reduce((s, n) => s + n, 0)
        const tried: LatencyRun = {
          experiment: name,
          rep,
          ...r.latency,
          slowShare: policy === undefined || spec.startsWith('0:') ? Number.NaN : (r.groups['0'] ?? 0) / Math.max(1, answered),
          errorRatio: (r.errors + r.non2xx) / Math.max(1, r.sent),
          sendLagP99: r.sendLag.p99,
          proxyCpu: r.proxyCpu,
          otherCpu: r.otherCpu,
          generatorCpu: r.generatorCpu,
        }
        progress(`[${name}] rep ${rep}${attempt > 0 ? ` (attempt ${attempt + 1})` : ''}: p50 ${ms(tried.p50)} p90 ${ms(tried.p90)} p99 ${ms(tried.p99)} p99.9 ${ms(tried.p999)} ms, slow share ${pct(tried.slowShare)}, errors ${pct(tried.errorRatio)}, send lag p99 ${ms(tried.sendLagP99)} ms, CPU proxy ${pct(tried.proxyCpu)} gen ${pct(tried.generatorCpu)} other ${pct(tried.otherCpu)}`)
        if (run === undefined || tried.otherCpu < run.otherCpu) run = tried
        if (tried.otherCpu <= DISTURBED) break
      }
      if (run === undefined) throw new Error('no run')
      runs.push(run)
      await proxy?.stop()
      ups.stop()
    }
  }
  const rows = cases.map(([name]) => {
    const mine = runs.filter((r) => r.experiment === name)
    const m = (k: keyof LatencyRun): number => median(mine.map((r) => r[k] as number))
    return { experiment: name, p50: m('p50'), p90: m('p90'), p99: m('p99'), p999: m('p999'), slowShare: m('slowShare'), errorRatio: m('errorRatio'), p99Range: `${ms(Math.min(...mine.map((r) => r.p99)))}–${ms(Math.max(...mine.map((r) => r.p99)))}`, sendLagP99: m('sendLagP99'), proxyCpu: m('proxyCpu'), otherCpu: m('otherCpu') }
  })
  return { runs, rows }
}

// ---- 2. errors: retries + outlier detection ---------------------------------------

async function errors (): Promise<Record<string, number | string>> {
  const ups = await startUpstreams('0:0,0:0,0:0.5')
  const proxy = await startOutrider(`  - name: c
    loadBalancer: { policy: round_robin }
    retry: { retryOn: [gateway-error, connect-failure, reset], maxAttempts: 2 }
    endpoints:
${endpointsYaml(ups.ports)}`)
  await waitUntilQuiet(SETTLE, '[errors]', progress)
  // The warmup is part of the run (open loop, same rate), so the counters are read before it starts.
  const retriesBefore = await metric(proxy.admin, 'outrider_retries_total{')
  const r = await measure({ url: proxy.url, rate: RATE, duration: DURATION, warmup: 0 }, [proxy.pid, ups.pid])
  const retries = await metric(proxy.admin, 'outrider_retries_total{') - retriesBefore
  const exhausted = await metric(proxy.admin, 'outrider_retry_budget_exhausted_total{')
  await proxy.stop()
  ups.stop()
  return {
    experiment: '1 of 3 endpoints: 50% 503',
    requests: r.sent,
    clientErrorRatio: (r.non2xx + r.errors) / Math.max(1, r.sent),
    retriesPerRequest: retries / Math.max(1, r.sent),
    budgetExhausted: exhausted,
    p50: r.latency.p50,
    p99: r.latency.p99,
    otherCpu: r.otherCpu,
  }
}

// ---- 3. endpoint down, then back --------------------------------------------------

async function downUp (): Promise<Record<string, number | string>> {
  const ups = await startUpstreams('0:0,0:0,0:0')
  const proxy = await startOutrider(`  - name: c
    loadBalancer: { policy: round_robin }
    retry: { retryOn: [connect-failure], maxAttempts: 2 }
    outlierDetection: { consecutiveGatewayFailures: 3, baseEjectionTime: 2s }
    healthCheck: { path: /healthz, interval: 1s, timeout: 500ms, unhealthyThreshold: 2, healthyThreshold: 1, jitter: 0 }
    endpoints:
${endpointsYaml(ups.ports)}`)
  const healthy = async (): Promise<boolean> => {
    const s = await (await fetch(`${proxy.admin}/clusters`)).json() as { clusters: Array<{ endpoints: Array<{ health: { healthy: boolean } }> }> }
    return s.clusters[0]?.endpoints[2]?.health.healthy ?? false
  }
  const waitFor = async (want: boolean): Promise<number> => {
    const t0 = performance.now()
    while (await healthy() !== want) {
      if (performance.now() - t0 > 60_000) return Number.NaN
      await sleep(10)
    }
    return performance.now() - t0
  }
  await waitUntilQuiet(SETTLE, '[down/up]', progress)
  const rate = Math.round(RATE / 2)
  const load = measure({ url: proxy.url, rate, duration: 12, warmup: 0 }, [proxy.pid, ups.pid])
  await sleep(2000)
  ups.send('stop 2')
  const ejectMs = await waitFor(false)
  await sleep(2000)
  ups.send('start 2')
  const readmitMs = await waitFor(true)
  const r = await load
  await proxy.stop()
  ups.stop()
  return { experiment: 'endpoint refused, then back', rate, ejectMs: Math.round(ejectMs), readmitMs: Math.round(readmitMs), clientErrors: r.non2xx + r.errors, requests: r.sent, p99: r.latency.p99 }
}

// ---- 4. adaptation: slow down, then recover ---------------------------------------

const SLOW_AT_MS = 4000
const RECOVER_AT_MS = 14_000
const ADAPT_END_S = 26

async function adapt (): Promise<Record<string, number | string>> {
  const ups = await startUpstreams('0:0,0:0,0:0')
  const proxy = await startOutrider(`  - name: c
    loadBalancer: { policy: peak_ewma }
    outlierDetection: { enabled: false }
    endpoints:
${endpointsYaml(ups.ports)}`)
  await waitUntilQuiet(SETTLE, '[adapt]', progress)
  const r = await measure({
    url: proxy.url,
    rate: RATE,
    duration: ADAPT_END_S,
    warmup: WARMUP,
    groupBy: 'x-upstream',
    slotMs: 250,
    onSlot: (at) => {
      if (at === SLOW_AT_MS) ups.send('delay 2 50')
      if (at === RECOVER_AT_MS) ups.send('delay 2 0')
    },
  }, [proxy.pid, ups.pid])
  await proxy.stop()
  ups.stop()
  const share = r.timeline.map((s) => {
    const all = Object.values(s.groups).reduce((a, n) => a + n, 0)
    return { at: s.atMs, share: (s.groups['2'] ?? 0) / Math.max(1, all) }
  })
  const between = (from: number, to: number): number => {
    const xs = share.filter((s) => s.at >= from && s.at < to)
    return xs.reduce((a, s) => a + s.share, 0) / Math.max(1, xs.length)
  }
  // First slot from which the share stays below 5% (slow) for a second.
  let shedMs = Number.NaN
  for (let i = 0; i < share.length; i++) {
    const s = share[i]!
    if (s.at < SLOW_AT_MS || s.at >= RECOVER_AT_MS) continue
    if (share.slice(i, i + 4).every((x) => x.share < 0.05)) { shedMs = s.at - SLOW_AT_MS; break }
  }
  // First slot after recovery where it has at least 20% (a fair share is 33%).
  const back = share.find((s) => s.at >= RECOVER_AT_MS && s.share >= 0.2)
  progress(`[adapt] share of endpoint 2 per 250 ms: ${share.map((s) => Math.round(s.share * 100)).join(' ')}`)
  return {
    experiment: 'peak_ewma: endpoint 2 +50 ms from 4 s to 14 s',
    shareBefore: between(0, SLOW_AT_MS),
    shedMs,
    shareWhileSlow: between(SLOW_AT_MS + 1000, RECOVER_AT_MS),
    regainMs: back === undefined ? Number.NaN : back.at - RECOVER_AT_MS,
    shareAfter: between(RECOVER_AT_MS + 10_000, ADAPT_END_S * 1000),
    p99: r.latency.p99,
    otherCpu: r.otherCpu,
  }
}

// ---- 5. ORCA: a hot endpoint sheds traffic before its latency shows it ---------------

async function orca (): Promise<Array<Record<string, number | string>>> {
  const rows: Array<Record<string, number | string>> = []
  for (const useOrca of [false, true]) {
    const ups = await startUpstreams('0:0,0:0,0:0:0.9')
    const proxy = await startOutrider(`  - name: c
    loadBalancer: { policy: peak_ewma, useOrca: ${String(useOrca)} }
    outlierDetection: { enabled: false }
    endpoints:
${endpointsYaml(ups.ports)}`)
    await waitUntilQuiet(SETTLE, `[orca ${String(useOrca)}]`, progress)
    const r = await measure({ url: proxy.url, rate: RATE, duration: Math.min(DURATION, 8), warmup: WARMUP, groupBy: 'x-upstream' }, [proxy.pid, ups.pid])
    await proxy.stop()
    ups.stop()
    const all = Object.values(r.groups).reduce((a, n) => a + n, 0)
    rows.push({ experiment: `endpoint 2 reports 90% utilization, useOrca: ${String(useOrca)}`, hotShare: (r.groups['2'] ?? 0) / Math.max(1, all), p99: r.latency.p99, otherCpu: r.otherCpu })
  }
  return rows
}

// ---- report ------------------------------------------------------------------------

const machine = { cpus: CPU_COUNT, model: cpus()[0]?.model, node: process.version, date: new Date().toISOString() }
const out: Record<string, unknown> = { machine, rate: RATE, duration: DURATION, warmup: WARMUP, reps: REPS }
const write = (s: string): void => { if (!values.json) process.stdout.write(s) }
write(`Outrider resilience bench · ${machine.date} · Node ${machine.node} · ${machine.cpus} CPUs · ${machine.model ?? ''}\n`)
write(`open loop (bench/open-loop.ts): ${RATE} req/s on a fixed timetable, latency from each request's due time; ${WARMUP} s warmup + ${DURATION} s measured\n`)

if (ONLY.has('latency')) {
  const lat = await latency()
  out.latency = lat
  const row = (name: string): Record<string, number | string> => lat.rows.find((r) => r.experiment === name) ?? {}
  const rr = row('round_robin')
  const ewma = row('peak_ewma')
  const fast = row('peak_ewma, all fast')
  const summary = {
    peakEwmaP99OverRoundRobin: (ewma.p99 as number) / (rr.p99 as number),
    peakEwmaP50OverAllFastP50: (ewma.p50 as number) / (fast.p50 as number),
  }
  out.latencySummary = summary
  write(`\n### Latency-aware balancing (one of 3 endpoints +50 ms; medians of ${REPS} reps)\n\n| experiment | p50 ms | p90 ms | p99 ms | p99.9 ms | p99 range ms | to slow endpoint | errors | send lag p99 ms | proxy CPU | other CPU |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n`)
  for (const r of lat.rows) write(`| ${String(r.experiment)} | ${ms(r.p50 as number)} | ${ms(r.p90 as number)} | ${ms(r.p99 as number)} | ${ms(r.p999 as number)} | ${String(r.p99Range)} | ${Number.isNaN(r.slowShare) ? '-' : pct(r.slowShare as number)} | ${pct(r.errorRatio as number)} | ${ms(r.sendLagP99 as number)} | ${pct(r.proxyCpu as number)} | ${pct(r.otherCpu as number)} |\n`)
  write(`\npeak_ewma p99 / round_robin p99 = ${summary.peakEwmaP99OverRoundRobin.toFixed(3)} (target ≤ 0.333); peak_ewma p50 / all-fast p50 = ${summary.peakEwmaP50OverAllFastP50.toFixed(3)} (target ≤ 1.10)\n`)
}
if (ONLY.has('errors')) {
  const err = await errors()
  out.errors = err
  write(`\n### Errors: one of 3 endpoints answers 503 to half its requests (round_robin, retries on gateway errors, outlier detection on)\n\n| requests | client error ratio | retries per request | budget exhausted | p50 ms | p99 ms | other CPU |\n|--:|--:|--:|--:|--:|--:|--:|\n| ${String(err.requests)} | ${((err.clientErrorRatio as number) * 100).toFixed(3)}% | ${(err.retriesPerRequest as number).toFixed(3)} | ${String(err.budgetExhausted)} | ${ms(err.p50 as number)} | ${ms(err.p99 as number)} | ${pct(err.otherCpu as number)} |\n`)
}
if (ONLY.has('downup')) {
  const du = await downUp()
  out.downUp = du
  write(`\n### Endpoint down, then back (${String(du.rate)} req/s; outlier: 3 gateway failures; active check every 1 s)\n\n| time to eject | time to re-admit | client errors | requests | p99 ms |\n|--:|--:|--:|--:|--:|\n| ${String(du.ejectMs)} ms | ${String(du.readmitMs)} ms | ${String(du.clientErrors)} | ${String(du.requests)} | ${ms(du.p99 as number)} |\n`)
}
if (ONLY.has('adapt')) {
  const a = await adapt()
  out.adapt = a
  write(`\n### Adaptation (peak_ewma, ${RATE} req/s): endpoint 2 of 3 turns +50 ms slow at 4 s and recovers at 14 s\n\n| share before | time to < 5% | share while slow | time back to ≥ 20% | share 10 s after recovery | p99 ms |\n|--:|--:|--:|--:|--:|--:|\n| ${pct(a.shareBefore as number)} | ${String(a.shedMs)} ms | ${pct(a.shareWhileSlow as number)} | ${String(a.regainMs)} ms | ${pct(a.shareAfter as number)} | ${ms(a.p99 as number)} |\n`)
}
if (ONLY.has('orca')) {
  const o = await orca()
  out.orca = o
  write(`\n### ORCA: endpoint 2 of 3 as fast as the others, but reports application_utilization=0.9 (peak_ewma, ${RATE} req/s)\n\n| experiment | its share | p99 ms |\n|---|--:|--:|\n`)
  for (const r of o) write(`| ${String(r.experiment)} | ${pct(r.hotShare as number)} | ${ms(r.p99 as number)} |\n`)
}
if (values.json) process.stdout.write(JSON.stringify(out, null, 2) + '\n')
process.exit(0)
