import { Value, percentDecode } from './normalize.ts'
import { extractBody, splitPairs } from './body.ts'
import { RULES } from './rules/index.ts'
import {
  INSPECTED_HEADERS, SCORES, STRUCTURED_HEADERS, STRUCTURED_HEADER_PREFIXES, type Family, type Location, type Part, type RequestFacts, type RequestRule,
  type Rule, type Severity, type ValueRule,
} from './rule.ts'
import type { WafConfig } from './schema.ts'

/** The request as the WAF reads it: what the client sent, before any plugin edited it. */
export interface RequestInput {
  readonly method: string
  /** Path as sent, without the query. */
  readonly path: string
  /** Query as sent, without `?`. */
  readonly query: string
  /** Header lines as sent, names lower-cased, repeats kept. */
  readonly headers: ReadonlyArray<readonly [string, string]>
}

export interface Match {
  readonly id: number
  readonly family: Family
  readonly severity: Severity
  /** Where it matched: `query:q`, `header:user-agent`, `path`, `request` … */
  readonly target: string
  /** The matched text, short and printable (never a whole body). */
  readonly excerpt: string
}

/** Matches so far and their anomaly score; one per rule (the first place it matched). */
export interface Inspection {
  readonly matches: Match[]
  /** Ids in `matches`: a rule that matched is not run again. */
  readonly matched: Set<number>
  score: number
  /** Query and form/multipart parameters seen. */
  argCount: number
}

/** The body, as the plugin could read it. */
export type BodyInput =
  | { readonly kind: 'none' }
  | { readonly kind: 'read', readonly data: Buffer }
  | { readonly kind: 'oversized' }
  /** Not inspected for a reason that is not the client's (no way to read it). */
  | { readonly kind: 'skipped' }

const EXCERPT = 64

/** A short, printable excerpt for logs: controls escaped, long matches cut. */
export function excerpt (s: string): string {
  const cut = s.length > EXCERPT ? `${s.slice(0, EXCERPT)}…` : s
  return cut.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
}

interface CompiledExclusion {
  readonly exact: string | undefined
  readonly prefix: string | undefined
  readonly ids: ReadonlySet<number> | undefined
  readonly families: ReadonlySet<Family> | undefined
}

/** Value rules for one kind of part, split by what they read. */
interface RuleLists {
  readonly values: readonly ValueRule[]
  readonly names: readonly ValueRule[]
}

const NONE: RuleLists = { values: [], names: [] }

function lists (rules: readonly ValueRule[]): RuleLists {
  return { values: rules, names: rules.filter((r) => r.names !== false) }
}

/**
 * The rules one route runs, chosen and arranged once per snapshot: filtered
 * by paranoia level and the disabled ids and families, and split by location
 * (and header name) so a value only meets the rules that read it. Patterns
 * themselves are module constants, compiled once per process.
 *
 * @example
 * const rules = new RuleSet(schema.parse({ paranoiaLevel: 2 }))
 * const r = rules.inspect({ method: 'GET', path: '/', query: 'id=1%27%20or%20%271%27%3D%271', headers: [['user-agent', 'Mozilla/5.0']] })
 * r.matches[0] // { id: 1602, family: 'sqli', severity: 'critical', target: 'query:id', excerpt: "'1' or '1'='1" }
 * rules.reached(r) // true: one critical match scores 5
 */
export class RuleSet {
  /** The rules that run, in order. */
  readonly rules: readonly Rule[]
  readonly threshold: number
  readonly #stopAtThreshold: boolean
  readonly #maxRounds: number
  readonly #maxJsonDepth: number
  readonly #limits: RequestFacts['limits']
  readonly #headRules: readonly RequestRule[]
  readonly #bodyRules: readonly RequestRule[]
  readonly #byLocation: Readonly<Record<Exclude<Location, 'header'>, RuleLists>>
  readonly #fileRules: readonly ValueRule[]
  readonly #byHeader: ReadonlyMap<string, RuleLists>
  /** Rules for standard headers with a fixed grammar: only those that read every header. */
  readonly #otherHeaders: RuleLists
  /** Rules for any other header (an application's own): as for INSPECTED_HEADERS. */
  readonly #customHeaders: RuleLists
  readonly #exclusions: readonly CompiledExclusion[]

  constructor (config: WafConfig) {
    const disabled = new Set(config.disabledRules)
    const families = new Set<Family>(config.disabledFamilies)
    // Rule 1015 is how `onOversizedBody: block` scores: it exists only then.
    this.rules = RULES.filter((r) => r.paranoia <= config.paranoiaLevel && !disabled.has(r.id) && !families.has(r.family) &&
      (r.id !== 1015 || config.onOversizedBody === 'block'))
    this.threshold = config.anomalyThreshold
    // In detect mode every match is worth logging; in block mode the first
    // verdict is enough, and stopping there bounds the work an attack costs.
    this.#stopAtThreshold = config.mode === 'block'
    this.#maxRounds = config.maxDecodeRounds
    this.#maxJsonDepth = config.maxJsonDepth
    this.#limits = config.limits

    const request = this.rules.filter((r): r is RequestRule => r.kind === 'request')
    this.#headRules = request.filter((r) => r.afterBody !== true)
    this.#bodyRules = request.filter((r) => r.afterBody === true)
    const value = this.rules.filter((r): r is ValueRule => r.kind === 'value')
    const at = (loc: Location): ValueRule[] => value.filter((r) => r.where.includes(loc))
    this.#byLocation = {
      path: lists(at('path')),
      query: lists(at('query')),
      cookie: lists(at('cookie')),
      body: lists(at('body').filter((r) => r.files !== true)),
    }
    this.#fileRules = at('body').filter((r) => r.files === true)
    const headerRules = at('header')
    const all = headerRules.filter((r) => r.headers === 'all')
    const named = new Set<string>(INSPECTED_HEADERS)
    for (const r of headerRules) if (Array.isArray(r.headers)) for (const h of r.headers) named.add(h)
    const byHeader = new Map<string, RuleLists>()
    for (const name of named) {
      byHeader.set(name, lists(headerRules.filter((r) => r.headers === 'all' ||
        (Array.isArray(r.headers) ? r.headers.includes(name) : INSPECTED_HEADERS.has(name)))))
    }
    this.#byHeader = byHeader
    this.#otherHeaders = all.length === 0 ? NONE : lists(all)
    this.#customHeaders = lists(headerRules.filter((r) => r.headers === 'all' || r.headers === undefined))
    this.#exclusions = config.exclusions.map((e) => ({
      exact: e.target.endsWith('*') ? undefined : e.target,
      prefix: e.target.endsWith('*') ? e.target.slice(0, -1) : undefined,
      ids: e.ruleIds === undefined ? undefined : new Set(e.ruleIds),
      families: e.families === undefined ? undefined : new Set(e.families),
    }))
  }

  /** A fresh, empty inspection. */
  start (): Inspection {
    return { matches: [], matched: new Set(), score: 0, argCount: 0 }
  }

  /** True once `insp` has reached the threshold. */
  reached (insp: Inspection): boolean {
    return insp.score >= this.threshold
  }

  /**
   * Inspects the request head (request-level rules, headers, cookies, path,
   * query) into `insp`. The body comes separately, so a head that is already
   * blocked never makes the proxy wait for (and buffer) its body.
   */
  inspectHead (req: RequestInput, insp: Inspection): void {
    const facts = this.#facts(req, insp, { kind: 'none' }, [])
    for (const rule of this.#headRules) {
      if (this.#stop(insp)) return
      if (this.#excluded(rule, rule.target)) continue
      const found = rule.check(facts)
      if (found !== undefined) this.#record(insp, rule, rule.target, found)
    }
    for (const [name, value] of req.headers) {
      if (this.#stop(insp)) return
      if (name === 'cookie') { this.#cookies(value, insp); continue }
      if (value === '') continue
      const rules = this.#byHeader.get(name) ?? (isStructured(name) ? this.#otherHeaders : this.#customHeaders)
      if (rules.values.length === 0) continue
      this.#part(insp, rules.values, {
        location: 'header', name, target: `header:${name}`, isName: false, urlEncoded: false, file: undefined,
        value: new Value(value, false, this.#maxRounds),
      })
    }
    if (req.path !== '' && !this.#stop(insp)) {
      this.#part(insp, this.#byLocation.path.values, {
        location: 'path', name: '', target: 'path', isName: false, urlEncoded: true, file: undefined,
        value: new Value(req.path, false, this.#maxRounds),
      })
    }
    if (req.query !== '') {
      const pairs = splitPairs(req.query)
      insp.argCount += pairs.length
      for (const [name, value] of pairs) {
        if (this.#stop(insp)) return
        this.#pair('query', name, value, true, insp)
      }
    }
  }

  /**
   * Inspects the body (or records why it could not be) and runs the rules
   * that need the body's facts. Call once per request, after inspectHead,
   * even without a body.
   */
  inspectBody (req: RequestInput, body: BodyInput, contentType: string | undefined, insp: Inspection): void {
    let problems: readonly string[] = []
    if (body.kind === 'read' && body.data.length > 0 && !this.#stop(insp)) {
      const b = extractBody(contentType, body.data, this.#maxJsonDepth)
      problems = b.problems
      insp.argCount += b.argCount
      for (const f of b.fields) {
        if (this.#stop(insp)) break
        if (f.value === '') continue
        const target = f.name === '' ? 'body' : `body:${f.form ? decodeName(f.name) : f.name}`
        const rules = f.file === 'content' ? this.#fileRules : f.isName ? this.#byLocation.body.names : this.#byLocation.body.values
        if (rules.length === 0) continue
        this.#part(insp, f.file === 'name' ? [...this.#fileRules, ...rules] : rules, {
          location: 'body', name: f.name, target, isName: f.isName, urlEncoded: f.form, file: f.file,
          value: new Value(f.value, f.form, this.#maxRounds),
        })
      }
    }
    const facts = this.#facts(req, insp, body, problems as RequestFacts['bodyProblems'])
    for (const rule of this.#bodyRules) {
      if (this.#stop(insp)) return
      if (this.#excluded(rule, rule.target)) continue
      const found = rule.check(facts)
      if (found !== undefined) this.#record(insp, rule, rule.target, found)
    }
  }

  /** Head and body in one call (tests, and callers that already hold the body). */
  inspect (req: RequestInput, body: BodyInput = { kind: 'none' }): Inspection {
    const insp = this.start()
    this.inspectHead(req, insp)
    if (!this.#stop(insp)) this.inspectBody(req, body, contentTypeOf(req.headers), insp)
    return insp
  }

  #facts (req: RequestInput, insp: Inspection, body: BodyInput, problems: RequestFacts['bodyProblems']): RequestFacts {
    return {
      method: req.method,
      headers: req.headers,
      argCount: insp.argCount,
      bodyOversized: body.kind === 'oversized',
      bodyProblems: problems,
      contentType: contentTypeOf(req.headers),
      hasBody: body.kind !== 'none',
      limits: this.#limits,
    }
  }

  #stop (insp: Inspection): boolean {
    return this.#stopAtThreshold && insp.score >= this.threshold
  }

  #cookies (header: string, insp: Inspection): void {
    const c = this.#byLocation.cookie
    if (c.values.length === 0 && c.names.length === 0) return
    for (const pair of header.split(';')) {
      if (this.#stop(insp)) return
      const eq = pair.indexOf('=')
      const name = (eq === -1 ? pair : pair.slice(0, eq)).trim()
      const value = eq === -1 ? '' : pair.slice(eq + 1).trim()
      const target = `cookie:${name}`
      if (name !== '') {
        this.#part(insp, c.names, { location: 'cookie', name, target, isName: true, urlEncoded: false, file: undefined, value: new Value(name, false, this.#maxRounds) })
      }
      if (value !== '') {
        this.#part(insp, c.values, { location: 'cookie', name, target, isName: false, urlEncoded: false, file: undefined, value: new Value(value, false, this.#maxRounds) })
      }
    }
  }

  #pair (location: 'query', rawName: string, rawValue: string, form: boolean, insp: Inspection): void {
    const lists = this.#byLocation[location]
    const name = decodeName(rawName)
    const target = `${location}:${name}`
    if (rawName !== '') {
      this.#part(insp, lists.names, { location, name, target, isName: true, urlEncoded: true, file: undefined, value: new Value(rawName, form, this.#maxRounds) })
    }
    if (rawValue !== '' && !this.#stop(insp)) {
      this.#part(insp, lists.values, { location, name, target, isName: false, urlEncoded: true, file: undefined, value: new Value(rawValue, form, this.#maxRounds) })
    }
  }

  #part (insp: Inspection, rules: readonly ValueRule[], part: Part): void {
    this.#partOnce(insp, rules, part)
    if (part.isName || part.file !== undefined || this.#stop(insp)) return
    // A path's `+` is a plus (RFC 3986), but a backend that decodes it as a
    // form (and CRS's urlDecode) reads a space: both readings count.
    const plus = part.value.plusReading()
    if (plus !== undefined) {
      this.#partOnce(insp, rules, { ...part, value: plus })
      if (this.#stop(insp)) return
    }
    // A path is not base64 of anything.
    if (part.location === 'path') return
    // A value that is base64 of text is read as that text too: an application
    // that decodes it hands the text to whatever it feeds.
    const text = base64Text(part.value.decoded)
    if (text !== undefined) this.#partOnce(insp, rules, { ...part, urlEncoded: false, value: new Value(text, false, this.#maxRounds) })
  }

  #partOnce (insp: Inspection, rules: readonly ValueRule[], part: Part): void {
    const exclusions = this.#exclusions.length === 0 ? undefined : this.#exclusionsFor(part.target)
    for (let i = 0; i < rules.length; i++) {
      const rule = rules[i] as ValueRule
      if (part.isName && rule.names === false) continue
      if (exclusions !== undefined && exclusions.length > 0 && isExcluded(exclusions, rule)) continue
      // A rule counts once per request: its first match is the one logged.
      if (insp.matched.has(rule.id)) continue
      const found = rule.match(part.value, part)
      if (found !== undefined) {
        this.#record(insp, rule, part.target, found)
        if (this.#stop(insp)) return
      }
    }
  }

  #exclusionsFor (target: string): CompiledExclusion[] {
    return this.#exclusions.filter((e) => e.exact === target || (e.prefix !== undefined && target.startsWith(e.prefix)))
  }

  #excluded (rule: Rule, target: string): boolean {
    if (this.#exclusions.length === 0) return false
    return isExcluded(this.#exclusionsFor(target), rule)
  }

  #record (insp: Inspection, rule: Rule, target: string, found: string): void {
    insp.matches.push({ id: rule.id, family: rule.family, severity: rule.severity, target, excerpt: excerpt(found) })
    insp.matched.add(rule.id)
    insp.score += SCORES[rule.severity]
  }
}

function isExcluded (exclusions: readonly CompiledExclusion[], rule: Rule): boolean {
  for (const e of exclusions) {
    if (e.ids?.has(rule.id) === true || e.families?.has(rule.family) === true) return true
  }
  return false
}

/** A parameter name as an application sees it (one round, `+` as space): what exclusions name. */
export function decodeName (raw: string): string {
  return percentDecode(raw, true).value
}

export function contentTypeOf (headers: ReadonlyArray<readonly [string, string]>): string | undefined {
  for (const [name, value] of headers) if (name === 'content-type') return value
  return undefined
}

/** A standard header with a fixed grammar (see STRUCTURED_HEADERS). */
function isStructured (name: string): boolean {
  if (STRUCTURED_HEADERS.has(name)) return true
  for (const p of STRUCTURED_HEADER_PREFIXES) if (name.startsWith(p)) return true
  return false
}

const BASE64 = /^[A-Za-z0-9+/]{16,}={0,2}$|^[A-Za-z0-9_-]{16,}={0,2}$/
const SYNTAX = /[^a-zA-Z0-9\s]/

/**
 * The text `s` encodes, when `s` is base64 (standard or URL-safe, 16+
 * characters) of printable text with some punctuation in it; otherwise
 * undefined. Tokens, hashes and binary decode to bytes that are not text, and
 * a word made of base64 letters decodes to noise: neither is read twice.
 */
export function base64Text (s: string): string | undefined {
  if (s.length < 16 || s.length > 1_000_000 || !BASE64.test(s)) return undefined
  const encoding = s.indexOf('-') !== -1 || s.indexOf('_') !== -1 ? 'base64url' : 'base64'
  // Hex ids, tokens and words fail on their first bytes: decode those first.
  if (!printable(Buffer.from(s.slice(0, 24), encoding))) return undefined
  const bytes = Buffer.from(s, encoding)
  if (bytes.length < 12 || !printable(bytes)) return undefined
  const text = bytes.toString('latin1')
  return SYNTAX.test(text) ? text : undefined
}

/** At least 95 % printable ASCII (tabs and line breaks count). */
function printable (bytes: Buffer): boolean {
  let printable = 0
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i] as number
    if ((b >= 0x20 && b < 0x7f) || b === 0x09 || b === 0x0a || b === 0x0d) printable++
  }
  return printable >= bytes.length * 0.95
}
