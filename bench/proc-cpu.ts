/**
 * CPU time from /proc, as every bench reads it. Linux only; the callers say
 * what an unreadable /proc means for them.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'

/** Clock ticks per second: the unit of /proc's CPU times. */
export const CLK_TCK = ((): number => {
  try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100 } catch { return 100 }
})()

/** User and system CPU seconds of a process, every thread included. Throws when /proc cannot be read. */
export function processCpu (pid: number): { user: number, system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // After the command name: state is field 3, utime 14 and stime 15 (proc(5)).
  return { user: Number(fields[11]) / CLK_TCK, system: Number(fields[12]) / CLK_TCK }
}

/**
 * Busy CPU seconds of the whole machine (every state but idle and iowait),
 * from /proc/stat; undefined when it cannot be read. Minus what our own
 * processes used, it shows load from anything else on the machine.
 */
export function machineBusySeconds (): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] as string
    const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number) as number[]
    const busy = (user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)
    return Number.isFinite(busy) ? busy / CLK_TCK : undefined
  } catch {
    return undefined
  }
}

/** Share of all CPUs busy over `ms` (0..1); 0 when /proc/stat cannot be read. */
export async function machineBusyShare (ms: number): Promise<number> {
  const b0 = machineBusySeconds()
  await new Promise((resolve) => setTimeout(resolve, ms))
  const b1 = machineBusySeconds()
  return b0 === undefined || b1 === undefined ? 0 : Math.min(1, (b1 - b0) / (ms / 1000) / availableParallelism())
}

/**
 * Waits (up to `seconds`) until under 10% of the machine is busy. Between
 * runs our own processes are idle, so any load is someone else's and would
 * land in the numbers. Never fails: after the wait it measures anyway, and
 * says so through `progress`. `stop` ends the wait early (an interrupted run).
 */
export async function waitUntilQuiet (seconds: number, label: string, progress: (msg: string) => void, stop: () => boolean = () => false): Promise<void> {
  if (seconds <= 0) return
  const until = performance.now() + seconds * 1000
  let said = false
  for (;;) {
    const busy = await machineBusyShare(1000)
    if (busy < 0.1 || stop()) return
    if (performance.now() >= until) { progress(`${label} the machine is still ${Math.round(busy * 100)}% busy (all CPUs); measuring anyway`); return }
    if (!said) { progress(`${label} waiting for other load to stop (${Math.round(busy * 100)}% of all CPUs busy)`); said = true }
  }
}
