import { Counter, type Registry } from 'prom-client'
import { definePlugin, type PluginContext, type PluginHooks, type RequestContext, type ResponseContext } from '../../src/plugin.ts'
import { RateLimitedError } from '../../src/errors.ts'
import { schema, windowLabel, type Limit, type RateLimitConfig } from './schema.ts'
import { compileKey, defaultScope } from './keys.ts'
import { appendField, limitItem, policyItem } from './fields.ts'
import { MemoryStore } from './stores/memory.ts'
import { RedisStore } from './stores/redis.ts'
import type { LimitStore, WindowCounter, WindowResult } from './stores/store.ts'

const NAME = 'rate-limit'

interface CompiledLimit extends Limit {
  readonly counter: WindowCounter
}

/** One set of limits (the route's, or an override's) with its RateLimit-Policy value, built once. */
interface Policy {
  readonly limits: readonly CompiledLimit[]
  /** Indexes into `limits`, shortest window first: the order they are asked in. */
  readonly order: readonly number[]
  /** RateLimit-Policy (draft §3): the same on every response for these consumers. */
  readonly field: string
}

/** The fields an allowed request's response gets (headersOnAllowed), kept in ctx.state. */
interface AllowedFields {
  readonly policy: string
  readonly limit: string | undefined
}

function compilePolicy (limits: readonly Limit[], store: LimitStore, scope: string): Policy {
  return {
    limits: limits.map((l) => ({ ...l, counter: store.counter(scope, { points: l.points, seconds: l.duration }) })),
    order: limits.map((_, i) => i).sort((a, b) => (limits[a] as Limit).duration - (limits[b] as Limit).duration),
    field: limits.map((l) => policyItem(l.name, l.points, l.duration)).join(', '),
  }
}

function compileMatch (match: RateLimitConfig['overrides'][number]['match']): (ctx: RequestContext) => boolean {
  if (match.identity !== undefined) {
    const subjects = new Set(match.identity)
    return (ctx) => ctx.identity !== undefined && subjects.has(ctx.identity.subject)
  }
  const { name, value } = match.header as { name: string, value: string }
  return (ctx) => ctx.req.headers[name] === value
}

/** A counter declared once per registry: every route's instance (and the next snapshot's) shares it. */
function counterMetric (registry: Registry, name: string, help: string, labelNames: string[]): Counter {
  const existing = registry.getSingleMetric(name)
  if (existing !== undefined) return existing as Counter
  return new Counter({ name, help, labelNames, registers: [registry] })
}

/**
 * The limit the client is closest to exhausting, as a RateLimit item: the
 * fewest requests left, on a tie the longest wait (draft B.1.2 lets a server
 * send only that one). Limits the store could not read are left out.
 */
function tightest (policy: Policy, results: readonly WindowResult[]): string | undefined {
  let best: WindowResult | undefined
  let at = 0
  for (let i = 0; i < results.length; i++) {
    const r = results[i] as WindowResult
    if (!r.known) continue
    if (best === undefined || r.remaining < best.remaining || (r.remaining === best.remaining && r.resetMs > best.resetMs)) { best = r; at = i }
  }
  return best === undefined ? undefined : limitItem((policy.limits[at] as CompiledLimit).name, best.remaining, best.resetMs)
}

/**
 * The store could not answer and `onStoreError: allow` let the request
 * through. (`local` and `deny` fallbacks give ordinary results: the store
 * does not mark them, so they annotate as allow or deny.)
 */
function storeFailed (results: readonly WindowResult[]): boolean {
  for (let i = 0; i < results.length; i++) if (!(results[i] as WindowResult).known) return true
  return false
}

/** Decision counters of one route, resolved once. */
interface Counts {
  readonly allow: Counter.Internal
  readonly deny: Counter.Internal
}

/** Compiles keys, limits and overrides over an open store into the hooks. */
function buildHooks (config: RateLimitConfig, route: string, store: LimitStore, counts: Counts): PluginHooks {
  const scope = config.scope ?? defaultScope(route, config.key)
  const keyOf = compileKey(config.key, { trustedProxies: config.trustedProxies, ipv6Subnet: config.ipv6Subnet })
  const base = compilePolicy(config.limits, store, scope)
  const overrides = config.overrides.map((o) => ({ matches: compileMatch(o.match), policy: compilePolicy(o.limits, store, scope) }))
  const headersOnAllowed = config.headersOnAllowed

  function policyFor (rc: RequestContext): Policy {
    for (let i = 0; i < overrides.length; i++) {
      const o = overrides[i] as (typeof overrides)[number]
      if (o.matches(rc)) return o.policy
    }
    return base
  }

  /** Every limit allowed: counts and annotates, and keeps the fields for headersOnAllowed. */
  function allow (rc: RequestContext, policy: Policy, results: readonly WindowResult[]): void {
    counts.allow.inc()
    // Called optionally: unit tests drive hooks with partial contexts.
    rc.annotate('rateLimit', storeFailed(results) ? 'store_error_allow' : 'allow')
    if (headersOnAllowed) {
      const list = (rc.state[NAME] ??= []) as AllowedFields[]
      list.push({ policy: policy.field, limit: tightest(policy, results) })
    }
  }

  /** Limit `at` refused, `wait` ms before its window ends: throws the 429. */
  function deny (rc: RequestContext, policy: Policy, at: number, wait: number): never {
    counts.deny.inc()
    const limit = policy.limits[at] as CompiledLimit
    rc.annotate('rateLimit', 'deny')
    // A configured name (at most 64 characters): which limit said no.
    rc.annotate('rateLimitPolicy', limit.name)
    // Retry-After and t name the same moment, the end of the refusing window
    // (draft §6: never earlier than the effective window). Longer windows
    // were not asked; one that is spent too refuses the next try.
    const retryAfter = Math.max(1, Math.ceil(wait / 1000))
    throw new RateLimitedError(`the limit of ${limit.points} requests per ${windowLabel(limit.duration)} ("${limit.name}") is spent`, {
      headers: {
        'retry-after': String(retryAfter),
        'ratelimit-policy': policy.field,
        ratelimit: limitItem(limit.name, 0, retryAfter * 1000),
      },
      extensions: { 'violated-policies': [limit.name] },
    })
  }

  /**
   * Asks several limits one after another, shortest window first, and stops
   * at the first refusal, giving back what the limits before it counted. Asked
   * all at once, a burst the short limit refuses would be counted by the long
   * one until the refunds land, and the Redis store's in-memory block would
   * then shut the client out for the whole long window; a flood the short
   * limit refuses from memory would still cost a long one two round trips a
   * request. The price: an allowed request waits for one answer per limit.
   */
  async function decide (rc: RequestContext, policy: Policy, key: string): Promise<void> {
    const { limits, order } = policy
    const results = new Array<WindowResult>(limits.length)
    for (let n = 0; n < order.length; n++) {
      const at = order[n] as number
      const r = await (limits[at] as CompiledLimit).counter.hit(key)
      if (!r.allowed) {
        for (let m = 0; m < n; m++) (limits[order[m] as number] as CompiledLimit).counter.refund(key)
        deny(rc, policy, at, r.resetMs)
      }
      results[at] = r
    }
    allow(rc, policy, results)
  }

  const hooks: PluginHooks = {
    onRequest (rc: RequestContext): Promise<void> | undefined {
      const key = keyOf(rc)
      if (key === undefined) { rc.annotate('rateLimit', 'skip'); return undefined }
      const policy = policyFor(rc)
      const limits = policy.limits
      if (limits.length === 1) {
        return (limits[0] as CompiledLimit).counter.hit(key).then((r) => { if (r.allowed) allow(rc, policy, [r]); else deny(rc, policy, 0, r.resetMs) })
      }
      return decide(rc, policy, key)
    },
    close: () => store.close(),
  }
  // Without headersOnAllowed the response phase has nothing to do: no hook, no cost.
  if (headersOnAllowed) {
    hooks.onResponse = (rc: RequestContext, res: ResponseContext): void => {
      const list = rc.state[NAME] as AllowedFields[] | undefined
      if (list === undefined) return
      // The first rate-limit instance to unwind writes every instance's fields, once.
      delete rc.state[NAME]
      for (const f of list) {
        appendField(res.headers, 'ratelimit-policy', f.policy)
        if (f.limit !== undefined) appendField(res.headers, 'ratelimit', f.limit)
      }
    }
  }
  return hooks
}

/**
 * Limits request rates with rate-limiter-flexible, per client address,
 * header, identity, JWT claim, route or a composite of these, with several
 * limits that must all allow (10/s and 1000/day) and other limits for some
 * consumers. Counters live in this process (`memory`) or in Redis (`redis`,
 * one counter for every Outrider sharing that Redis); see stores/.
 *
 * A refused request gets 429 with `Retry-After` (delay-seconds, RFC 9110
 * §10.2.3), `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-
 * headers-11, see fields.ts) and the draft's `violated-policies` member in the
 * problem body (§5.1). With `headersOnAllowed` the two RateLimit fields go on
 * allowed responses too. Several limits are asked one after another,
 * shortest window first, and the first to refuse decides: a request refused
 * by one limit is not charged to the others, so a client held back by 10/s
 * keeps its daily quota for requests that are served (the refusing window
 * does count it, as rate-limiter-flexible counts every attempt). A request
 * whose key part is missing with `missing: skip` is not limited and not
 * counted. Decisions are counted in
 * `outrider_ratelimit_decisions_total{route,decision}`, failed store
 * operations in `outrider_ratelimit_store_errors_total{route}`. Each decision
 * is annotated for the access log and the trace: `rateLimit` (allow, deny,
 * skip, store_error_allow) and, on deny, `rateLimitPolicy` (the limit's name).
 *
 * Put it after the auth plugins when it keys by identity or claim: they set
 * `ctx.identity`, which this plugin only reads.
 *
 * @example
 * // routes[0].plugins:
 * // - name: api-key
 * //   config: { keysFile: /etc/outrider/keys.yaml }
 * // - name: rate-limit
 * //   config:
 * //     key: { by: identity }                 # no identity: counted by client IP
 * //     limits: [{ points: 10, duration: 1s }, { points: 1000, duration: 1d }]
 * //     overrides: [{ match: { identity: batch-importer }, limits: [{ points: 100, duration: 1s }] }]
 * //     store: { type: redis, url: 'redis://redis:6379', expectedInstances: 3 }
 * //     headersOnAllowed: true
 */
export default definePlugin({
  name: NAME,
  schema,
  async create (config: RateLimitConfig, ctx: PluginContext) {
    const route = ctx.routeName
    const decisions = counterMetric(ctx.metrics, 'outrider_ratelimit_decisions_total', 'Rate-limit decisions, by route and decision (allow, deny).', ['route', 'decision'])
    const storeErrors = counterMetric(ctx.metrics, 'outrider_ratelimit_store_errors_total', 'Rate-limit store operations that failed and were decided by onStoreError, by route.', ['route']).labels(route)
    const store: LimitStore = config.store.type === 'redis'
      ? await RedisStore.open(config.store, { log: ctx.log, onStoreError: () => { storeErrors.inc() } })
      : new MemoryStore({ maxKeys: config.store.maxKeys })
    try {
      return buildHooks(config, route, store, { allow: decisions.labels(route, 'allow'), deny: decisions.labels(route, 'deny') })
    } catch (err) {
      // The pipeline closes only plugins that were created: release the store here.
      await store.close()
      throw err
    }
  },
})
