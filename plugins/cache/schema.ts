import { z } from 'zod'
import { duration, longDuration, size } from '../../src/config/units.ts'

const redisNode = z.strictObject({ host: z.string().min(1), port: z.number().int().min(1).max(65535) })

const l2 = z.strictObject({
  type: z.literal('redis'),
  url: z.string().regex(/^rediss?:\/\/[^\s]+$/, 'a redis:// or rediss:// URL').optional()
    .describe('One Redis node: redis://[user:password@]host:port[/db]; rediss:// for TLS.'),
  cluster: z.array(redisNode).min(1).optional().describe('Redis Cluster seed nodes.'),
  username: z.string().min(1).optional(),
  password: z.string().min(1).optional().describe('AUTH password; use ${ENV} substitution.'),
  tls: z.boolean().default(false),
  keyPrefix: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'a key prefix of letters, digits and _ . : -').default('outrider:cache')
    .describe('Prefix of every key; sidecars with the same prefix share entries and purges.'),
  connectTimeout: duration.default(1_000),
  commandTimeout: duration.default(100)
    .describe('An L2 lookup slower than this counts as a miss: a slow Redis never holds a request for long.'),
  compressAbove: size.default(1024).describe('Bodies larger than this are stored zstd-compressed.'),
}).superRefine((s, ctx) => {
  if ((s.url === undefined) === (s.cluster === undefined)) ctx.addIssue({ code: 'custom', path: ['url'], message: 'exactly one of url (a single node) or cluster (seed nodes)', input: s.url })
})

export type L2Config = z.output<typeof l2>

/** The `cache` plugin: a shared HTTP cache (RFC 9111) in front of the route's upstream. */
export const schema = z.strictObject({
  maxSize: size.default(64 * 1024 * 1024).describe('L1 (in-process) capacity in bytes, bodies and headers.'),
  maxEntrySize: size.default(1024 * 1024).describe('Responses with larger bodies are not stored (they stream as usual).'),
  l2: l2.optional().describe('A Redis shared by every sidecar: an L1 miss looks there before going upstream.'),
  heuristicFraction: z.number().min(0).max(1).default(0.1)
    .describe('Heuristic freshness for responses with Last-Modified and no explicit lifetime: this fraction of their age (RFC 9111 §4.2.2).'),
  heuristicMax: longDuration.default(86_400_000).describe('Upper bound of a heuristic lifetime.'),
  keepStale: longDuration.default(3_600_000)
    .describe('How long a stale response with a validator (ETag, Last-Modified) is kept for revalidation.'),
  collapse: z.boolean().default(true).describe('Concurrent misses for one URL wait for the first one’s response instead of each going upstream.'),
  collapseTimeout: duration.default(5_000).describe('How long a collapsed request waits before going upstream itself.'),
  methods: z.array(z.enum(['GET', 'HEAD'])).default(['GET', 'HEAD']).describe('Request methods answered from the cache (HEAD from a stored GET).'),
  setCookie: z.enum(['bypass', 'strip', 'store']).default('bypass')
    .describe('Responses with Set-Cookie: bypass = not stored; strip = stored without Set-Cookie; store = stored and replayed to every client (only for cookies that are not per user).'),
  generateEtag: z.boolean().default(false).describe('Give stored responses without a validator a strong ETag (a hash of the body), so clients can revalidate.'),
  normaliseAcceptEncoding: z.boolean().default(true)
    .describe('For Vary: Accept-Encoding, match requests by the coding they accept best (br, zstd, gzip, identity), not the header’s spelling.'),
  targetedCacheControl: z.array(z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'a header name').transform((s) => s.toLowerCase())).default(['cdn-cache-control'])
    .describe('Targeted cache-control fields this cache obeys (RFC 9213), first valid one wins and overrides Cache-Control and Expires; [] to obey only Cache-Control.'),
  statusHeader: z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'a header name').default('x-cache')
    .describe('Response header saying HIT, MISS, STALE, REVALIDATED or BYPASS; empty to omit.').or(z.literal('')),
  tagHeader: z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'a header name').optional()
    .describe('Response header listing purge tags (e.g. Cache-Tag or Surrogate-Key: space or comma separated).'),
})

export type CacheConfig = z.output<typeof schema>
