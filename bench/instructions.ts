/**
 * Instructions per request, counted by valgrind's callgrind: the proxy's own
 * CPU cost as a number that other load on the machine does not move. (CPU
 * time per request varies ±20% between process starts on this shared VM, for
 * undici-min as much as for Outrider; the same instruction count comes back
 * within ~1%.)
 *
 *   node bench/instructions.ts [--requests 20000] [--warmup 60000] [--reps 2]
 *                              [--connections 20] [--size 1024] [--only b,c,p]
 *
 * b = Outrider, c = our undici-min (undici 8), p = the peer-bench's
 * undici-min-dispatch (undici 7; see peer-undici-min.ts).
 *
 * Each proxy runs under `valgrind --tool=callgrind` with instrumentation off
 * while `--warmup` requests bring the JIT to steady state, then counts
 * `--requests` requests `--reps` times (counters zeroed before each). Counted:
 * user-space instructions of the proxy process, JIT code, GC and node's C++
 * included; kernel work (the socket syscalls) is not, and it is about the same
 * for every proxy. Needs valgrind (Debian package `valgrind`); about 10× slower
 * than a normal run: ~5 minutes per target with the defaults.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import { intFlag, startChild, stopChild, children } from './child.ts'
import { runLoad } from './load.ts'
import { median } from './stats.ts'

const run = promisify(execFile)
const { values } = parseArgs({
  options: {
    requests: { type: 'string' },
    warmup: { type: 'string' },
    reps: { type: 'string' },
    connections: { type: 'string' },
    size: { type: 'string' },
    only: { type: 'string' },
  },
})
// Each rep is a new load run: new connections, and V8 still compiles what
// they touch for the first time. With 5,000 requests per rep that compiling
// was up to ~10 % of the count (TurboFan's own functions in the dump) and reps
// of one target differed by 5 %; at 20,000 they agree within ~2 %.
const requests = intFlag(values.requests, 'requests', 20_000)
const warmup = intFlag(values.warmup, 'warmup', 60_000)
const reps = Math.max(1, intFlag(values.reps, 'reps', 2))
const connections = Math.max(1, intFlag(values.connections, 'connections', 20))
const size = intFlag(values.size, 'size', 1024)
const only = (values.only ?? 'b,c').split(',')

const TARGETS = [
  { key: 'b', name: 'outrider', file: 'outrider-proc.ts' },
  { key: 'c', name: 'undici-min', file: 'undici-min.ts' },
  // peer-bench's undici-min-dispatch (undici 7): only when asked for, it lives outside the repo.
  { key: 'p', name: 'peer-undici-min', file: 'peer-undici-min.ts' },
].filter((t) => only.includes(t.key) || only.includes(t.name))

const script = (name: string): string => fileURLToPath(new URL(name, import.meta.url))
const progress = (msg: string): void => { process.stderr.write(`${msg}\n`) }

/** The `summary:` line of a callgrind dump: instructions counted since the last zeroing. */
function summary (file: string): number {
  const m = /^summary: (\d+)$/m.exec(readFileSync(file, 'utf8'))
  if (m === null) throw new Error(`${file} has no summary line`)
  return Number(m[1])
}

async function measure (target: typeof TARGETS[number], upstream: string, dir: string): Promise<number[]> {
  const out = join(dir, `${target.name}.%p`)
  const { child, ready } = await startChild([
    'valgrind', '--tool=callgrind', '--smc-check=all-non-file', '--instr-atstart=no', `--callgrind-out-file=${out}`,
    process.execPath, script(target.file), '--upstream', upstream,
  ], target.name, 120_000)
  const pid = String(ready.pids[0])
  const url = `http://127.0.0.1:${ready.port}/`
  try {
    progress(`[${target.name}] warming up: ${warmup} requests, not counted`)
    await runLoad({ url, connections, amount: warmup })
    await run('callgrind_control', ['-i', 'on', pid])
    const perRequest: number[] = []
    for (let r = 1; r <= reps; r++) {
      await run('callgrind_control', ['-z', pid])
      const result = await runLoad({ url, connections, amount: requests })
      const before = new Set(readdirSync(dir))
      await run('callgrind_control', ['-d', pid])
      const dump = readdirSync(dir).find((f) => !before.has(f) && f.startsWith(`${target.name}.${pid}.`))
      if (dump === undefined) throw new Error(`${target.name}: callgrind wrote no dump`)
      const bad = result.non2xx + result.errors + result.timeouts
      if (bad > 0) throw new Error(`${target.name}: ${bad} of ${requests} requests failed`)
      const n = summary(join(dir, dump)) / requests
      perRequest.push(n)
      progress(`[${target.name}] rep ${r}: ${Math.round(n).toLocaleString('en')} instructions/request`)
    }
    return perRequest
  } finally {
    await stopChild(child)
  }
}

async function main (): Promise<void> {
  try { await run('valgrind', ['--version']) } catch {
    throw new Error('valgrind is not installed (apt-get install valgrind)')
  }
  const dir = mkdtempSync(join(tmpdir(), 'outrider-instr-'))
  const upstream = await startChild([process.execPath, script('upstream.ts'), '--size', String(size)], 'upstream.ts')
  try {
    const url = `http://127.0.0.1:${upstream.ready.port}`
    const rows: Array<{ name: string, median: number, reps: number[] }> = []
    for (const t of TARGETS) {
      const per = await measure(t, url, dir)
      rows.push({ name: t.name, median: median(per), reps: per })
    }
    process.stdout.write(`Instructions per request (callgrind), GET ${size} B, ${connections} connections, ${requests} requests × ${reps} after ${warmup} warm-up · Node ${process.version}\n\n`)
    process.stdout.write('| target | instructions/request (median) | reps |\n|---|--:|---|\n')
    for (const r of rows) process.stdout.write(`| ${r.name} | ${Math.round(r.median).toLocaleString('en')} | ${r.reps.map((x) => Math.round(x).toLocaleString('en')).join(' · ')} |\n`)
    const b = rows.find((r) => r.name === 'outrider')
    const c = rows.find((r) => r.name === 'undici-min')
    if (b !== undefined && c !== undefined) process.stdout.write(`\noutrider / undici-min: ${(b.median / c.median).toFixed(3)}×\n`)
    const p = rows.find((r) => r.name === 'peer-undici-min')
    if (b !== undefined && p !== undefined) process.stdout.write(`outrider / peer-undici-min: ${(b.median / p.median).toFixed(3)}×\n`)
  } finally {
    await stopChild(upstream.child)
    rmSync(dir, { recursive: true, force: true })
  }
}

process.on('SIGINT', () => { process.exit(130) })
main().catch(async (err: unknown) => {
  process.stderr.write(`instructions: ${err instanceof Error ? err.message : String(err)}\n`)
  await Promise.all([...children].map(stopChild))
  process.exitCode = 1
})
