import { z } from 'zod'
import { latencyMs } from './analytics.ts'
import { parseDuration } from './duration.ts'
import { InvalidConfigError } from './errors.ts'
import type { ConfigDocument } from './validate.ts'
import { MAX_HORIZON_SECONDS } from './route-forecast.ts'
import { redactUrl } from './webhook.ts'

/**
 * Rules (ARCHITECTURE §4): `when` conditions over a route's analytics,
 * forecast or anomaly score hold (each for its `for` duration) → `then`
 * actions on the config. Plain module: the schema, the condition language,
 * the evaluation of one moment and the actions as pure functions on a
 * document. The live engine (rule-engine.ts) and the backtester
 * (backtest.ts) both run on these.
 */

export type Metric = 'rps' | 'requests' | 'errors' | 'errorRatio' | 'p50' | 'p90' | 'p99' | 'anomaly' | 'forecastRps'
export type Op = '>' | '>=' | '<' | '<='

export interface Condition {
  metric: Metric
  op: Op
  /** In the metric's unit: ms for percentiles, a ratio (0.05) for errorRatio, per second for rates. */
  value: number
  /** How long it must hold before the rule fires (0: at once). */
  forSeconds: number
  /** forecastRps: how far ahead. */
  horizonSeconds?: number
  /** As written, for messages. */
  text: string
}

const CONDITION = /^\s*(forecast\s+rps|forecast\s+rate|rps|rate|requests|errors|errorRatio|error_ratio|p50|p90|p99|anomaly)(?:\s+in\s+(\S+))?\s*(>=|<=|>|<)\s*(\d+(?:\.\d+)?)\s*(ms|s|%)?(?:\s+for\s+(\S+))?\s*$/i

const CONDITION_EXPECTED = 'a condition such as "p99 > 500ms for 2m", "errorRatio > 5%", "rps > 100", "anomaly >= 0.5" or "forecast rps in 15m > 1000"'

/**
 * `p99 > 500ms for 2m` → a Condition; a string with the problem otherwise.
 *
 * @example
 * parseCondition('errorRatio > 5% for 1m') // { metric: 'errorRatio', op: '>', value: 0.05, forSeconds: 60, … }
 */
export function parseCondition (text: string): Condition | string {
  const m = CONDITION.exec(text)
  if (m === null) return CONDITION_EXPECTED
  const name = (m[1] as string).toLowerCase().replace(/\s+/g, ' ')
  const metric: Metric = name.startsWith('forecast') ? 'forecastRps'
    : name === 'rate' ? 'rps'
      : name === 'error_ratio' || name === 'errorratio' ? 'errorRatio'
        : name as Metric
  const unit = m[5]?.toLowerCase()
  let value = Number(m[4])
  if (metric === 'p50' || metric === 'p90' || metric === 'p99') {
    if (unit === 's') value *= 1000
    else if (unit !== undefined && unit !== 'ms') return `${metric} is a latency: ms or s (got "${unit}")`
  } else if (unit === '%') {
    if (metric !== 'errorRatio') return `only errorRatio takes a % (got "${text}")`
    value /= 100
  } else if (unit !== undefined) return `${metric} takes no unit "${unit}"`
  const forSeconds = m[6] === undefined ? 0 : parseDuration(m[6])
  if (forSeconds === undefined) return `"for ${m[6] ?? ''}": a duration such as 30s, 2m, 1h`
  let horizonSeconds: number | undefined
  if (metric === 'forecastRps') {
    horizonSeconds = m[2] === undefined ? undefined : parseDuration(m[2])
    if (horizonSeconds === undefined || horizonSeconds <= 0) return '"forecast rps" needs "in <duration>", e.g. forecast rps in 15m > 1000'
    if (horizonSeconds > MAX_HORIZON_SECONDS) return `"forecast rps in ${m[2] ?? ''}": a forecast looks at most 7d ahead`
  } else if (m[2] !== undefined) return `"in ${m[2]}" is for forecasts only`
  return { metric, op: m[3] as Op, value, forSeconds, ...(horizonSeconds === undefined ? {} : { horizonSeconds }), text: text.trim() }
}

const duration = (what: string) => z.union([z.string(), z.number()]).transform((v, ctx) => {
  const s = parseDuration(v)
  if (s === undefined) { ctx.addIssue({ code: 'custom', message: `${what}: a duration such as 30s, 5m, 1h` }); return z.NEVER }
  return s
})

const condition = z.string().transform((text, ctx) => {
  const c = parseCondition(text)
  if (typeof c === 'string') { ctx.addIssue({ code: 'custom', message: c }); return z.NEVER }
  return c
})

const httpUrl = z.string().refine((u) => {
  try { return ['http:', 'https:'].includes(new URL(u).protocol) } catch { return false }
}, 'an http:// or https:// URL')

const name = z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, 'a name of 1 to 128 letters, digits, _ . -')

const action = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('scale-rate-limit'),
    route: z.string().min(1).optional().describe('The route whose rate-limit plugin is scaled; the rule\'s route by default.'),
    factor: z.number().positive().describe('Multiplies every limit\'s points (0.5 halves them).'),
    min: z.number().int().min(1).default(1).describe('Never below this many points.'),
    max: z.number().int().min(1).optional().describe('Never above this many points.'),
  }),
  z.strictObject({
    type: z.literal('set-weights'),
    cluster: z.string().min(1),
    weights: z.record(z.string(), z.number().int().min(1)).describe('Endpoint URL → configured weight (a config change).'),
  }),
  z.strictObject({
    type: z.literal('weight-hints'),
    cluster: z.string().min(1),
    hints: z.record(z.string(), z.number().min(0)).describe('Endpoint URL → weight hint (0 clears): run-time steering, no config version.'),
    replace: z.boolean().default(false),
  }),
  z.strictObject({
    type: z.literal('plugin'),
    route: z.string().min(1).optional().describe('The rule\'s route by default.'),
    plugin: z.string().min(1).describe('The plugin name, e.g. cache.'),
    enabled: z.boolean().describe('true adds it (with config) if missing; false removes it.'),
    config: z.record(z.string(), z.unknown()).default({}),
  }),
  z.strictObject({
    type: z.literal('eject-endpoint'),
    cluster: z.string().min(1),
    endpoint: httpUrl.describe('The endpoint URL (matched by origin) removed from the cluster\'s endpoints: a config version.'),
    maxEjectedPercent: z.number().min(1).max(100).default(50).describe('Refused when more than this share of the cluster\'s endpoints would be out; the last endpoint is never ejected.'),
    readmitAfter: duration('readmitAfter').optional().describe('Put it back (another version) this long after; absent: an operator does.'),
  }),
  z.strictObject({
    type: z.literal('webhook'),
    url: httpUrl.describe('Receives a JSON POST per firing (dry runs too, flagged).'),
    headers: z.record(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'a header name'), z.string()).default({}).describe('E.g. authorization; redacted in the audit log and ListRules.'),
    timeout: duration('timeout').refine((s) => s > 0 && s <= 60, 'timeout: more than 0, at most 60s').default(5).describe('Per attempt: 5s by default.'),
    retries: z.number().int().min(0).max(5).default(2).describe('Attempts after the first, on a network error, a timeout, a 429 or a 5xx, with exponential back-off.'),
  }),
  z.strictObject({
    type: z.literal('patch'),
    path: z.string().regex(/^\//, 'a path such as /routes/api/plugins/cache/config/ttl (list elements by name or index)')
      .refine((p) => !pointerSegments(p).some((s) => UNSAFE_SEGMENTS.has(s)), 'a path without __proto__, constructor or prototype segments'),
    value: z.unknown().optional().describe('The new value; absent with remove.'),
    remove: z.boolean().default(false),
  }),
])

export const ruleSchema = z.strictObject({
  name: name.describe('Identifies the rule in the API and the audit log.'),
  route: z.string().min(1).describe('The route whose analytics and forecast the conditions read.'),
  // One condition is a list of one (a union would hide the condition's own error behind "Invalid input").
  when: z.preprocess((v) => typeof v === 'string' ? [v] : v, z.array(condition).min(1)).describe('One condition or a list; all must hold.'),
  window: duration('window').default(60).describe('The analytics window of rps, errorRatio and percentiles: 1m by default.'),
  then: z.array(action).min(1).describe('What firing does, in order.'),
  cooldown: duration('cooldown').default(300).describe('No second firing within this long: 5m by default.'),
  priority: z.number().int().default(0).describe('Higher rules go first; a lower one that touches what a higher one changed in the same evaluation is skipped.'),
  dryRun: z.boolean().default(false).describe('Fire into the audit log only: say what would change, change nothing.'),
  enabled: z.boolean().default(true),
  description: z.string().optional(),
})

export type Rule = z.output<typeof ruleSchema>
export type Action = Rule['then'][number]
export type WebhookAction = Extract<Action, { type: 'webhook' }>

const REDACTED = 'redacted'

/**
 * A rule as put, with its webhooks' secrets hidden (header values, URL
 * credentials and query values), for the audit log and ListRules: the
 * store keeps the real ones.
 */
export function redactRule (source: unknown): unknown {
  if (!isObject(source) || !Array.isArray(source.then)) return source
  return {
    ...source,
    then: source.then.map((a: unknown) => {
      if (!isObject(a) || a.type !== 'webhook') return a
      const headers = isObject(a.headers) ? Object.fromEntries(Object.keys(a.headers).map((k) => [k, REDACTED])) : a.headers
      return { ...a, ...(typeof a.url === 'string' ? { url: redactUrl(a.url) } : {}), ...(headers === undefined ? {} : { headers }) }
    }),
  }
}

/** Validates a rule as an operator wrote it; the issues' paths are relative to the rule. */
export function parseRule (value: unknown): Rule {
  const r = ruleSchema.safeParse(value)
  if (r.success) return r.data
  throw new InvalidConfigError(r.error.issues.map((i) => ({ path: i.path.map(String).join('.'), expected: i.message })))
}

/** What a window of traffic looked like, for the conditions. */
export interface Observation {
  requests: number
  errors: number
  /** Seconds the counts span (rates divide by it). */
  spanSeconds: number
  bounds: readonly number[]
  /** The latency histogram of the requests whose latency is known (all zeros or [] when none is: p50–p99 have no data). */
  buckets: readonly number[]
  /** The detector's score for the latest complete interval. */
  anomaly?: number
  /** Forecast rate at a horizon (seconds → requests per second). */
  forecastRps?: (horizonSeconds: number) => number | undefined
}

/** The value of a condition's metric, or undefined when there is no data for it. */
export function metricValue (c: Condition, o: Observation): number | undefined {
  switch (c.metric) {
    case 'rps': return o.requests / o.spanSeconds
    case 'requests': return o.requests
    case 'errors': return o.errors
    case 'errorRatio': return o.requests === 0 ? undefined : o.errors / o.requests
    case 'p50': case 'p90': case 'p99':
      return latencyMs(Number(c.metric.slice(1)) / 100, o.bounds, o.buckets)
    case 'anomaly': return o.anomaly
    case 'forecastRps': return o.forecastRps?.(c.horizonSeconds ?? 0)
  }
}

function compare (v: number, op: Op, x: number): boolean {
  return op === '>' ? v > x : op === '>=' ? v >= x : op === '<' ? v < x : v <= x
}

/** Per-rule memory between evaluations: since when each condition holds, when the rule last fired. */
export interface RuleState {
  holdingSince: Array<number | undefined>
  lastFiredAt: number | undefined
}

export const initialState = (rule: Rule): RuleState => ({ holdingSince: rule.when.map(() => undefined), lastFiredAt: undefined })

export interface Evaluation {
  /** Every condition held for its duration and the cooldown is over. */
  fire: boolean
  /** Every condition holds for its duration (cooldown aside). */
  holds: boolean
  /** `p99=812ms` per condition. */
  values: Record<string, number | undefined>
}

/**
 * One evaluation at `now` (seconds): updates `state` (holding since; not
 * lastFiredAt, the caller sets it when it really fires) and says whether the
 * rule fires.
 */
export function evaluate (rule: Rule, state: RuleState, o: Observation, now: number): Evaluation {
  const values: Record<string, number | undefined> = {}
  let holds = true
  rule.when.forEach((c, i) => {
    const v = metricValue(c, o)
    values[c.text] = v
    if (v !== undefined && compare(v, c.op, c.value)) state.holdingSince[i] ??= now
    else state.holdingSince[i] = undefined
    const since = state.holdingSince[i]
    if (since === undefined || now - since < c.forSeconds) holds = false
  })
  const cooled = state.lastFiredAt === undefined || now - state.lastFiredAt >= rule.cooldown
  return { fire: holds && cooled, holds, values }
}

/** One change an action made (or would make). */
export interface ActionChange {
  path: string
  before: unknown
  after: unknown
}

export interface ActionsResult {
  /** The document after the config actions. */
  document: ConfigDocument
  changes: ActionChange[]
  /** weight-hints actions: for the run-time path, not the document. */
  hints: Array<{ cluster: string, hints: Record<string, number>, replace: boolean }>
  /** Actions that could not apply (e.g. no rate-limit plugin on the route), in words. */
  errors: string[]
  /** What each action touches (`route:api:rate-limit`): a lower-priority rule may not touch it again in the same evaluation. */
  targets: string[]
  /** webhook actions: sent by the engine, off the evaluation's path. */
  alerts: WebhookAction[]
  /** eject-endpoint actions that removed an endpoint: the removed object, for its readmission. */
  ejections: Array<{ cluster: string, endpoint: Obj, readmitAfterSeconds?: number }>
}

/** What applyActions needs beyond the document. */
export interface ActionContext {
  /** Endpoints of a cluster ejected earlier and still out (they count against maxEjectedPercent). */
  ejected?: (cluster: string) => number
}

type Obj = Record<string, unknown>
const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)

/** Applies a rule's actions to a copy of `document`. */
export function applyActions (rule: Rule, document: ConfigDocument, context: ActionContext = {}): ActionsResult {
  const doc = structuredClone(document)
  const out: ActionsResult = { document: doc, changes: [], hints: [], errors: [], targets: [], alerts: [], ejections: [] }
  for (const a of rule.then) {
    switch (a.type) {
      case 'webhook':
        out.alerts.push(a)
        break
      case 'eject-endpoint': {
        const refusal = ejectEndpoint(doc, a, (context.ejected?.(a.cluster) ?? 0) + out.ejections.filter((e) => e.cluster === a.cluster).length)
        if (typeof refusal === 'string') { out.errors.push(refusal); break }
        // Claimed only when it ejects: a refused ejection does not hold back a lower rule's.
        out.targets.push(`cluster:${a.cluster}:endpoints`)
        out.changes.push({ path: `/clusters/${a.cluster}/endpoints/${String(refusal.url)}`, before: refusal, after: null })
        out.ejections.push({ cluster: a.cluster, endpoint: refusal, ...(a.readmitAfter === undefined ? {} : { readmitAfterSeconds: a.readmitAfter }) })
        break
      }
      case 'scale-rate-limit': {
        const route = a.route ?? rule.route
        out.targets.push(`route:${route}:rate-limit`)
        const config = findPlugin(doc, route, 'rate-limit')?.config
        if (!isObject(config)) { out.errors.push(`route "${route}" has no rate-limit plugin`); break }
        const scale = (p: unknown): number => Math.min(a.max ?? Infinity, Math.max(a.min, Math.round(Number(p) * a.factor)))
        if (typeof config.points === 'number') {
          const after = scale(config.points)
          out.changes.push({ path: `/routes/${route}/plugins/rate-limit/config/points`, before: config.points, after })
          config.points = after
        }
        if (Array.isArray(config.limits)) {
          config.limits.forEach((l: unknown, i) => {
            if (!isObject(l) || typeof l.points !== 'number') return
            const after = scale(l.points)
            out.changes.push({ path: `/routes/${route}/plugins/rate-limit/config/limits/${i}/points`, before: l.points, after })
            l.points = after
          })
        }
        break
      }
      case 'set-weights': {
        out.targets.push(`cluster:${a.cluster}:weights`)
        const cluster = named(doc.clusters, a.cluster)
        if (cluster === undefined || !Array.isArray(cluster.endpoints)) { out.errors.push(`no cluster "${a.cluster}"`); break }
        for (const [url, weight] of Object.entries(a.weights)) {
          const ep = (cluster.endpoints as unknown[]).find((e) => isObject(e) && typeof e.url === 'string' && sameOrigin(e.url, url))
          if (!isObject(ep)) { out.errors.push(`cluster "${a.cluster}" has no endpoint ${url}`); continue }
          out.changes.push({ path: `/clusters/${a.cluster}/endpoints/${String(ep.url)}/weight`, before: ep.weight ?? 1, after: weight })
          ep.weight = weight
        }
        break
      }
      case 'weight-hints':
        out.targets.push(`cluster:${a.cluster}:hints`)
        out.hints.push({ cluster: a.cluster, hints: a.hints, replace: a.replace })
        for (const [url, w] of Object.entries(a.hints)) out.changes.push({ path: `hint:${a.cluster}/${url}`, before: undefined, after: w === 0 ? null : w })
        break
      case 'plugin': {
        const route = a.route ?? rule.route
        out.targets.push(`route:${route}:plugin:${a.plugin}`)
        const r = named(doc.routes, route)
        if (r === undefined) { out.errors.push(`no route "${route}"`); break }
        const plugins = Array.isArray(r.plugins) ? r.plugins as unknown[] : []
        const at = plugins.findIndex((p) => isObject(p) && p.name === a.plugin)
        if (a.enabled && at === -1) {
          plugins.push({ name: a.plugin, config: a.config })
          out.changes.push({ path: `/routes/${route}/plugins/${a.plugin}`, before: null, after: { name: a.plugin, config: a.config } })
        } else if (!a.enabled && at !== -1) {
          out.changes.push({ path: `/routes/${route}/plugins/${a.plugin}`, before: plugins[at], after: null })
          plugins.splice(at, 1)
        }
        r.plugins = plugins
        break
      }
      case 'patch': {
        out.targets.push(`path:${a.path}`)
        const r = patchPath(doc, a.path, a.remove ? REMOVE : a.value)
        if (typeof r === 'string') out.errors.push(r)
        else out.changes.push({ path: a.path, before: r.before, after: a.remove ? null : a.value })
        break
      }
    }
  }
  return out
}

/**
 * Removes an endpoint from a cluster of `doc`; returns the removed object,
 * or why not. `ejected`: endpoints of the cluster already out. The last
 * endpoint MUST stay (a cluster without endpoints answers every request
 * with an error), and so MUST more than `maxEjectedPercent` of the cluster.
 */
function ejectEndpoint (doc: ConfigDocument, a: Extract<Action, { type: 'eject-endpoint' }>, ejected: number): Obj | string {
  const cluster = named(doc.clusters, a.cluster)
  if (cluster === undefined || !Array.isArray(cluster.endpoints)) return `no cluster "${a.cluster}"`
  const endpoints = cluster.endpoints as unknown[]
  const at = endpoints.findIndex((e) => isObject(e) && typeof e.url === 'string' && sameOrigin(e.url, a.endpoint))
  if (at === -1) return `cluster "${a.cluster}" has no endpoint ${a.endpoint} (ejected already?)`
  const refused = `not ejecting ${a.endpoint} from cluster "${a.cluster}"`
  if (endpoints.length <= 1) return `${refused}: it is the cluster's last endpoint`
  const total = endpoints.length + ejected
  if ((ejected + 1) * 100 > a.maxEjectedPercent * total) return `${refused}: ${ejected + 1} of its ${total} endpoints would be out, more than maxEjectedPercent (${a.maxEjectedPercent}%)`
  return endpoints.splice(at, 1)[0] as Obj
}

function named (list: unknown, name: string): Obj | undefined {
  if (!Array.isArray(list)) return undefined
  const found = list.find((e) => isObject(e) && e.name === name)
  return isObject(found) ? found : undefined
}

function findPlugin (doc: ConfigDocument, route: string, plugin: string): Obj | undefined {
  return named(named(doc.routes, route)?.plugins, plugin)
}

function sameOrigin (a: string, b: string): boolean {
  try { return new URL(a).origin === new URL(b).origin } catch { return false }
}

const REMOVE = Symbol('remove')

/** Keys that reach an object's prototype: a patch through them would change every object in the process. */
const UNSAFE_SEGMENTS = new Set(['__proto__', 'constructor', 'prototype'])

/** A JSON Pointer's segments, unescaped (RFC 6901 §4). */
function pointerSegments (path: string): string[] {
  return path.split('/').slice(1).map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'))
}

/**
 * Sets (or removes) the value at a JSON Pointer (RFC 6901) in which a
 * segment addressing a list picks the element of that `name` (or index):
 * `/routes/api/plugins/cache/config/ttl`. Missing objects on the way are
 * created; missing list elements are not. Only own properties are followed,
 * and `__proto__`, `constructor` and `prototype` MUST NOT be: a rule (or a
 * viewer's backtest) could otherwise write into Object.prototype. Returns
 * the old value, or the problem.
 */
export function patchPath (doc: ConfigDocument, path: string, value: unknown): { before: unknown } | string {
  const segments = pointerSegments(path)
  const unsafe = segments.find((s) => UNSAFE_SEGMENTS.has(s))
  if (unsafe !== undefined) return `${path}: "${unsafe}" is not a segment a patch may follow`
  let node: unknown = doc
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i] as string
    const last = i === segments.length - 1
    if (Array.isArray(node)) {
      const idx = /^\d+$/.test(seg) ? Number(seg) : node.findIndex((e) => isObject(e) && e.name === seg)
      if (idx < 0 || idx >= node.length) return `${path}: no element "${seg}"`
      if (last) {
        const before = node[idx]
        if (value === REMOVE) node.splice(idx, 1)
        else node[idx] = value
        return { before }
      }
      node = node[idx]
    } else if (isObject(node)) {
      // Own properties only: an inherited one (toString, …) is not part of the document.
      const own = Object.hasOwn(node, seg)
      if (last) {
        const before = own ? node[seg] : undefined
        if (value === REMOVE) delete node[seg]
        else node[seg] = value
        return { before }
      }
      if (!own || node[seg] === undefined) node[seg] = {}
      node = node[seg]
    } else return `${path}: "${segments.slice(0, i).join('/')}" is not an object or a list`
  }
  return `${path}: the document itself cannot be replaced`
}

/** `p99 > 500ms (812)`: what held, for audit messages. */
export function describeValues (values: Record<string, number | undefined>): string {
  return Object.entries(values).map(([text, v]) => `${text} (${v === undefined ? 'no data' : Math.round(v * 1000) / 1000})`).join(', ')
}
