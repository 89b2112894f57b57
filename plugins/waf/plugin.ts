import { randomBytes } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { Counter, type Registry } from 'prom-client'
import { definePlugin, type RequestContext } from '../../src/plugin.ts'
import { ForbiddenError } from '../../src/errors.ts'
import { schema } from './schema.ts'
import { RuleSet, contentTypeOf, type BodyInput, type Inspection, type RequestInput } from './engine.ts'
import type { Family } from './rule.ts'

const METRIC = 'outrider_waf_matches_total'
type Action = 'block' | 'detect' | 'pass'

/** The access log's and trace's word for each action (`annotate('waf', …)`). */
const OUTCOME: Record<Action, string> = { block: 'blocked', detect: 'detected', pass: 'allowed' }

/** Rule ids named in an annotation: a request can match dozens, a log field stays short. */
const ANNOTATED_RULES = 8

/** `941100,942100`; past eight ids, the first eight then `+N` (how many more). */
function ruleList (ids: readonly number[]): string {
  if (ids.length <= ANNOTATED_RULES) return ids.join(',')
  return `${ids.slice(0, ANNOTATED_RULES).join(',')},+${ids.length - ANNOTATED_RULES}`
}

/**
 * The counter is process-wide but declared by every route's instance and on
 * every snapshot: the first declaration registers it, later ones reuse it
 * (prom-client refuses a second metric of the same name).
 */
function matchesCounter (registry: Registry): Counter<'route' | 'family' | 'action'> {
  const existing = registry.getSingleMetric(METRIC)
  if (existing !== undefined) return existing as Counter<'route' | 'family' | 'action'>
  return new Counter({
    name: METRIC,
    help: 'WAF rule matches, by route, rule family and what became of the request (block, detect = would have blocked, pass = below the threshold).',
    labelNames: ['route', 'family', 'action'],
    registers: [registry],
  })
}

/** The client's header lines as sent: names lower-cased, repeats and order kept. */
function headerLines (req: IncomingMessage): Array<[string, string]> {
  const raw = req.rawHeaders
  const out: Array<[string, string]> = []
  for (let i = 0; i < raw.length; i += 2) out.push([(raw[i] as string).toLowerCase(), raw[i + 1] as string])
  return out
}

function declaredLength (req: IncomingMessage): number {
  const cl = req.headers['content-length']
  return cl === undefined ? -1 : Number(cl)
}

function hasBody (req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || declaredLength(req) > 0
}

type ReadBody = (limit: number) => Promise<Buffer | undefined>

/**
 * A web application firewall in the OWASP Core Rule Set's manner: rules in
 * families (SQL injection, XSS, path traversal, command and code injection,
 * scanners, protocol anomalies) read the path, query, selected headers,
 * cookies and the body after normalisation; each match adds its severity to
 * an anomaly score and a request that reaches the threshold is refused with
 * a 403 problem naming an incident id and the rule ids (the log line names
 * the same id, the rules and short excerpts of what matched).
 *
 * Place it first in a route: it reads what the client sent, and nothing
 * behind it should spend work on a request it refuses.
 *
 * @example
 * // routes[0].plugins:
 * // - name: waf
 * //   config:
 * //     mode: block
 * //     paranoiaLevel: 2
 * //     maxBodySize: 128kb
 * //     exclusions:
 * //       - { target: 'body:html', families: [xss] }
 * //       - { target: 'query:q', ruleIds: [1622] }
 */
export default definePlugin({
  name: 'waf',
  schema,
  create (config, ctx) {
    const rules = new RuleSet(config)
    const counter = matchesCounter(ctx.metrics)
    const log = ctx.log
    const route = ctx.routeName
    const detect = config.mode === 'detect'
    const maxBody = config.maxBodySize
    const children = new Map<string, ReturnType<typeof counter.labels>>()
    let warnedNoBody = false

    function count (family: Family, action: Action): void {
      const key = `${family}\u0000${action}`
      let c = children.get(key)
      if (c === undefined) { c = counter.labels(route, family, action); children.set(key, c) }
      c.inc()
    }

    /** Logs and counts what matched; throws the 403 when the request is refused. */
    function verdict (rctx: RequestContext, insp: Inspection): undefined {
      if (insp.matches.length === 0) return undefined
      const reached = rules.reached(insp)
      const action: Action = !reached ? 'pass' : detect ? 'detect' : 'block'
      for (const m of insp.matches) count(m.family, action)
      const incidentId = randomBytes(8).toString('hex')
      const ids = insp.matches.map((m) => m.id)
      const fields = {
        incidentId,
        requestId: rctx.requestId,
        action,
        score: insp.score,
        threshold: rules.threshold,
        rules: ids,
        matches: insp.matches,
        method: rctx.method,
        path: rctx.path.length > 256 ? `${rctx.path.slice(0, 256)}…` : rctx.path,
        clientIp: rctx.clientIp,
      }
      rctx.state.waf = { incidentId, score: insp.score, rules: ids, action }
      // The decision for the access log and the trace, on every request that
      // matched: blocked, detected (would be blocked) or allowed below the
      // threshold. Called optionally: unit tests drive hooks with partial contexts.
      rctx.annotate('waf', OUTCOME[action])
      rctx.annotate('wafScore', insp.score)
      rctx.annotate('wafRules', ruleList(ids))
      if (!reached) { log.info('waf: anomalies below the threshold', fields); return undefined }
      if (detect) { log.warn('waf: request would be blocked (detect mode)', fields); return undefined }
      log.warn('waf: request blocked', fields)
      throw new ForbiddenError('request blocked by the web application firewall', { extensions: { incidentId, rules: ids } })
    }

    function body (rctx: RequestContext, input: RequestInput, insp: Inspection, data: BodyInput): undefined {
      rules.inspectBody(input, data, contentTypeOf(input.headers), insp)
      return verdict(rctx, insp)
    }

    return {
      onRequest (rctx) {
        const req = rctx.req
        const input: RequestInput = { method: rctx.method, path: rctx.path, query: rctx.query, headers: headerLines(req) }
        const insp = rules.start()
        rules.inspectHead(input, insp)
        // Refused on its head: the body is never waited for.
        if (rules.reached(insp) && !detect) return verdict(rctx, insp)
        if (!hasBody(req)) return body(rctx, input, insp, { kind: 'none' })
        const declared = declaredLength(req)
        if (maxBody === 0 || declared > maxBody) return body(rctx, input, insp, { kind: 'oversized' })
        // Typed loosely on purpose: a context without readBody (an older
        // exchange, a test double) still gets its head inspected.
        const readBody = (rctx as RequestContext & { readBody?: ReadBody }).readBody
        if (typeof readBody !== 'function') {
          if (!warnedNoBody) { warnedNoBody = true; log.warn('waf: request bodies cannot be read here; only heads are inspected') }
          return body(rctx, input, insp, { kind: 'skipped' })
        }
        return readBody.call(rctx, maxBody).then((data) => body(rctx, input, insp, data === undefined ? { kind: 'oversized' } : { kind: 'read', data }))
      },
    }
  },
})
