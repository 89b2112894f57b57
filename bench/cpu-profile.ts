/**
 * Where each proxy's CPU goes, per request: `perf record` (cpu-clock, every
 * thread, kernel included) of each target under the same load, the samples
 * summed by function and by kind (our code, undici, node's JS, V8 builtins,
 * regular expressions, GC, the kernel…) and divided by the requests served.
 * cpu-per-request.ts says how much; this says where, and what differs between
 * two proxies doing the same job.
 *
 *   node bench/cpu-profile.ts [--size 1024] [--requests 40000] [--warmup 15000]
 *                             [--rounds 2] [--connections 50] [--only b,c] [--top 30]
 *
 * Targets (rounds.ts): b = Outrider, b0 = Outrider without the compile cache, c = our undici-min,
 * p = the peer-bench's undici-min-dispatch. Each round starts every target
 * afresh with `--perf-basic-prof` (so JIT frames have names), pinned alone on
 * CPU 0; the origin and the load share CPU 1. Function names are shown
 * without their path and line (undici 7 and 8 pair up). Needs `perf` (Debian
 * package `linux-perf`) and root or `kernel.perf_event_paranoid` ≤ 1. Linux only.
 */
import { execFile, execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { children, startChild, stopChild } from './child.ts'
import { runLoad } from './load.ts'
import { benchScript as script, LOAD_CPU, parseRounds, PROXY_CPU, type Target } from './rounds.ts'

const run = promisify(execFile)
const { size, requests, warmup, rounds, connections, top, targets: TARGETS } = parseRounds({ size: 1024, requests: 40_000, warmup: 15_000, rounds: 2, only: 'b,c' })

const progress = (msg: string): void => { process.stderr.write(`${msg}\n`) }

/** µs per request by function name. */
type Profile = Map<string, number>

const PERF_LINE = /^\s*([\d.]+)%\s+\[[.k]\]\s+(.*)$/
const EVENT_COUNT = /Event count \(approx\.\): (\d+)/

/** `JS:*'onHeaderValue /x/node_modules/undici/lib/h1.js:529:17` → `onHeaderValue undici/lib/h1.js`. */
function functionName (sym: string): string {
  return sym.trim()
    .replace(/^(?:JS:|LazyCompile:)?[*~^+]?'?/, '')
    .replace(/(?:file:\/\/)?\/\S*node_modules\//, '')
    .replace(/(?:file:\/\/)?\/\S*\/(bench|src|plugins|peers)\//, '$1/')
    .replace(/:\d+:\d+$/, '')
}

/** What kind of work a function is, for the summary table. */
function kind (name: string): string {
  if (name.includes('undici/')) return 'undici'
  if (/(?:^|\s)(?:src|plugins|bench|peers)\//.test(name)) return 'proxy code'
  if (/ node:/.test(name)) return 'node (JS)'
  if (name.startsWith('RegExp') || name.startsWith('Builtins_RegExp')) return 'regular expressions'
  if (/Scaveng|Heap|Mark|Sweep|GC|Evacuat|Remembered/.test(name)) return 'GC'
  if (name.startsWith('Builtins_')) return 'V8 builtins (ICs, calls, strings)'
  if (name.startsWith('v8::')) return 'V8 runtime (C++)'
  if (name.startsWith('node::') || name.startsWith('uv_') || name.startsWith('uv__') || name.startsWith('llhttp')) return 'node and libuv (C++)'
  if (name.includes('wasm')) return 'wasm (undici\'s llhttp)'
  return 'kernel, libc, other'
}

async function profile (target: Target, upstream: string, dir: string): Promise<Profile> {
  const { child, ready } = await startChild(['taskset', '-c', PROXY_CPU, process.execPath, '--perf-basic-prof', '--interpreted-frames-native-stack', script(target.file), '--upstream', upstream], target.name, 30_000, target.env)
  const pid = ready.pids[0] as number
  const data = join(dir, `${target.key}-${pid}.data`)
  try {
    const url = `http://127.0.0.1:${ready.port}/`
    await runLoad({ url, connections, amount: warmup })
    const rec = spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', '4000', '-p', String(pid), '-o', data], { stdio: ['ignore', 'ignore', 'pipe'] })
    let recErr = ''
    rec.stderr.on('data', (b: Buffer) => { recErr += b.toString() })
    const recorded = new Promise<void>((resolve) => { rec.once('exit', () => { resolve() }) })
    // perf attaches asynchronously: the first requests may go unsampled, never someone else's.
    await new Promise((resolve) => setTimeout(resolve, 300))
    const result = await runLoad({ url, connections, amount: requests })
    rec.kill('SIGINT')
    await recorded
    const bad = result.non2xx + result.errors + result.timeouts
    if (bad > 0) throw new Error(`${target.name}: ${bad} of ${requests} requests failed`)
    // The JIT names are in /tmp/perf-<pid>.map until the process goes.
    const { stdout } = await run('perf', ['report', '-i', data, '--no-children', '-g', 'none', '--sort', 'sym', '--stdio'], { maxBuffer: 256 * 1024 * 1024 })
    const total = Number(EVENT_COUNT.exec(stdout)?.[1] ?? NaN)
    if (!Number.isFinite(total)) throw new Error(`${target.name}: perf recorded nothing${recErr === '' ? '' : `: ${recErr.trim()}`}`)
    const usPerRequest = total / 1000 / requests
    const out: Profile = new Map()
    for (const line of stdout.split('\n')) {
      const m = PERF_LINE.exec(line)
      if (m === null) continue
      const name = functionName(m[2] as string)
      out.set(name, (out.get(name) ?? 0) + Number(m[1]) / 100 * usPerRequest)
    }
    return out
  } finally {
    await stopChild(child)
    rmSync(`/tmp/perf-${pid}.map`, { force: true })
  }
}

function add (into: Profile, from: Profile, weight: number): void {
  for (const [name, us] of from) into.set(name, (into.get(name) ?? 0) + us * weight)
}

function byKind (p: Profile): Map<string, number> {
  const out = new Map<string, number>()
  for (const [name, us] of p) out.set(kind(name), (out.get(kind(name)) ?? 0) + us)
  return out
}

const f2 = (x: number): string => x.toFixed(2)
const sum = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0)

async function main (): Promise<void> {
  execFileSync('taskset', ['-pc', LOAD_CPU, String(process.pid)], { stdio: 'ignore' })
  const dir = mkdtempSync(join(tmpdir(), 'outrider-cpu-profile-'))
  const upstream = await startChild(['taskset', '-c', LOAD_CPU, process.execPath, script('upstream.ts'), '--size', String(size)], 'upstream.ts')
  try {
    const url = `http://127.0.0.1:${upstream.ready.port}`
    const totals = TARGETS.map(() => new Map() as Profile)
    for (let r = 1; r <= rounds; r++) {
      for (const [i, t] of TARGETS.entries()) {
        const p = await profile(t, url, dir)
        add(totals[i] as Profile, p, 1 / rounds)
        progress(`round ${r} [${t.name}] ${f2(sum(p))} µs/req sampled`)
      }
    }
    const kinds = totals.map(byKind)
    const names = TARGETS.map((t) => t.name)
    process.stdout.write(`CPU per request by kind of work (perf cpu-clock, all threads, µs), GET ${size} B, ${connections} connections, ${requests} requests × ${rounds} rounds after ${warmup} uncounted · Node ${process.version}\n\n`)
    process.stdout.write(`| kind | ${names.join(' | ')} |${TARGETS.length > 1 ? ` ${names[0]} − ${names[1]} |` : ''}\n|---|${TARGETS.map(() => '--:|').join('')}${TARGETS.length > 1 ? '--:|' : ''}\n`)
    const allKinds = [...new Set(kinds.flatMap((k) => [...k.keys()]))].sort((a, b) => (kinds[0]?.get(b) ?? 0) - (kinds[0]?.get(a) ?? 0))
    const row = (label: string, vals: number[]): string => `| ${label} | ${vals.map(f2).join(' | ')} |${vals.length > 1 ? ` ${((vals[0] as number) - (vals[1] as number) >= 0 ? '+' : '')}${f2((vals[0] as number) - (vals[1] as number))} |` : ''}\n`
    for (const k of allKinds) process.stdout.write(row(k, kinds.map((m) => m.get(k) ?? 0)))
    process.stdout.write(row('**total**', kinds.map(sum)))
    if (TARGETS.length < 2) {
      process.stdout.write(`\nTop ${top} functions:\n\n`)
      for (const [name, us] of [...(totals[0] as Profile)].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${f2(us).padStart(7)}  ${name}\n`)
      return
    }
    const [a, b] = totals as [Profile, Profile]
    const diff = [...new Set([...a.keys(), ...b.keys()])].map((n) => [n, (a.get(n) ?? 0) - (b.get(n) ?? 0)] as const).sort((x, y) => y[1] - x[1])
    const line = ([n, d]: readonly [string, number]): string => `${f2(a.get(n) ?? 0).padStart(7)} ${f2(b.get(n) ?? 0).padStart(7)} ${(d >= 0 ? '+' : '') + f2(d)}  ${n}\n`
    process.stdout.write(`\nFunctions where ${names[0]} spends more than ${names[1]} (µs/req: ${names[0]}, ${names[1]}, difference):\n\n`)
    for (const d of diff.slice(0, top)) process.stdout.write(line(d))
    process.stdout.write(`\nand less:\n\n`)
    for (const d of diff.slice(-Math.min(top, 15)).reverse()) process.stdout.write(line(d))
  } finally {
    await stopChild(upstream.child)
    rmSync(dir, { recursive: true, force: true })
  }
}

process.on('SIGINT', () => { process.exit(130) })
main().catch(async (err: unknown) => {
  process.stderr.write(`cpu-profile: ${err instanceof Error ? err.message : String(err)}\n`)
  await Promise.all([...children].map(stopChild))
  process.exitCode = 1
})
