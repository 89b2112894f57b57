import { createHash } from 'node:crypto'
import { parseConfig } from '../src/config/load.ts'
import type { Config } from '../src/config/schema.ts'
import { ConfigError, type ConfigIssue } from '../src/errors.ts'

/** A config document as JSON: what is stored, pushed and shown (never the parsed, defaulted form). */
export type ConfigDocument = Record<string, unknown>

/**
 * `${NAME}` references are resolved by each data plane from its own
 * environment (secrets never reach the control plane), so here every
 * reference resolves to itself: the document is checked as written.
 */
const SELF_ENV: NodeJS.ProcessEnv = new Proxy({}, { get: (_target, name) => typeof name === 'string' ? `\${${name}}` : undefined })

export type Validation = { ok: true, config: Config } | { ok: false, issues: ConfigIssue[] }

/**
 * Validates a document with the data plane's own loader and schema
 * (`parseConfig`), so the operator API refuses exactly what a data plane
 * would, with the same `path` and `expected` wording.
 *
 * @example
 * validateDocument({ routes: [{ name: 'a', cluster: 'nope' }] })
 * // { ok: false, issues: [{ path: 'routes[0].cluster', expected: 'the name of a declared cluster …' }] }
 */
export function validateDocument (document: unknown): Validation {
  if (typeof document !== 'object' || document === null || Array.isArray(document)) {
    return { ok: false, issues: [{ path: '', expected: 'a config document (a JSON object)' }] }
  }
  try {
    return { ok: true, config: parseConfig(JSON.stringify(document), 'control-plane.json', SELF_ENV) }
  } catch (err) {
    // Lines would point into a JSON text the operator never saw: paths say it all.
    if (err instanceof ConfigError) return { ok: false, issues: err.issues.map((i) => ({ path: i.path, expected: i.expected })) }
    throw err
  }
}

/** Parses JSON text from a request; the issue names `what` it should have been. */
export function parseJsonText (text: string, what: string): { ok: true, value: unknown } | { ok: false, issues: ConfigIssue[] } {
  try {
    return { ok: true, value: JSON.parse(text) }
  } catch (err) {
    return { ok: false, issues: [{ path: '', expected: `${what} as JSON (${(err as Error).message.split('\n')[0] ?? 'unparsable'})` }] }
  }
}

/** JSON with object keys sorted at every level: equal documents, equal text. */
export function canonicalJson (value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return v
    const sorted: Record<string, unknown> = {}
    for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k]
    return sorted
  })
}

/** sha256 (hex) of the canonical JSON: the document's identity whatever its version. */
export function contentHash (document: unknown): string {
  return createHash('sha256').update(canonicalJson(document)).digest('hex')
}
