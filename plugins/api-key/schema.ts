import { z } from 'zod'
import { HOP_BY_HOP } from '../../src/http/hop-by-hop.ts'

/** RFC 9110 §5.6.2 `token`: a header name (§5.1). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/** RFC 6749 §3.3 `scope-token`: printable ASCII except space, `"` and `\`. */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/

/** Printable ASCII without `"` and `\`: safe inside the challenge's quoted realm (RFC 9110 §5.6.4). */
const QUOTABLE = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/

/** Hop-by-hop fields never reach the plugin; framing and routing fields are Outrider's own. */
const RESERVED_HEADERS: ReadonlySet<string> = new Set([...HOP_BY_HOP, 'host', 'content-length', 'trailer', 'cookie'])

const headerName = z.string()
  .regex(TOKEN, 'a header name (an RFC 9110 token)')
  .transform((s) => s.toLowerCase())
  .refine((s) => !RESERVED_HEADERS.has(s), { error: (iss) => `a header other than "${String(iss.input)}" (hop-by-hop, framing and cookie headers cannot carry a key)` })

const scope = z.string().regex(SCOPE_TOKEN, 'a scope token (printable ASCII, no spaces, " or \\)')

const HASH = /^sha256:[0-9a-fA-F]{64}$/

/** One key as stored: never the key itself. */
export const keyEntry = z.strictObject({
  id: z.string().min(1).describe('Who the key belongs to: becomes the identity subject (rate limits, logs, forwardId). Several keys may share an id while one is rotated out.'),
  hash: z.string().regex(HASH, 'sha256:<64 hex digits>, the SHA-256 of the key (hashApiKey in plugins/api-key/hash.ts)').transform((s) => s.toLowerCase())
    .describe('sha256:<hex> of the key.'),
  scopes: z.array(scope).default([]).describe('Scopes the key grants.'),
})

export type KeyEntry = z.output<typeof keyEntry>

/** Issues for keys listed twice: the same key for two ids would make the identity a coin toss. */
export function duplicateHashes (entries: readonly KeyEntry[], ctx: z.RefinementCtx): void {
  const seen = new Map<string, number>()
  entries.forEach((e, i) => {
    const first = seen.get(e.hash)
    if (first !== undefined) ctx.addIssue({ code: 'custom', path: [i, 'hash'], message: `a key of its own (the same hash as entry ${first})`, input: e.hash })
    else seen.set(e.hash, i)
  })
}

/** The contents of `keysFile`: the same entries as `keys`. */
export const keyList = z.array(keyEntry).superRefine(duplicateHashes)

/**
 * Authenticates requests by an API key. Keys are configured as hashes only;
 * make one with hashApiKey() from plugins/api-key/hash.ts, or from a shell:
 * printf %s "$KEY" | node -e "let s='';process.stdin.on('data',(d)=>s+=d).on('end',()=>console.log('sha256:'+require('node:crypto').hash('sha256',s)))"
 */
export const schema = z.strictObject({
  keyFrom: z.discriminatedUnion('from', [
    z.strictObject({ from: z.literal('header'), name: headerName.default('x-api-key').describe('The header that carries the key.') }),
    z.strictObject({ from: z.literal('query'), name: z.string().regex(/^[A-Za-z0-9._~-]+$/, 'a query parameter name of letters, digits and . _ ~ -').default('api_key').describe('The query parameter that carries the key.') }),
  ]).default({ from: 'header', name: 'x-api-key' })
    .describe('Where the key is: a header (default x-api-key) or a query parameter (keys in URLs end up in logs and browser history; prefer a header).'),
  keys: keyList.default([])
    .describe('The accepted keys: { id, hash: sha256:<hex>, scopes }. The hash, never the key, so a leaked config leaks no key. Make a hash with hashApiKey() (plugins/api-key/hash.ts).'),
  keysFile: z.string().min(1).optional()
    .describe('A JSON (.json) or YAML file with more entries of the same shape, read once when the config is applied (a reload rereads it). Relative to the working directory.'),
  requiredScopes: z.array(scope).default([])
    .describe('Scopes the key must grant, all of them (else 403).'),
  forwardKey: z.boolean().default(false)
    .describe('Send the key upstream. By default it is removed: the upstream should trust the proxy, not see the credential.'),
  forwardId: headerName.optional()
    .describe('A request header that tells the upstream the key\'s id (e.g. x-consumer-id). The client\'s own copy is always removed first.'),
  realm: z.string().regex(QUOTABLE, 'a realm of printable ASCII without " or \\').default('outrider')
    .describe('The realm of the WWW-Authenticate challenge (RFC 9110 §11.5).'),
}).superRefine((c, ctx) => {
  if (c.keys.length === 0 && c.keysFile === undefined) {
    ctx.addIssue({ code: 'custom', path: ['keys'], message: 'at least one key: keys, or a keysFile', input: c.keys })
  }
  if (c.forwardId !== undefined && c.keyFrom.from === 'header' && c.keyFrom.name === c.forwardId) {
    ctx.addIssue({ code: 'custom', path: ['forwardId'], message: `a header other than "${c.forwardId}", which carries the key`, input: c.forwardId })
  }
})

export type ApiKeyConfig = z.output<typeof schema>
