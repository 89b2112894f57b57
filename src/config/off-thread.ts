import { fork } from 'node:child_process'
import { getCompileCacheDir } from 'node:module'
import { fileURLToPath } from 'node:url'
import { ConfigError, type ConfigIssue } from '../errors.ts'
import { deepFreeze, rememberEnvPaths } from './path.ts'
import type { Config } from './schema.ts'

/**
 * Config validation in a short-lived child process. Three reasons:
 *
 * - The event loop serving traffic never stalls while a large config is
 *   parsed and validated (a reload, a push from the control plane).
 * - zod, yaml and the schemas of every plugin never load into the serving
 *   isolate. They are ~8 MiB of live heap and ~40% of its objects, which
 *   every major GC walks again: with 64 KiB responses a proxy runs several
 *   major GCs a second (bench/RESULTS.md, "Heap").
 * - Its memory goes back to the system when it exits. A worker thread, as
 *   this used to be, left ~25 MiB of anonymous memory in the proxy's RSS
 *   after it had exited (bench/RESULTS.md, "Config validation in a child
 *   process").
 *
 * What comes back is the same Config `parseConfig` returns (plain data, deep
 * frozen), or the same ConfigError.
 */

/** What the process is asked: a file to read, or a document already in hand. */
export interface ValidationJob {
  readonly file: string
  readonly text?: string
  readonly env: Record<string, string | undefined>
}

export type ValidationReply =
  | { ok: true, config: Config, envPaths: string[], envValues: string[] }
  | { ok: false, file: string, issues: ConfigIssue[] }
  | { ok: false, file?: undefined, message: string }

const ENTRY = fileURLToPath(new URL('./validation-process.js', import.meta.url))

/** A config document bigger than this much heap is refused, not allowed to take the process down. */
const HEAP_LIMIT_MB = 512

/**
 * A validation that has not answered by then (it takes well under a second)
 * is stopped and refused: reloads are serialised, and one that never settled
 * would block every later one.
 */
const DEADLINE_MS = 60_000

/** `loadConfigFile`, off the serving thread. */
export function loadConfigOffThread (file: string, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  return validateOffThread({ file, env: { ...env } })
}

/** `parseConfig`, off the serving thread. */
export function parseConfigOffThread (text: string, file: string, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  return validateOffThread({ file, text, env: { ...env } })
}

/** The thread's bounds; other values only in tests, which cannot build a 512 MiB config. */
export interface ValidationBounds { readonly heapLimitMb: number, readonly deadlineMs: number }
const BOUNDS: ValidationBounds = { heapLimitMb: HEAP_LIMIT_MB, deadlineMs: DEADLINE_MS }

export function validateOffThread (job: ValidationJob, bounds: ValidationBounds = BOUNDS): Promise<Config> {
  return new Promise((resolve, reject) => {
    let settled = false
    let stderr = ''
    // Only the heap bound of ours: the proxy's own Node flags (an inspector
    // port, say) are not for this process. The compile cache as this process
    // has it (validation-process.js).
    const child = fork(ENTRY, getCompileCacheDir() === undefined ? [] : ['--compile-cache'], {
      execArgv: [`--max-old-space-size=${bounds.heapLimitMb}`],
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    })
    child.stderr?.setEncoding('utf8').on('data', (s: string) => { stderr = (stderr + s).slice(-4096) })
    const deadline = setTimeout(() => { settle(new Error(`${job.file}: config validation did not finish within ${bounds.deadlineMs / 1000}s`)) }, bounds.deadlineMs)
    const settle = (err: Error | undefined, config?: Config): void => {
      if (settled) return
      settled = true
      clearTimeout(deadline)
      // Done with it: it exits once disconnected. Stopped if it still works.
      if (err !== undefined) child.kill('SIGKILL')
      else if (child.connected) child.disconnect()
      if (err !== undefined) reject(err)
      else resolve(config as Config)
    }
    child.once('message', (reply: ValidationReply) => {
      if (reply.ok) {
        const config = deepFreeze(reply.config)
        rememberEnvPaths(config, new Set(reply.envPaths), new Set(reply.envValues))
        settle(undefined, config)
      } else if (reply.file !== undefined) {
        settle(new ConfigError(reply.file, reply.issues))
      } else {
        settle(new Error(`${job.file}: ${reply.message}`))
      }
    })
    child.once('error', (err) => { settle(new Error(`${job.file}: config validation failed (${err.message})`, { cause: err })) })
    // 'close', not 'exit': it waits for the IPC channel, so a reply sent just
    // before the exit is read first.
    child.once('close', (code, signal) => {
      // V8 reports a heap that hit its bound on stderr, then aborts.
      if (/heap limit|heap out of memory/i.test(stderr)) settle(new ConfigError(job.file, [{ path: '', expected: `a document that validates within ${bounds.heapLimitMb} MiB of memory` }]))
      else settle(new Error(`${job.file}: config validation stopped (${signal ?? `exit code ${code}`})${stderr === '' ? '' : `: ${stderr.trim().split('\n').at(-1)}`}`))
    })
    child.send(job, (err) => { if (err !== null) settle(new Error(`${job.file}: config validation could not start (${err.message})`, { cause: err })) })
  })
}
