import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir, cpus } from 'node:os'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'

interface AutocannonResult { latency: { p50: number, p90: number, p99: number }, requests: { total: number }, non2xx: number, errors: number, timeouts: number }
// autocannon ships no types; this is the slice used here.
const autocannon = createRequire(import.meta.url)('autocannon') as (opts: Record<string, unknown>, cb: (err: Error | null, r: AutocannonResult) => void) => unknown

/**
 * Resilience benchmarks (issue #3), against real processes: upstreams that
 * misbehave on purpose (bench/resilience-upstreams.ts) and the real
 * `outrider` CLI, driven by autocannon at a fixed request rate (open loop, so
 * a slow endpoint cannot hide by slowing the load down).
 *
 *   node bench/resilience.ts [--duration 10] [--rate 800] [--json]
 *
 * 1. latency: 3 endpoints, one adds 50 ms. p50/p99 for round_robin,
 *    least_request, peak_ewma, and peak_ewma with all endpoints fast.
 * 2. errors: one of 3 endpoints answers 503 to half its requests; retries +
 *    outlier detection. Client-visible error ratio and retries per request.
 * 3. down/up: one endpoint refuses connections, then comes back: time to
 *    eject it and time to re-admit it, with client errors meanwhile.
 */
const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url))
const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  return i === -1 ? fallback : Number(process.argv[i + 1])
}
const DURATION = arg('duration', 10)
const RATE = arg('rate', 800)
const JSON_OUT = process.argv.includes('--json')
const children: ChildProcess[] = []
process.on('exit', () => { for (const c of children) c.kill('SIGKILL') })
process.on('SIGINT', () => { process.exit(130) })

function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => { const { port } = s.address() as net.AddressInfo; s.close(() => { resolve(port) }) })
  })
}

async function startUpstreams (spec: string): Promise<{ ports: number[], send (line: string): void, stop (): void }> {
  const child = spawn(process.execPath, [here('./resilience-upstreams.ts'), '--spec', spec], { stdio: ['pipe', 'pipe', 'inherit'] })
  children.push(child)
  const ports = await new Promise<number[]>((resolve, reject) => {
    let out = ''
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString()
      const nl = out.indexOf('\n')
      if (nl !== -1) resolve((JSON.parse(out.slice(0, nl)) as { ports: number[] }).ports)
    })
    child.once('exit', () => { reject(new Error('upstreams exited')) })
  })
  return { ports, send: (line) => { child.stdin?.write(`${line}\n`) }, stop: () => { child.kill() } }
}

async function startOutrider (clusterYaml: string): Promise<{ url: string, admin: string, stop (): Promise<void> }> {
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
  const child = spawn(process.execPath, [here('../src/cli.ts'), '--config', file], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, OUTRIDER_LOG_LEVEL: 'warn' } })
  children.push(child)
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
    url: `http://127.0.0.1:${port}`,
    admin: `http://127.0.0.1:${admin}`,
    stop: () => new Promise((resolve) => { child.once('exit', () => { resolve() }); child.kill('SIGTERM') }),
  }
}

interface Load { p50: number, p90: number, p99: number, requests: number, non2xx: number, errors: number }

function drive (url: string, seconds: number, rate = RATE): Promise<Load> {
  return new Promise((resolve, reject) => {
    autocannon({ url, duration: seconds, connections: 20, overallRate: rate }, (err, r) => {
      if (err != null) { reject(err); return }
      resolve({ p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, requests: r.requests.total, non2xx: r.non2xx, errors: r.errors + r.timeouts })
    })
  })
}

async function metric (admin: string, name: string): Promise<number> {
  const text = await (await fetch(`${admin}/metrics`)).text()
  let sum = 0
  for (const line of text.split('\n')) if (line.startsWith(name)) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  return sum
}

function endpointsYaml (ports: number[]): string {
  return ports.map((p) => `      - url: http://127.0.0.1:${p}`).join('\n')
}

// ---- 1. latency-aware balancing --------------------------------------------------

async function latency (): Promise<Array<Record<string, unknown>>> {
  const rows: Array<Record<string, unknown>> = []
  const cases: Array<[string, string, string]> = [
    ['round_robin', 'round_robin', '50:0,0:0,0:0'],
    ['least_request', 'least_request', '50:0,0:0,0:0'],
    ['peak_ewma', 'peak_ewma', '50:0,0:0,0:0'],
    ['peak_ewma, all fast', 'peak_ewma', '0:0,0:0,0:0'],
  ]
  for (const [name, policy, spec] of cases) {
    const ups = await startUpstreams(spec)
    const proxy = await startOutrider(`  - name: c
    loadBalancer: { policy: ${policy} }
    outlierDetection: { enabled: false }
    endpoints:
${endpointsYaml(ups.ports)}`)
    await drive(proxy.url, 2)
    const r = await drive(proxy.url, DURATION)
    rows.push({ experiment: name, ...r })
    await proxy.stop()
    ups.stop()
  }
  return rows
}

// ---- 2. errors: retries + outlier detection ---------------------------------------

async function errors (): Promise<Record<string, unknown>> {
  const ups = await startUpstreams('0:0,0:0,0:0.5')
  const proxy = await startOutrider(`  - name: c
    loadBalancer: { policy: round_robin }
    retry: { retryOn: [gateway-error, connect-failure, reset], maxAttempts: 2 }
    endpoints:
${endpointsYaml(ups.ports)}`)
  await drive(proxy.url, 2)
  const retriesBefore = await metric(proxy.admin, 'outrider_retries_total{')
  const r = await drive(proxy.url, DURATION)
  const retries = await metric(proxy.admin, 'outrider_retries_total{') - retriesBefore
  const exhausted = await metric(proxy.admin, 'outrider_retry_budget_exhausted_total{')
  await proxy.stop()
  ups.stop()
  return {
    experiment: '1 of 3 endpoints: 50% 503',
    requests: r.requests,
    clientErrorRatio: (r.non2xx + r.errors) / Math.max(1, r.requests),
    retriesPerRequest: retries / Math.max(1, r.requests),
    budgetExhausted: exhausted,
    p99: r.p99,
  }
}

// ---- 3. endpoint down, then back --------------------------------------------------

async function downUp (): Promise<Record<string, unknown>> {
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
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    return performance.now() - t0
  }
  const load = drive(proxy.url, 12, 400)
  await new Promise((resolve) => setTimeout(resolve, 2000))
  ups.send('stop 2')
  const ejectMs = await waitFor(false)
  await new Promise((resolve) => setTimeout(resolve, 2000))
  ups.send('start 2')
  const readmitMs = await waitFor(true)
  const r = await load
  await proxy.stop()
  ups.stop()
  return { experiment: 'endpoint refused, then back', ejectMs: Math.round(ejectMs), readmitMs: Math.round(readmitMs), clientErrors: r.non2xx + r.errors, requests: r.requests }
}

const lat = await latency()
const err = await errors()
const du = await downUp()
const rr = lat[0] as unknown as Load
const ewma = lat[2] as unknown as Load
const fast = lat[3] as unknown as Load
const summary = {
  peakEwmaP99OverRoundRobin: ewma.p99 / rr.p99,
  peakEwmaP50OverAllFastP50: ewma.p50 / fast.p50,
}
if (JSON_OUT) {
  process.stdout.write(JSON.stringify({ machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version }, rate: RATE, duration: DURATION, latency: lat, errors: err, downUp: du, summary }, null, 2) + '\n')
} else {
  const ms = (v: unknown): string => typeof v === 'number' ? v.toFixed(2) : String(v)
  process.stdout.write(`\n### Latency-aware balancing (one of 3 endpoints +50 ms; ${RATE} req/s, 20 connections, ${DURATION} s)\n\n| policy | p50 ms | p90 ms | p99 ms | requests | non-2xx |\n|---|---|---|---|---|---|\n`)
  for (const r of lat) process.stdout.write(`| ${String(r.experiment)} | ${ms(r.p50)} | ${ms(r.p90)} | ${ms(r.p99)} | ${String(r.requests)} | ${String(r.non2xx)} |\n`)
  process.stdout.write(`\npeak_ewma p99 / round_robin p99 = ${summary.peakEwmaP99OverRoundRobin.toFixed(3)} (target ≤ 0.333); peak_ewma p50 / all-fast p50 = ${summary.peakEwmaP50OverAllFastP50.toFixed(3)} (target ≤ 1.10)\n`)
  process.stdout.write(`\n### Errors: one of 3 endpoints answers 503 to half its requests (retries on gateway errors, outlier detection on)\n\n| requests | client error ratio | retries per request | budget exhausted | p99 ms |\n|---|---|---|---|---|\n| ${String(err.requests)} | ${((err.clientErrorRatio as number) * 100).toFixed(3)}% | ${(err.retriesPerRequest as number).toFixed(3)} | ${String(err.budgetExhausted)} | ${ms(err.p99)} |\n`)
  process.stdout.write(`\n### Endpoint down, then back (400 req/s; outlier: 3 gateway failures; active check every 1 s)\n\n| time to eject | time to re-admit | client errors | requests |\n|---|---|---|---|\n| ${String(du.ejectMs)} ms | ${String(du.readmitMs)} ms | ${String(du.clientErrors)} | ${String(du.requests)} |\n`)
}
process.exit(0)
