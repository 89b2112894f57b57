import { ConfigError } from '../errors.ts'
import { loadConfigFile, parseConfig } from './load.ts'
import { envPaths, envValues } from './path.ts'
import type { ValidationJob, ValidationReply } from './off-thread.ts'

/**
 * One validation job, as the validation process runs it: read, parse and
 * validate, and say how it went as plain data. zod, yaml and every plugin
 * schema live and die with that process.
 */
export async function validateJob (job: ValidationJob): Promise<ValidationReply> {
  try {
    const config = job.text === undefined ? await loadConfigFile(job.file, job.env) : parseConfig(job.text, job.file, job.env)
    return { ok: true, config, envPaths: [...envPaths(config)], envValues: [...envValues(config)] }
  } catch (err) {
    if (err instanceof ConfigError) return { ok: false, file: err.file, issues: err.issues }
    return { ok: false, message: err instanceof Error ? err.message : String(err) }
  }
}
