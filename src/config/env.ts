/**
 * `${NAME}` and `${NAME:-default}` references in config strings (ARCHITECTURE
 * §3: secrets come from the environment, not the file). `$${` is a literal
 * `${`. NAME is upper case (the convention for environment variables), so
 * lower-case `${request_id}`-style variables are left for plugins that expand
 * them per request (e.g. `headers`). As in the shell, `:-` also applies when the variable is set but empty.
 * One alternation, leftmost first: an escape, a well-formed reference, or a
 * stray `${` (reported, so a broken reference never passes as text).
 */
const REFERENCE = /\$\$\{|\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}|\$\{(?![a-z][a-z0-9_]*\})/g

/** A string that is one reference and nothing else, so its value may be typed (see `load.ts`). */
const WHOLE = /^\$\{[A-Z_][A-Z0-9_]*(?::-[^}]*)?\}$/

export type Expansion = { value: string } | { error: string }

/**
 * Replaces every reference in `text` from `env`. Returns the new string, or
 * what was expected instead (worded for a `ConfigIssue`) at the first
 * reference that cannot be resolved.
 *
 * @example
 * expandEnv('${HOST:-localhost}:$${PORT}', {}) // { value: 'localhost:${PORT}' }
 * expandEnv('${TOKEN}', {}) // { error: 'the environment variable TOKEN to be set …' }
 */
export function expandEnv (text: string, env: NodeJS.ProcessEnv = process.env, used?: { fromEnv: boolean }): Expansion {
  if (!text.includes('${')) return { value: text }
  let error: string | undefined
  const value = text.replace(REFERENCE, (ref, name: string | undefined, fallback: string | undefined) => {
    if (ref === '$${') return '${'
    if (name === undefined) {
      error ??= 'a reference written ${NAME} or ${NAME:-default}, NAME being upper-case letters, digits and _ (write $${ for a literal ${)'
      return ref
    }
    const set = env[name]
    if (set !== undefined && (set !== '' || fallback === undefined)) {
      // The caller learns whether the environment (not a default) gave a value.
      if (used !== undefined) used.fromEnv = true
      return set
    }
    if (fallback !== undefined) return fallback
    error ??= `the environment variable ${name} to be set (or a default: \${${name}:-value}; write $\${ for a literal \${)`
    return ref
  })
  return error === undefined ? { value } : { error }
}

/** True when `text` is exactly one `${NAME}` / `${NAME:-default}` reference. */
export function isWholeReference (text: string): boolean {
  return WHOLE.test(text)
}
