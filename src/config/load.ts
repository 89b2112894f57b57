import { readFile } from 'node:fs/promises'
import { extname } from 'node:path'
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } from 'yaml'
import type { Document, YAMLError } from 'yaml'
import type { z } from 'zod'
import { ConfigError } from '../errors.ts'
import type { ConfigIssue } from '../errors.ts'
import { expandEnv, isWholeReference } from './env.ts'
import { configSchema } from './schema.ts'
import { configPath, deepFreeze, rememberEnvPaths } from './path.ts'
import type { Config } from './schema.ts'

type Path = ReadonlyArray<string | number>

/** A parsed document and what it takes to point at a line in it. */
interface Source {
  value: unknown
  /** Paths whose value came from the environment: never echoed back (they may be secrets). */
  fromEnv: Set<string>
  /** Those values themselves: a schema may move them (a lower-cased key) and an alias copies them. */
  envValues: Set<string>
  /** Lazily built for JSON, which is parsed by JSON.parse for its stricter grammar. */
  lines: () => { doc: Document, counter: LineCounter }
}

/**
 * Reads a config file (YAML, or JSON when it ends in `.json`), substitutes
 * `${ENV}` references and validates it. Every failure, an unreadable file
 * included, is a `ConfigError` naming the file.
 *
 * @example
 * const config = await loadConfigFile('config/outrider.yaml')
 */
export async function loadConfigFile (file: string, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    // `ENOENT: no such file or directory, open 'x'`: the file is already named by the error.
    const reason = (err as Error).message.split(',')[0]
    throw new ConfigError(file, [{ path: '', expected: `a readable config file (${reason})` }], { cause: err })
  }
  return parseConfig(text, file, env)
}

/**
 * Parses and validates config `text`; `file` decides the format and names the
 * source in errors; `env` (default `process.env`) resolves `${NAME}`.
 * References are substituted after parsing, in string values only, so an
 * environment value cannot change the document's structure. The result is deep-frozen: a Snapshot shares it with every request.
 *
 * @example
 * parseConfig('clusters: []\nroutes: []\n', 'inline.yaml').listen.port // 8080
 */
export function parseConfig (text: string, file: string, env: NodeJS.ProcessEnv = process.env): Config {
  if (text.trim() === '') throw new ConfigError(file, [{ path: '', expected: EMPTY, line: 1 }])
  const source = extname(file).toLowerCase() === '.json' ? readJson(text, file, env) : readYaml(text, file, env)
  if (source.value === null || source.value === undefined) throw new ConfigError(file, [{ path: '', expected: EMPTY, line: 1 }])
  const result = configSchema.safeParse(source.value, { error: expectedFor })
  if (!result.success) {
    throw new ConfigError(file, result.error.issues.flatMap((issue) => toIssues(issue, source)), { cause: result.error })
  }
  const config = deepFreeze(result.data)
  rememberEnvPaths(config, source.fromEnv, source.envValues)
  return config
}

const EMPTY = 'a config document (the file is empty; {} alone means all defaults)'

function readYaml (text: string, file: string, env: NodeJS.ProcessEnv): Source {
  const counter = new LineCounter()
  const doc = parseDocument(text, { lineCounter: counter })
  if (doc.errors.length > 0) throw new ConfigError(file, doc.errors.map(yamlIssue(text)), { cause: doc.errors[0] })
  const seen: EnvSeen = { fromEnv: new Set(), envValues: new Set() }
  const issues: ConfigIssue[] = []
  expandNode(doc.contents, [], env, (path, offset, error) => {
    issues.push({ path: configPath(path), expected: error, line: lineOfOffset(counter, offset) })
  }, seen)
  if (issues.length > 0) throw new ConfigError(file, issues)
  return { value: doc.toJS(), ...seen, lines: () => ({ doc, counter }) }
}

function readJson (text: string, file: string, env: NodeJS.ProcessEnv): Source {
  let value: unknown
  try {
    value = JSON.parse(text.replace(/^\uFEFF/, ''))
  } catch (err) {
    throw new ConfigError(file, [jsonIssue(err as Error)], { cause: err })
  }
  let lines: { doc: Document, counter: LineCounter } | undefined
  const source: Source = {
    value,
    fromEnv: new Set(),
    envValues: new Set(),
    lines: () => {
      if (lines !== undefined) return lines
      // JSON is YAML too: its nodes carry the source ranges JSON.parse does not keep.
      const counter = new LineCounter()
      lines = { doc: parseDocument(text, { lineCounter: counter, uniqueKeys: false }), counter }
      return lines
    },
  }
  const issues: ConfigIssue[] = []
  source.value = expandValue(value, [], env, (path, error) => issues.push(located(source, path, error)), source)
  if (issues.length > 0) throw new ConfigError(file, issues)
  return source
}

function yamlIssue (text: string): (err: YAMLError) => ConfigIssue {
  return (err) => {
    const line = err.linePos?.[0].line
    if (err.code === 'MULTIPLE_DOCS') return { path: '', expected: 'one YAML document (this file holds several, separated by ---)', line }
    let expected = `valid YAML: ${(err.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '')}`
    // `{ port: ${PORT} }`: braces are flow syntax, the likeliest cause on such a line.
    if (line !== undefined && /[{[][^\n]*\$\{/.test(text.split('\n')[line - 1] ?? '')) expected += ' (inside { } or [ ], quote a ${NAME} reference: "${NAME}")'
    return { path: '', expected, line }
  }
}

function jsonIssue (err: Error): ConfigIssue {
  // V8 may quote the whole input after the first `, "`: keep only the reason.
  const reason = (err.message.split(', "')[0] ?? err.message).replace(/ in JSON at position \d+.*$/, '')
  const line = /\(line (\d+) column \d+\)/.exec(err.message)?.[1]
  return { path: '', expected: `valid JSON: ${reason}`, line: line === undefined ? undefined : Number(line) }
}

/**
 * Substitutes references in the scalar nodes of a YAML document (values, never
 * keys). A plain, unquoted scalar that is one reference gets the type YAML would
 * give the literal: `port: ${PORT:-8080}` is a number, `'${PORT}'` a string.
 */
/**
 * Whether an expanded value is hidden wherever it shows (see envValues): only
 * what the environment gave (a `:-default` is in the file anyway), and not a
 * short word such as `info` or `true` that unrelated fields hold too.
 */
function worthMatching (value: string, used: { fromEnv: boolean }): boolean {
  return used.fromEnv && value.length >= 6
}

/** What substitution recorded: where environment values went, and the values. */
type EnvSeen = Pick<Source, 'fromEnv' | 'envValues'>

function expandNode (node: unknown, path: Path, env: NodeJS.ProcessEnv, onError: (path: Path, offset: number | undefined, error: string) => void, seen: EnvSeen): void {
  if (isMap(node)) {
    for (const pair of node.items) expandNode(pair.value, [...path, keyOf(pair.key)], env, onError, seen)
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => expandNode(item, [...path, i], env, onError, seen))
  } else if (isScalar(node) && typeof node.value === 'string') {
    const used = { fromEnv: false }
    const r = expandEnv(node.value, env, used)
    if ('error' in r) return onError(path, node.range?.[0], r.error)
    if (r.value === node.value) return
    seen.fromEnv.add(configPath(path))
    if (worthMatching(r.value, used)) seen.envValues.add(r.value)
    node.value = node.type === 'PLAIN' && isWholeReference(node.value) ? plainScalar(r.value) : r.value
  }
}

/** The same for a JSON value, where every string is quoted and so stays a string. */
function expandValue (value: unknown, path: Path, env: NodeJS.ProcessEnv, onError: (path: Path, error: string) => void, seen: EnvSeen): unknown {
  if (typeof value === 'string') {
    const used = { fromEnv: false }
    const r = expandEnv(value, env, used)
    if ('error' in r) { onError(path, r.error); return value }
    if (r.value !== value) { seen.fromEnv.add(configPath(path)); if (worthMatching(r.value, used)) seen.envValues.add(r.value) }
    return r.value
  }
  if (Array.isArray(value)) {
    value.forEach((v, i) => { value[i] = expandValue(v, [...path, i], env, onError, seen) })
  } else if (typeof value === 'object' && value !== null) {
    // In place: assigning an own `__proto__` key on a fresh object would set its prototype.
    const obj = value as Record<string, unknown>
    for (const k of Object.keys(obj)) obj[k] = expandValue(obj[k], [...path, k], env, onError, seen)
  }
  return value
}

const NUMBER = /^[-+]?\d+(\.\d+)?$/

function plainScalar (s: string): unknown {
  if (NUMBER.test(s)) return Number(s)
  if (s === 'true' || s === 'false') return s === 'true'
  return s
}

function keyOf (key: unknown): string {
  return String(isScalar(key) ? key.value : key)
}

/**
 * Zod's messages say what went wrong ("Invalid input: expected number");
 * config errors say what was expected there (`a number`), in config words.
 * Schema-level messages win over this map, so the schema's own wording stays.
 */
function expectedFor (iss: z.core.$ZodRawIssue): string | undefined {
  switch (iss.code) {
    case 'unrecognized_keys': {
      // Only the known keys: `toIssues` words one issue per unknown key around them.
      const shape = (iss.inst?._zod.def as { shape?: Record<string, unknown> } | undefined)?.shape
      return shape === undefined ? undefined : Object.keys(shape).join(', ')
    }
    case 'invalid_type': return TYPES[iss.expected] ?? `a value of type ${iss.expected}`
    case 'too_small':
    case 'too_big': return bound(iss.code === 'too_small', iss.origin, Number(iss.code === 'too_small' ? iss.minimum : iss.maximum), iss.inclusive !== false)
    case 'invalid_value': return oneOf(iss.values)
    case 'invalid_format':
      if (iss.format === 'starts_with') return `a string starting with "${(iss as { prefix?: string }).prefix}"`
      if (iss.format === 'regex') return `a string matching ${(iss as { pattern?: string }).pattern}`
      return `a valid ${iss.format}`
    case 'invalid_union': {
      if (iss.discriminator !== undefined) return oneOf((iss as { options?: readonly unknown[] }).options ?? [])
      // Each branch's own expectation: `"auto" or a number`.
      const branches = iss.errors.map((errs) => errs.find((e) => e.path.length === 0)?.message).filter((m) => m !== undefined)
      return branches.length > 0 ? [...new Set(branches)].join(' or ') : undefined
    }
    case 'not_multiple_of': return `a multiple of ${iss.divisor}`
    default: return undefined
  }
}

const TYPES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  array: 'a list',
  object: 'a map',
  record: 'a map',
}

function bound (min: boolean, origin: string, n: number, inclusive: boolean): string | undefined {
  if (origin === 'number') return `a number ${min ? (inclusive ? '>=' : '>') : (inclusive ? '<=' : '<')} ${n}`
  const count = inclusive ? n : n + (min ? 1 : -1)
  if (origin === 'array') return min && count === 1 ? 'a non-empty list' : `a list of ${min ? 'at least' : 'at most'} ${count} items`
  if (origin === 'string') return min && count === 1 ? 'a non-empty string' : `a string of ${min ? 'at least' : 'at most'} ${count} characters`
  return undefined
}

function oneOf (values: readonly unknown[]): string {
  const shown = values.map((v) => JSON.stringify(v))
  return shown.length === 1 ? (shown[0] as string) : `one of ${shown.join(', ')}`
}

/** One zod issue → config issues (one per unknown key), with what was found and where. */
function toIssues (issue: z.core.$ZodIssue, source: Source): ConfigIssue[] {
  const path = issue.path.map((p) => typeof p === 'number' ? p : String(p))
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => located(source, [...path, key], unknownKey(key, issue.message)))
  }
  return [located(source, path, issue.message + found(issue.code, path, source))]
}

function located (source: Source, path: Path, expected: string): ConfigIssue {
  const { doc, counter } = source.lines()
  return { path: configPath(path), expected, line: lineAt(doc, counter, path) }
}

function unknownKey (key: string, known: string): string {
  const close = known.split(', ').filter((k) => k !== '' && editDistance(k.toLowerCase(), key.toLowerCase()) <= Math.max(1, Math.floor(k.length / 3)))
  const hint = close.length > 0 ? `did you mean "${close[0]}"? ` : ''
  return `no key "${key}" here (${hint}known keys: ${known || 'none'})`
}

/** Edit distance counting a swap of neighbours as one edit (`prot` → `port`), for "did you mean". */
function editDistance (a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => i === 0 ? j : j === 0 ? i : 0))
  const at = (i: number, j: number): number => (d[i] as number[])[j] as number
  for (let i = 1; i <= a.length; i++) {
    const row = d[i] as number[]
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + (a[i - 1] === b[j - 1] ? 0 : 1))
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(at(i, j), at(i - 2, j - 2) + 1)
    }
  }
  return at(a.length, b.length)
}

/** ` (got "ftp://x")`: what the document held, unless it came from the environment. */
function found (code: string, path: Path, source: Source): string {
  if (code === 'custom') return '' // the schema's own message already says what it found
  let value = source.value
  for (const p of path) value = typeof value === 'object' && value !== null ? (value as Record<string | number, unknown>)[p] : undefined
  if (value === undefined) return ' (missing)'
  if (source.fromEnv.has(configPath(path))) return ' (got a substituted ${…} value, not shown)'
  if (typeof value === 'object' && value !== null) {
    return code === 'invalid_type' || code === 'invalid_union' ? ` (got ${Array.isArray(value) ? 'a list' : 'a map'})` : ''
  }
  const shown = JSON.stringify(value) ?? String(value)
  return ` (got ${shown.length > 60 ? `${shown.slice(0, 57)}...` : shown})`
}

/**
 * The 1-based line of `path` in the document: the line of its key (or list
 * item), or of its nearest ancestor that exists when the path does not (a
 * missing key is reported where its parent is).
 */
function lineAt (doc: Document, counter: LineCounter, path: Path): number | undefined {
  let node: unknown = doc.contents
  let offset = (node as { range?: number[] } | null)?.range?.[0]
  for (const p of path) {
    if (isAlias(node)) node = node.resolve(doc)
    if (isMap(node)) {
      const pair = node.items.find((item) => keyOf(item.key) === String(p))
      if (pair === undefined) break
      offset = (pair.key as { range?: number[] } | null)?.range?.[0] ?? offset
      node = pair.value
    } else if (isSeq(node) && typeof p === 'number' && p < node.items.length) {
      node = node.items[p]
      offset = (node as { range?: number[] } | null)?.range?.[0] ?? offset
    } else break
  }
  return lineOfOffset(counter, offset)
}

function lineOfOffset (counter: LineCounter, offset: number | undefined): number | undefined {
  return offset === undefined ? undefined : counter.linePos(offset).line
}
