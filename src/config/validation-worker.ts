import { parentPort, workerData } from 'node:worker_threads'
import { ConfigError } from '../errors.ts'
import { loadConfigFile, parseConfig } from './load.ts'
import { envPaths } from './path.ts'
import type { ValidationJob, ValidationReply } from './off-thread.ts'

// One job per thread: read, parse and validate, answer, exit. zod, yaml and
// every plugin schema live and die with this thread.
const job = workerData as ValidationJob

async function run (): Promise<ValidationReply> {
  try {
    const config = job.text === undefined ? await loadConfigFile(job.file, job.env) : parseConfig(job.text, job.file, job.env)
    return { ok: true, config, envPaths: [...envPaths(config)] }
  } catch (err) {
    if (err instanceof ConfigError) return { ok: false, file: err.file, issues: err.issues }
    return { ok: false, message: err instanceof Error ? err.message : String(err) }
  }
}

void run().then((reply) => { parentPort?.postMessage(reply) })
