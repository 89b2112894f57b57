import { getCompileCacheDir } from 'node:module'
import { Worker } from 'node:worker_threads'
import { ConfigError, type ConfigIssue } from '../errors.ts'
import { deepFreeze, rememberEnvPaths } from './path.ts'
import type { Config } from './schema.ts'

/**
 * Config validation on a short-lived worker thread. Two reasons:
 *
 * - The event loop serving traffic never stalls while a large config is
 *   parsed and validated (a reload, a push from the control plane).
 * - zod, yaml and the schemas of every plugin never load into the serving
 *   isolate. They are ~8 MiB of live heap and ~40% of its objects, which
 *   every major GC walks again: with 64 KiB responses a proxy runs several
 *   major GCs a second (bench/RESULTS.md, "Heap").
 *
 * What comes back is the same Config `parseConfig` returns (plain data, deep
 * frozen), or the same ConfigError.
 */

/** What the thread is asked: a file to read, or a document already in hand. */
export interface ValidationJob {
  readonly file: string
  readonly text?: string
  readonly env: Record<string, string | undefined>
}

export type ValidationReply =
  | { ok: true, config: Config, envPaths: string[] }
  | { ok: false, file: string, issues: ConfigIssue[] }
  | { ok: false, file?: undefined, message: string }

const WORKER = new URL('./validation-thread.js', import.meta.url)

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
    // Whether this thread has the compile cache on (validation-thread.js).
    const workerData = { ...job, compileCache: getCompileCacheDir() !== undefined }
    const worker = new Worker(WORKER, { workerData, resourceLimits: { maxOldGenerationSizeMb: bounds.heapLimitMb } })
    const deadline = setTimeout(() => { settle(new Error(`${job.file}: config validation did not finish within ${bounds.deadlineMs / 1000}s`)) }, bounds.deadlineMs)
    const settle = (err: Error | undefined, config?: Config): void => {
      if (settled) return
      settled = true
      clearTimeout(deadline)
      void worker.terminate()
      if (err !== undefined) reject(err)
      else resolve(config as Config)
    }
    worker.once('message', (reply: ValidationReply) => {
      if (reply.ok) {
        const config = deepFreeze(reply.config)
        rememberEnvPaths(config, new Set(reply.envPaths))
        settle(undefined, config)
      } else if (reply.file !== undefined) {
        settle(new ConfigError(reply.file, reply.issues))
      } else {
        settle(new Error(`${job.file}: ${reply.message}`))
      }
    })
    worker.once('error', (err: Error & { code?: string }) => {
      if (err.code === 'ERR_WORKER_OUT_OF_MEMORY') settle(new ConfigError(job.file, [{ path: '', expected: `a document that validates within ${bounds.heapLimitMb} MiB of memory` }]))
      else settle(new Error(`${job.file}: config validation failed (${err.message})`, { cause: err }))
    })
    worker.once('exit', (code) => { settle(new Error(`${job.file}: config validation stopped (thread exit ${code})`)) })
  })
}
