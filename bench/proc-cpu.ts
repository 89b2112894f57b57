/**
 * CPU time from /proc, as every bench reads it. Linux only; the callers say
 * what an unreadable /proc means for them.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

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
