import { z } from 'zod'
import { plugins } from '../../plugins/index.ts'
import { duration, size } from './units.ts'

/**
 * The config document (ARCHITECTURE §3). Every object is strict so a typo is an
 * error, every field has a default where one makes sense, and `.describe()` is
 * the text the README's reference is written from.
 */

const port = z.number().int().min(0).max(65535)

const listen = z.strictObject({
  host: z.string().min(1).default('0.0.0.0').describe('Address the proxy listener binds.'),
  port: port.default(8080).describe('Port of the proxy listener (0 picks a free one).'),
})

const admin = z.strictObject({
  enabled: z.boolean().default(true).describe('Serve the admin endpoints.'),
  host: z.string().min(1).default('127.0.0.1').describe('Address of the admin listener; loopback by default.'),
  port: port.default(9901).describe('Port of the admin listener (0 picks a free one).'),
})

const limits = z.strictObject({
  maxHeaderSize: size.default(16 * 1024).describe('Largest request head (request line + headers) accepted; larger → 431.'),
  maxBodySize: size.default(0).describe('Largest request body forwarded, in bytes; 0 means no limit. Larger → 413.'),
  headersTimeout: duration.default(10_000).describe('Time a client has to send the complete request head (slowloris guard) → 408.'),
  requestTimeout: duration.default(0).describe('Time a client has to send the whole request, body included; 0 disables it.'),
  keepAliveTimeout: duration.default(65_000).describe('Idle time before a client keep-alive connection is closed.'),
  maxRequestsPerSocket: z.number().int().nonnegative().default(0).describe('Requests served on one client connection before it is closed; 0 = unlimited.'),
})

const shutdown = z.strictObject({
  drainTimeout: duration.default(30_000).describe('On SIGTERM, how long in-flight requests may take before the process exits anyway.'),
})

const upstreamTimeouts = z.strictObject({
  connect: duration.default(5_000).describe('Time to establish a connection to an endpoint → 502 on failure.'),
  request: duration.default(30_000).describe('Time from sending the request until the upstream response head arrives → 504.'),
  idle: duration.default(60_000).describe('Longest gap between two body chunks from the upstream → 504 (or a reset once streaming).'),
  keepAlive: duration.default(60_000).describe('How long an idle pooled upstream connection is kept.'),
})

const endpoint = z.strictObject({
  url: z.url({ protocol: /^https?$/, error: 'an http:// or https:// URL' }).describe('Base URL of the endpoint (scheme, host, port).'),
  weight: z.number().int().min(1).max(1000).default(1).describe('Relative share of traffic for weighted policies.'),
})

const hashOn = z.discriminatedUnion('by', [
  z.strictObject({ by: z.literal('header'), header: z.string().min(1).toLowerCase() }),
  z.strictObject({ by: z.literal('cookie'), cookie: z.string().min(1) }),
  z.strictObject({ by: z.literal('ip') }),
])

const loadBalancer = z.discriminatedUnion('policy', [
  z.strictObject({ policy: z.literal('round_robin') }),
  z.strictObject({ policy: z.literal('weighted') }),
  z.strictObject({ policy: z.literal('least_request') }),
  z.strictObject({ policy: z.literal('random') }),
  z.strictObject({
    policy: z.literal('consistent_hash'),
    hashOn: hashOn.default({ by: 'ip' }).describe('Where the hash key comes from.'),
  }),
])

const cluster = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'a name of letters, digits, _ . -'),
  endpoints: z.array(endpoint).min(1, 'at least one endpoint'),
  loadBalancer: loadBalancer.default({ policy: 'round_robin' }).describe('How an endpoint is picked per request.'),
  timeouts: upstreamTimeouts.default(upstreamTimeouts.parse({})),
  connectionsPerEndpoint: z.number().int().min(1).default(128).describe('Max pooled connections to each endpoint.'),
})

const valueMatch = z.union([
  z.string(),
  z.strictObject({
    exact: z.string().optional(),
    prefix: z.string().optional(),
    regex: z.string().optional(),
    present: z.boolean().optional(),
  }).refine((m) => Object.values(m).filter((v) => v !== undefined).length === 1, 'exactly one of exact, prefix, regex, present'),
], { error: 'a string (exact match) or one of { exact | prefix | regex | present }' })

const validRegex = (s: string): boolean => { try { new RegExp(s); return true } catch { return false } }

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'QUERY'] as const

const match = z.strictObject({
  host: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional()
    .describe('Host(s) to match: exact (`api.example.com`) or a suffix wildcard (`*.example.com`). Port ignored.'),
  path: z.string().startsWith('/').optional().describe('Exact path.'),
  pathPrefix: z.string().startsWith('/').optional().describe('Path prefix, on segment boundaries is not required (`/api` matches `/apis`).'),
  pathRegex: z.string().refine(validRegex, 'a valid JavaScript regular expression').optional().describe('Regular expression tested against the path.'),
  methods: z.array(z.enum(METHODS)).min(1).optional().describe('Allowed methods; others fall through to the next route.'),
  headers: z.record(z.string().toLowerCase(), valueMatch).optional().describe('Header name → match; all must match.'),
  query: z.record(z.string(), valueMatch).optional().describe('Query parameter → match; all must match.'),
}).refine((m) => [m.path, m.pathPrefix, m.pathRegex].filter((v) => v !== undefined).length <= 1,
  'at most one of path, pathPrefix, pathRegex')

const pluginEntry = z.discriminatedUnion('name', (plugins.map((p) => z.strictObject({
  name: z.literal(p.name),
  config: p.schema.prefault({}),
}))) as unknown as [z.ZodObject<{ name: z.ZodLiteral<string>, config: z.ZodType }>])

const route = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'a name of letters, digits, _ . -'),
  match: match.default({}).describe('What requests this route takes; empty matches everything.'),
  cluster: z.string().describe('The cluster requests are forwarded to.'),
  rewrite: z.strictObject({
    pathPrefix: z.string().startsWith('/').describe('Replaces the matched `pathPrefix` before forwarding.'),
  }).optional(),
  timeouts: z.strictObject({ request: duration.optional(), idle: duration.optional() }).optional()
    .describe('Per-route overrides of the cluster timeouts.'),
  maxBodySize: size.optional().describe('Overrides limits.maxBodySize for this route.'),
  plugins: z.array(pluginEntry).default([]).describe('The route\'s plugin pipeline, in order.'),
})

export const configSchema = z.strictObject({
  listen: listen.default(listen.parse({})),
  admin: admin.default(admin.parse({})),
  workers: z.union([z.literal('auto'), z.number().int().min(1).max(256)]).default(1)
    .describe('Worker processes sharing the listener: `auto` = one per core. 1 for a sidecar.'),
  limits: limits.default(limits.parse({})),
  shutdown: shutdown.default(shutdown.parse({})),
  clusters: z.array(cluster).default([]),
  routes: z.array(route).default([]),
}).superRefine((cfg, ctx) => {
  const clusterNames = new Set<string>()
  cfg.clusters.forEach((c, i) => {
    if (clusterNames.has(c.name)) ctx.addIssue({ code: 'custom', path: ['clusters', i, 'name'], message: `a unique cluster name ("${c.name}" is used twice)` })
    clusterNames.add(c.name)
  })
  const routeNames = new Set<string>()
  cfg.routes.forEach((r, i) => {
    if (routeNames.has(r.name)) ctx.addIssue({ code: 'custom', path: ['routes', i, 'name'], message: `a unique route name ("${r.name}" is used twice)` })
    routeNames.add(r.name)
    if (!clusterNames.has(r.cluster)) {
      ctx.addIssue({ code: 'custom', path: ['routes', i, 'cluster'], message: `the name of a declared cluster ("${r.cluster}" is not one of: ${[...clusterNames].join(', ') || 'none'})` })
    }
    if (r.rewrite !== undefined && r.match.pathPrefix === undefined) {
      ctx.addIssue({ code: 'custom', path: ['routes', i, 'rewrite'], message: 'match.pathPrefix to be set when rewrite.pathPrefix is used' })
    }
  })
})

export type Config = z.output<typeof configSchema>
export type ClusterConfig = Config['clusters'][number]
export type RouteConfig = Config['routes'][number]
export type MatchConfig = RouteConfig['match']
export type ValueMatch = z.output<typeof valueMatch>
export type LoadBalancerConfig = ClusterConfig['loadBalancer']
export type EndpointConfig = ClusterConfig['endpoints'][number]
