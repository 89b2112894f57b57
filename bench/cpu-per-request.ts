/**
 * CPU time per request, user and system apart, over a fixed number of
 * requests: the proxy process's own threads (JIT code, GC, node's C++) from
 * /proc. Where callgrind (instructions.ts) hides GC heuristics (it slows the
 * clock V8 schedules by) and req/s is noisy, this shows them, when paired.
 *
 *   node bench/cpu-per-request.ts [--size 65536] [--requests 60000] [--warmup 10000]
 *                                 [--rounds 5] [--connections 50] [--only b,b0,p]
 *
 * b = Outrider (the compile cache on, as the `outrider` command runs it),
 * b0 = Outrider with NODE_DISABLE_COMPILE_CACHE=1 (Node's type stripper loaded),
 * c = our undici-min (undici 8), p = the peer-bench's undici-min-dispatch.
 *
 * Each round starts every target afresh, in turn (a process settles in one GC
 * mode or the other: bench/RESULTS.md, session 6), warms it up uncounted, then
 * counts. The proxy is alone on CPU 0; the origin and this driver (the load)
 * share CPU 1. Reported: per-round figures, medians, and per-round ratios
 * against the first target. Linux only (taskset, /proc).
 */
import { execFileSync } from 'node:child_process'
import { children, startChild, stopChild } from './child.ts'
import { runLoad } from './load.ts'
import { median } from './stats.ts'
import { processCpu } from './proc-cpu.ts'
import { benchScript as script, LOAD_CPU, parseRounds, PROXY_CPU, type Target } from './rounds.ts'

const { size, requests, warmup, rounds, connections, targets: TARGETS } = parseRounds({ size: 65_536, requests: 60_000, warmup: 10_000, rounds: 5, only: 'b,b0,p' })

const progress = (msg: string): void => { process.stderr.write(`${msg}\n`) }
/** CPU microseconds per request. */
interface Sample { user: number, system: number }

async function measure (target: Target, upstream: string): Promise<Sample> {
  const { child, ready } = await startChild(['taskset', '-c', PROXY_CPU, process.execPath, script(target.file), '--upstream', upstream], target.name, 30_000, target.env)
  try {
    const url = `http://127.0.0.1:${ready.port}/`
    await runLoad({ url, connections, amount: warmup })
    const pid = ready.pids[0] as number
    const before = processCpu(pid)
    const result = await runLoad({ url, connections, amount: requests })
    const after = processCpu(pid)
    const bad = result.non2xx + result.errors + result.timeouts
    if (bad > 0) throw new Error(`${target.name}: ${bad} of ${requests} requests failed`)
    return { user: (after.user - before.user) * 1e6 / requests, system: (after.system - before.system) * 1e6 / requests }
  } finally {
    await stopChild(child)
  }
}

const f1 = (x: number): string => x.toFixed(1)

async function main (): Promise<void> {
  // The load generator runs in this process: it shares CPU 1 with the origin.
  execFileSync('taskset', ['-pc', LOAD_CPU, String(process.pid)], { stdio: 'ignore' })
  const upstream = await startChild(['taskset', '-c', LOAD_CPU, process.execPath, script('upstream.ts'), '--size', String(size)], 'upstream.ts')
  try {
    const url = `http://127.0.0.1:${upstream.ready.port}`
    const samples = TARGETS.map(() => [] as Sample[])
    for (let r = 1; r <= rounds; r++) {
      for (const [i, t] of TARGETS.entries()) {
        const s = await measure(t, url)
        samples[i]!.push(s)
        progress(`round ${r} [${t.name}] user ${f1(s.user)} µs/req, system ${f1(s.system)} µs/req`)
      }
    }
    process.stdout.write(`CPU per request, GET ${size} B, ${connections} connections, ${requests} requests after ${warmup} uncounted, ${rounds} interleaved rounds · Node ${process.version}\n\n`)
    process.stdout.write(`| target | user µs/req (median) | system µs/req (median) | user, per round | user / ${TARGETS[0]!.name}, per round (median) |\n|---|--:|--:|---|---|\n`)
    for (const [i, t] of TARGETS.entries()) {
      const own = samples[i]!
      const ratios = own.map((s, r) => s.user / samples[0]![r]!.user)
      process.stdout.write(`| ${t.name} | ${f1(median(own.map((s) => s.user)))} | ${f1(median(own.map((s) => s.system)))} | ${own.map((s) => f1(s.user)).join(' ')} | ${i === 0 ? '–' : `${ratios.map((x) => x.toFixed(2)).join(' ')} (${median(ratios).toFixed(2)}×)`} |\n`)
    }
  } finally {
    await stopChild(upstream.child)
  }
}

process.on('SIGINT', () => { process.exit(130) })
main().catch(async (err: unknown) => {
  process.stderr.write(`cpu-per-request: ${err instanceof Error ? err.message : String(err)}\n`)
  await Promise.all([...children].map(stopChild))
  process.exitCode = 1
})
