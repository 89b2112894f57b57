import type { Config } from './schema.ts'

/**
 * What the data plane keeps of config parsing once validation is done: the
 * path format shared by errors and redaction, which paths came from the
 * environment, and freezing. No zod, no yaml: see off-thread.ts.
 */

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/

/** `routes[0].plugins[2].config.points`; keys that are not identifiers as `headers["x-a"]`. */
export function configPath (path: ReadonlyArray<string | number>): string {
  let out = ''
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`
    else if (IDENTIFIER.test(p)) out += out === '' ? p : `.${p}`
    else out += `[${JSON.stringify(p)}]`
  }
  return out
}

const ENV_PATHS = new WeakMap<Config, ReadonlySet<string>>()
const ENV_VALUES = new WeakMap<Config, ReadonlySet<string>>()

/**
 * Paths (as in ConfigError, e.g. `routes[0].plugins[1].config.secret`) whose
 * value came from a `${VAR}` reference: secrets live there, so they are never
 * shown back (admin `/config`, error messages).
 */
export function envPaths (config: Config): ReadonlySet<string> {
  return ENV_PATHS.get(config) ?? new Set()
}

/**
 * The values substituted from the environment, wherever the schema put them
 * (a record's keys may be lower-cased, a YAML alias copies a value): what a
 * path cannot follow, the value still tells.
 */
export function envValues (config: Config): ReadonlySet<string> {
  return ENV_VALUES.get(config) ?? new Set()
}

/** Records the environment-sourced paths and values of `config`. */
export function rememberEnvPaths (config: Config, paths: ReadonlySet<string>, values: ReadonlySet<string>): void {
  if (paths.size > 0) ENV_PATHS.set(config, paths)
  if (values.size > 0) ENV_VALUES.set(config, values)
}

/** Freezes plain objects and arrays only: a frozen RegExp or Map would break its own methods. */
export function deepFreeze<T> (value: T): T {
  if (typeof value !== 'object' || value === null || Object.isFrozen(value)) return value
  const proto: unknown = Object.getPrototypeOf(value)
  if (!Array.isArray(value) && proto !== Object.prototype && proto !== null) return value
  Object.freeze(value)
  for (const v of Object.values(value)) deepFreeze(v)
  return value
}
