import { z } from 'zod'
import { MAX_TIMER_MS, duration } from '../../src/config/units.ts'
import { HOP_BY_HOP } from '../../src/http/hop-by-hop.ts'
import { parseCidr } from './client-ip.ts'

/** RFC 9110 §5.6.2 `token`: a header name (§5.1). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/** Hop-by-hop fields never reach the plugin; framing fields say nothing about the client. */
const RESERVED_HEADERS: ReadonlySet<string> = new Set([...HOP_BY_HOP, 'content-length', 'trailer'])

const headerName = z.string()
  .regex(TOKEN, 'a header name (an RFC 9110 token)')
  .transform((s) => s.toLowerCase())
  .refine((s) => !RESERVED_HEADERS.has(s), { error: (iss) => `a header other than "${String(iss.input).toLowerCase()}" (hop-by-hop and framing headers do not identify a client)` })

const WINDOW = /^(\d+)(ms|s|m|h|d)$/
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const MAX_WINDOW_S = 366 * 86_400
const WINDOW_EXPECTED = 'a window: whole seconds as a number (1 = one second), or a string such as 1s, 90s, 15m, 1h, 1d'

/**
 * A rate-limit window in whole seconds. A number is seconds, as in
 * rate-limiter-flexible and the architecture's example (`duration: 1`), not
 * milliseconds as Outrider's timeouts are. Sub-second windows are refused:
 * the Redis store keeps windows with `EX` (1-second resolution) and the
 * RateLimit fields can only say whole seconds (draft §3.1.3).
 */
export const windowSeconds = z.union([z.number(), z.string()], { error: WINDOW_EXPECTED }).transform((v, ctx) => {
  let ms: number
  if (typeof v === 'number') {
    ms = v * 1000
  } else {
    const m = WINDOW.exec(v)
    if (m === null) { ctx.addIssue({ code: 'custom', message: WINDOW_EXPECTED, input: v }); return z.NEVER }
    ms = Number(m[1]) * (UNIT_MS[m[2] as string] as number)
  }
  if (!Number.isInteger(ms / 1000) || ms < 1000 || ms > MAX_WINDOW_S * 1000) {
    ctx.addIssue({ code: 'custom', message: `${WINDOW_EXPECTED}; from 1 second to 366 days, in whole seconds`, input: v })
    return z.NEVER
  }
  return ms / 1000
})

/** A Structured Fields sf-string without `"` and `\` (RFC 9651 §3.3.3), so it is written without escapes. */
const policyName = z.string().regex(/^[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}$/, 'a policy name of 1 to 64 printable ASCII characters without " or \\')

const limit = z.strictObject({
  points: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER)
    .describe('Requests allowed per window.'),
  duration: windowSeconds
    .describe('The window: seconds as a number, or 1s, 15m, 1h, 1d …'),
  name: policyName.optional()
    .describe('The policy name in RateLimit-Policy and RateLimit; default "default" for a lone limit, else the window (e.g. "1s", "1d").'),
})

/** `86400` → `1d`: the default name of one of several policies. */
export function windowLabel (seconds: number): string {
  if (seconds % 86_400 === 0) return `${seconds / 86_400}d`
  if (seconds % 3600 === 0) return `${seconds / 3600}h`
  if (seconds % 60 === 0) return `${seconds / 60}m`
  return `${seconds}s`
}

export interface Limit {
  readonly points: number
  /** The window in seconds. */
  readonly duration: number
  readonly name: string
}

function named (limits: ReadonlyArray<{ points: number, duration: number, name?: string | undefined }>): Limit[] {
  return limits.map((l) => ({ points: l.points, duration: l.duration, name: l.name ?? (limits.length === 1 ? 'default' : windowLabel(l.duration)) }))
}

/**
 * All limits of one list must allow a request. Counters are kept per window
 * length, so two limits of one length would count into one counter.
 */
const limitList = z.array(limit).min(1, 'at least one limit').max(8, 'at most 8 limits').superRefine((list, ctx) => {
  const windows = new Map<number, number>()
  const repeated = new Set<number>()
  list.forEach((l, i) => {
    const other = windows.get(l.duration)
    if (other === undefined) { windows.set(l.duration, i); return }
    repeated.add(i)
    ctx.addIssue({ code: 'custom', path: [i, 'duration'], message: `a window of its own (limit ${other} has the same ${windowLabel(l.duration)} window; keep the smaller points)`, input: l.duration })
  })
  const names = new Map<string, number>()
  named(list).forEach((l, i) => {
    const other = names.get(l.name)
    // A repeated window already has its issue (and, unnamed, the same default name).
    if (other !== undefined && !repeated.has(i)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `a policy name of its own ("${l.name}" is limit ${other}'s)`, input: l.name })
    else names.set(l.name, i)
  })
}).transform(named)

const cidrList = z.array(z.string().refine((s) => parseCidr(s) !== undefined, 'an IP address or CIDR block such as 10.0.0.0/8 or fd00::/8'))

const ipv6Subnet = z.number().int().min(1).max(128)

const missing = z.enum(['ip', 'shared', 'skip'])
  .default('ip')
  .describe('When the request has no value for this part: ip = use the client address instead, shared = one bucket for all such requests, skip = do not limit the request.')

const keyPart = z.discriminatedUnion('by', [
  z.strictObject({
    by: z.literal('ip'),
    trustedProxies: cidrList.optional().describe('Overrides the plugin-level trustedProxies for this part.'),
    ipv6Subnet: ipv6Subnet.optional().describe('Overrides the plugin-level ipv6Subnet for this part.'),
  }),
  z.strictObject({ by: z.literal('header'), name: headerName.describe('The request header whose value is the key (as the client sent it).'), missing }),
  z.strictObject({ by: z.literal('identity'), missing }),
  z.strictObject({ by: z.literal('claim'), claim: z.string().min(1).describe('A claim of the verified token (ctx.identity.claims, set by jwt-auth).'), missing }),
  z.strictObject({ by: z.literal('route') }),
], { error: (iss) => iss.code === 'invalid_union' ? 'a key part: { by: ip | header | identity | claim | route }' : undefined })

const keyParts = z.array(keyPart).min(1, 'at least one key part').max(8, 'at most 8 key parts')

const SHORT_KEYS: ReadonlySet<string> = new Set(['ip', 'identity', 'route'])

/**
 * `key`: one part, a list of parts (a composite key: all of them, in order),
 * or the shorthand `ip`, `identity` or `route` (alone or in a list). Always
 * a list once parsed.
 * Parsed by hand so errors keep exact paths (`key[1].name`), which a plain
 * union of "part or list" would collapse into one "invalid input".
 */
const key = z.unknown().transform((v, ctx) => {
  if (typeof v === 'string') {
    if (SHORT_KEYS.has(v)) return [keyPart.parse({ by: v })]
    ctx.addIssue({ code: 'custom', message: 'ip, identity or route, or a key part { by: … }, or a list of parts', input: v })
    return z.NEVER
  }
  const r = Array.isArray(v)
    ? keyParts.safeParse(v.map((p: unknown) => typeof p === 'string' && SHORT_KEYS.has(p) ? { by: p } : p))
    : keyPart.safeParse(v)
  if (!r.success) {
    for (const issue of r.error.issues) ctx.addIssue({ ...issue, input: undefined } as Parameters<typeof ctx.addIssue>[0])
    return z.NEVER
  }
  return Array.isArray(r.data) ? r.data : [r.data]
})

export type KeyPart = z.output<typeof keyPart>

const override = z.strictObject({
  match: z.strictObject({
    identity: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)], { error: 'an identity subject, or a list of them' })
      .transform((v) => typeof v === 'string' ? [v] : v).optional()
      .describe('ctx.identity.subject (from api-key or jwt-auth) is one of these.'),
    header: z.strictObject({ name: headerName, value: z.string() }).optional()
      .describe('The request header has exactly this value.'),
  }).superRefine((m, ctx) => {
    if ((m.identity === undefined) === (m.header === undefined)) ctx.addIssue({ code: 'custom', message: 'exactly one of identity, header', input: m })
  }).describe('Which requests get these limits.'),
  limits: limitList.describe('Replaces the route\'s limits for the matching requests.'),
})

const redisNode = z.strictObject({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65_535),
})

const redisStore = z.strictObject({
  type: z.literal('redis'),
  url: z.string().regex(/^rediss?:\/\/[^\s]+$/, 'a redis:// or rediss:// URL').optional()
    .describe('One Redis node: redis://[user:password@]host:port[/db]; rediss:// for TLS. Use ${ENV} for the password.'),
  cluster: z.array(redisNode).min(1).optional()
    .describe('Redis Cluster seed nodes; the rest of the cluster is discovered.'),
  username: z.string().min(1).optional().describe('ACL user for AUTH; the URL may carry it instead.'),
  password: z.string().min(1).optional().describe('AUTH password; use ${ENV} substitution.'),
  tls: z.boolean().default(false).describe('TLS to Redis (for a single node rediss:// says the same).'),
  keyPrefix: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'a key prefix of letters, digits and _ . : -').default('outrider:rl')
    .describe('Prefix of every counter key in Redis.'),
  connectTimeout: duration.default(1_000).describe('Time to open a connection; the first snapshot waits at most this long for Redis.'),
  commandTimeout: duration.default(250).describe('A Redis command slower than this counts as a store error, so a stalled Redis never stalls requests.'),
  onStoreError: z.enum(['local', 'allow', 'deny']).default('local')
    .describe('When Redis cannot answer: local = decide with a per-process limiter (points / expectedInstances), allow = let the request through, deny = refuse it (429).'),
  expectedInstances: z.number().int().min(1).default(1)
    .describe('How many Outrider processes share the limit; the local fallback allows points / expectedInstances per process.'),
}).superRefine((s, ctx) => {
  if ((s.url === undefined) === (s.cluster === undefined)) ctx.addIssue({ code: 'custom', path: ['url'], message: 'exactly one of url (a single node) or cluster (seed nodes)', input: s.url })
})

export type RedisStoreConfig = z.output<typeof redisStore>

/** Keys one in-memory counter keeps unless `maxKeys` says otherwise: some 750 bytes each, 75 MB at the cap. */
export const DEFAULT_MAX_KEYS = 100_000

const memoryStore = z.strictObject({
  type: z.literal('memory'),
  maxKeys: z.number().int().min(1).max(100_000_000).default(DEFAULT_MAX_KEYS)
    .describe('Keys (clients) each counter keeps at most, one counter per scope and window; past it the least recently counted key is forgotten and starts a new window when it comes back.'),
})

const store = z.discriminatedUnion('type', [
  memoryStore,
  redisStore,
], { error: (iss) => iss.code === 'invalid_union' ? 'a store: { type: memory } or { type: redis, url | cluster }' : undefined })

/**
 * A route's rate limits. Either the shorthand `{ points, duration, key }`
 * (one limit) or `limits: [...]` (several, all must allow).
 */
export const schema = z.strictObject({
  points: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional()
    .describe('Shorthand for limits: [{ points, duration }].'),
  duration: windowSeconds.optional()
    .describe('Shorthand: the window of `points`, in seconds or as 1s, 1m, 1h, 1d.'),
  limits: limitList.optional()
    .describe('Limits that must all allow a request, e.g. 10 per second and 1000 per day.'),
  key: key.default([{ by: 'ip' }])
    .describe('What one counter counts: ip, identity, route, { by: header, name }, { by: claim, claim }, or a list of these (a composite key).'),
  trustedProxies: cidrList.default([])
    .describe('Proxies whose X-Forwarded-For is believed, as addresses or CIDR blocks. Empty: the TCP peer is the client.'),
  ipv6Subnet: ipv6Subnet.default(64)
    .describe('IPv6 clients are counted per network of this prefix length (an end site usually holds a /64); 128 = per address.'),
  scope: z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, 'a scope name of letters, digits, _ . -').optional()
    .describe('Counters are per scope: plugins naming the same scope share their counters, on any route. By default each plugin of a route counts apart (by the route name and its key; of two plugins of one route with the same key, give one a scope).'),
  overrides: z.array(override).max(64).default([])
    .describe('Other limits for some consumers; the first match wins.'),
  store: store.default({ type: 'memory', maxKeys: DEFAULT_MAX_KEYS })
    .describe('memory (per process, the default) or redis (shared by every Outrider using the same Redis).'),
  headersOnAllowed: z.boolean().default(false)
    .describe('Also send RateLimit-Policy and RateLimit on allowed responses (a 429 always has them).'),
}).superRefine((c, ctx) => {
  if (c.store.type === 'memory') longWindows(c, ctx)
  if (c.limits !== undefined) {
    if (c.points !== undefined) ctx.addIssue({ code: 'custom', path: ['points'], message: 'either points and duration, or limits, not both', input: c.points })
    if (c.duration !== undefined) ctx.addIssue({ code: 'custom', path: ['duration'], message: 'either points and duration, or limits, not both', input: c.duration })
    return
  }
  if (c.points === undefined && c.duration === undefined) {
    ctx.addIssue({ code: 'custom', path: ['limits'], message: 'a limit: points and duration, or limits: [{ points, duration }, …]', input: undefined })
    return
  }
  if (c.points === undefined) ctx.addIssue({ code: 'custom', path: ['points'], message: 'points to go with duration', input: undefined })
  if (c.duration === undefined) ctx.addIssue({ code: 'custom', path: ['duration'], message: 'a duration to go with points', input: undefined })
}).transform(({ points, duration, limits, ...rest }) => ({
  ...rest,
  limits: limits ?? named([{ points: points as number, duration: duration as number }]),
}))

export type RateLimitConfig = z.output<typeof schema>

/**
 * The memory store's counters end their windows with a timer per key, and a
 * Node timer cannot wait longer than 2^31-1 ms (24.8 days): a longer window
 * would end after 1 ms and never limit anything.
 */
export const MAX_MEMORY_WINDOW_S = Math.floor(MAX_TIMER_MS / 1000)

function longWindows (c: { duration?: number | undefined, limits?: ReadonlyArray<{ duration: number }> | undefined, overrides: ReadonlyArray<{ limits: ReadonlyArray<{ duration: number }> }> }, ctx: z.RefinementCtx): void {
  const message = `a window of at most ${MAX_MEMORY_WINDOW_S} seconds (24 days) with the memory store, whose timers cannot wait longer; use the redis store for longer windows`
  if (c.duration !== undefined && c.duration > MAX_MEMORY_WINDOW_S) ctx.addIssue({ code: 'custom', path: ['duration'], message, input: c.duration })
  c.limits?.forEach((l, i) => { if (l.duration > MAX_MEMORY_WINDOW_S) ctx.addIssue({ code: 'custom', path: ['limits', i, 'duration'], message, input: l.duration }) })
  c.overrides.forEach((o, j) => o.limits.forEach((l, i) => { if (l.duration > MAX_MEMORY_WINDOW_S) ctx.addIssue({ code: 'custom', path: ['overrides', j, 'limits', i, 'duration'], message, input: l.duration }) }))
}
