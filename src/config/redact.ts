import type { Config } from './schema.ts'
import { configPath, envPaths, envValues } from './path.ts'

// Field names that hold credentials whatever plugin declares them (an
// `Authorization` a headers plugin sets among them).
const SECRET_KEY = /(secret|password|passwd|token|private.?key|credentials?|api.?key|authorization)$/i
// A JWK's secret and private members (RFC 7518 §6.3.2, §6.4.1, §6.2.2; RFC 8037 §2).
const JWK_SECRET = new Set(['k', 'd', 'p', 'q', 'dp', 'dq', 'qi', 'oth'])

/**
 * A copy of `config` fit to show on the admin `/config` endpoint: values that
 * came from `${VAR}` references (found by path, or by value where the schema
 * moved them), fields named like credentials, a cookie a plugin sends, a
 * JWK's secret members, and passwords inside URLs (`redis://user:pw@host`)
 * are replaced by "[redacted]".
 */
export function redactConfig (config: Config): unknown {
  const fromEnv = envPaths(config)
  const values = envValues(config)
  const walk = (value: unknown, path: Array<string | number>, key: string | undefined, jwk: boolean): unknown => {
    if (fromEnv.has(configPath(path))) return '[redacted]'
    if (typeof value === 'string') {
      if (values.has(value) || (key !== undefined && secretField(key, value, jwk))) return '[redacted]'
      return redactUrl(value)
    }
    if (Array.isArray(value)) return value.map((v, i) => walk(v, [...path, i], undefined, false))
    if (value !== null && typeof value === 'object') {
      const isJwk = typeof (value as { kty?: unknown }).kty === 'string'
      const out: Record<string, unknown> = {}
      for (const [k, v] of Object.entries(value)) out[k] = walk(v, [...path, k], k, isJwk)
      return out
    }
    return value
  }
  return walk(config, [], undefined, false)
}

function secretField (key: string, value: string, inJwk: boolean): boolean {
  if (SECRET_KEY.test(key)) return true
  if (inJwk && JWK_SECRET.has(key)) return true
  // A Cookie header's value (`session=…`), not a cookie's name (consistent hashing's `cookie: session`).
  return key.toLowerCase() === 'cookie' && value.includes('=')
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
