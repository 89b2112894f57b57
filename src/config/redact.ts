import type { Config } from './schema.ts'
import { configPath, envPaths } from './path.ts'

// Field names that hold credentials whatever plugin declares them.
const SECRET_KEY = /(secret|password|passwd|token|private.?key|credentials?|api.?key)$/i

/**
 * A copy of `config` fit to show on the admin `/config` endpoint: values that
 * came from `${VAR}` references, fields named like credentials, and passwords
 * inside URLs (`redis://user:pw@host`) are replaced by "[redacted]".
 */
export function redactConfig (config: Config): unknown {
  const fromEnv = envPaths(config)
  const walk = (value: unknown, path: Array<string | number>, key: string | undefined): unknown => {
    if (fromEnv.has(configPath(path)) || (key !== undefined && SECRET_KEY.test(key) && typeof value === 'string')) return '[redacted]'
    if (typeof value === 'string') return redactUrl(value)
    if (Array.isArray(value)) return value.map((v, i) => walk(v, [...path, i], undefined))
    if (value !== null && typeof value === 'object') {
      const out: Record<string, unknown> = {}
      for (const [k, v] of Object.entries(value)) out[k] = walk(v, [...path, k], k)
      return out
    }
    return value
  }
  return walk(config, [], undefined)
}

function redactUrl (s: string): string {
  const at = s.indexOf('@')
  const scheme = s.indexOf('://')
  if (at === -1 || scheme === -1 || at < scheme) return s
  try {
    const u = new URL(s)
    if (u.password === '') return s
    u.password = 'redacted'
    return u.toString()
  } catch {
    return s
  }
}
