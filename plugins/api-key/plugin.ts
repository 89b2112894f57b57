import { hash, timingSafeEqual } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { extname } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { definePlugin, type RequestContext } from '../../src/plugin.ts'
import { BadRequestError, ConfigError, ForbiddenError, UnauthorizedError } from '../../src/errors.ts'
import { redactQueryParam } from '../../src/access-log.ts'
import { keyList, schema, type ApiKeyConfig, type KeyEntry } from './schema.ts'

export { hashApiKey } from './hash.ts'

/** A key as the hot path needs it: its digest as bytes, its identity ready to hand out. */
interface StoredKey {
  readonly digest: Buffer
  readonly id: string
  readonly scopes: readonly string[]
}

const MISSING: unique symbol = Symbol('missing')
const REPEATED: unique symbol = Symbol('repeated')

/** `routes[0]…`-style path of a zod issue inside the keys file. */
function issuePath (path: ReadonlyArray<PropertyKey>): string {
  return path.map((p) => typeof p === 'number' ? `[${p}]` : `.${String(p)}`).join('').replace(/^\./, '')
}

/** Reads and validates `keysFile` (once per snapshot); a bad file fails the config like a bad field. */
async function loadKeysFile (file: string): Promise<KeyEntry[]> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new ConfigError(file, [{ path: '', expected: `a readable API key file (${(err as Error).message.split(',')[0] ?? ''})` }], { cause: err })
  }
  let doc: unknown
  try {
    doc = extname(file).toLowerCase() === '.json' ? JSON.parse(text) : parseYaml(text)
  } catch (err) {
    throw new ConfigError(file, [{ path: '', expected: `valid ${extname(file).toLowerCase() === '.json' ? 'JSON' : 'YAML'}: ${(err as Error).message.split('\n')[0] ?? ''}` }], { cause: err })
  }
  const r = keyList.safeParse(doc ?? [])
  if (!r.success) throw new ConfigError(file, r.error.issues.map((i) => ({ path: issuePath(i.path), expected: i.message })), { cause: r.error })
  return r.data
}

/**
 * Is the raw parameter name `raw` the name `name` in any spelling? `api%5Fkey`
 * is `api_key` to any decoding upstream (RFC 3986 §2.3: percent-encoded
 * unreserved characters are equivalent to them), so it must not pass as
 * another parameter. Only %XX is decoded: `name` is unreserved characters,
 * never a space a `+` could stand for.
 */
function isName (raw: string, name: string): boolean {
  if (raw === name) return true
  if (raw.length <= name.length || !raw.includes('%')) return false
  try { return decodeURIComponent(raw) === name } catch { return false }
}

/** The values of query parameter `name` in a raw query string (form-urlencoded, so `+` is a space). */
function queryKey (query: string, name: string): string | typeof MISSING | typeof REPEATED {
  if (query === '' || (!query.includes(name) && !query.includes('%'))) return MISSING
  let found: string | undefined
  for (const part of query.split('&')) {
    const eq = part.indexOf('=')
    if (!isName(eq === -1 ? part : part.slice(0, eq), name)) continue
    if (found !== undefined) return REPEATED
    try {
      found = eq === -1 ? '' : decodeURIComponent(part.slice(eq + 1).replaceAll('+', ' '))
    } catch {
      found = '\u0000' // not percent-decodable: no key can match it
    }
  }
  return found === undefined || found === '' ? MISSING : found
}

/** `path?query` without parameter `name`, however it is spelt; other parameters keep their bytes and order. */
function withoutParam (pathAndQuery: string, name: string): string {
  const q = pathAndQuery.indexOf('?')
  if (q === -1) return pathAndQuery
  const kept = pathAndQuery.slice(q + 1).split('&').filter((part) => {
    const eq = part.indexOf('=')
    return !isName(eq === -1 ? part : part.slice(0, eq), name)
  })
  return kept.length === 0 ? pathAndQuery.slice(0, q) : `${pathAndQuery.slice(0, q)}?${kept.join('&')}`
}

/**
 * Authenticates requests by an API key from a header or a query parameter,
 * against keys stored as SHA-256 hashes (see hash.ts for why a fast hash is
 * right for random keys).
 *
 * The lookup hashes the presented key and finds its digest in a Map. The
 * Map's string comparison is not constant-time, but it compares digests of
 * what the client sent, and timing the comparison of a SHA-256 digest tells
 * nothing about any preimage; the hit is then confirmed with
 * `crypto.timingSafeEqual` so no byte-wise early exit on secret-derived data
 * remains on the path.
 *
 * Missing or unknown key: 401 with `WWW-Authenticate: ApiKey realm="…"` (an
 * unregistered scheme, named after what the client must send; RFC 9110
 * §11.6.1 requires a challenge with every 401). A key without the route's
 * scopes: 403. On success `ctx.identity` is `{ subject: id, scopes }`, the
 * key is removed before forwarding (unless `forwardKey`), and `forwardId`
 * carries the id upstream. Each decision is annotated for the access log and
 * the trace: `auth` (ok, missing, invalid, forbidden) and, on a refusal,
 * `authReason` (`repeated`, `unknownKey`, `scope`).
 *
 * @example
 * // routes[0].plugins:
 * // - name: api-key
 * //   config:
 * //     keys:
 * //       - { id: billing-batch, hash: 'sha256:9f86d0…', scopes: [invoices:write] }
 * //     keysFile: /etc/outrider/api-keys.yaml
 * //     requiredScopes: [invoices:write]
 * //     forwardId: x-consumer-id
 */
export default definePlugin({
  name: 'api-key',
  schema,
  async create (config: ApiKeyConfig) {
    const entries = config.keysFile === undefined ? config.keys : [...config.keys, ...await loadKeysFile(config.keysFile)]
    const byDigest = new Map<string, StoredKey>()
    for (const e of entries) {
      const hex = e.hash.slice('sha256:'.length)
      if (byDigest.has(hex)) {
        throw new ConfigError(config.keysFile ?? 'config', [{ path: '', expected: `each key once: the key of "${e.id}" is listed both in keys and in keysFile` }])
      }
      byDigest.set(hex, { digest: Buffer.from(hex, 'hex'), id: e.id, scopes: Object.freeze([...e.scopes]) })
    }

    const keyFrom = config.keyFrom
    const required = config.requiredScopes
    const scopeText = required.join(' ')
    const forwardKey = config.forwardKey
    const forwardId = config.forwardId
    const challenge = Object.freeze({ 'www-authenticate': `ApiKey realm="${config.realm}"` })
    // Whatever the parameter is called, the access log must not show the key.
    const unredact = keyFrom.from === 'query' ? redactQueryParam(keyFrom.name) : undefined

    function extract (ctx: RequestContext): string | typeof MISSING | typeof REPEATED {
      if (keyFrom.from === 'query') return queryKey(ctx.query, keyFrom.name)
      const v = ctx.upstreamHeaders[keyFrom.name]
      if (v === undefined) return MISSING
      if (typeof v !== 'string') return REPEATED
      const key = v.trim()
      return key === '' ? MISSING : key
    }

    /** Called optionally: unit tests drive hooks with partial contexts. */
    function annotate (ctx: RequestContext, outcome: string, reason: string | undefined): void {
      ctx.annotate('auth', outcome)
      if (reason !== undefined) ctx.annotate('authReason', reason)
    }

    return {
      onRequest (ctx: RequestContext): void {
        const h = ctx.upstreamHeaders
        // First, whatever happens next: the upstream trusts this header.
        if (forwardId !== undefined) delete h[forwardId]

        const key = extract(ctx)
        if (key === MISSING) {
          annotate(ctx, 'missing', undefined)
          throw new UnauthorizedError('an API key is required', { headers: challenge })
        }
        if (key === REPEATED) {
          annotate(ctx, 'invalid', 'repeated')
          throw new BadRequestError(`the API key is sent more than once (${keyFrom.name})`)
        }
        const digest = hash('sha256', key, 'buffer')
        const found = byDigest.get(digest.toString('hex'))
        if (found === undefined || !timingSafeEqual(found.digest, digest)) {
          annotate(ctx, 'invalid', 'unknownKey')
          throw new UnauthorizedError('the API key is not valid', { headers: challenge })
        }

        for (let i = 0; i < required.length; i++) {
          if (!found.scopes.includes(required[i] as string)) {
            annotate(ctx, 'forbidden', 'scope')
            throw new ForbiddenError(`the API key lacks a required scope (${scopeText})`)
          }
        }

        if (!forwardKey) {
          if (keyFrom.from === 'header') delete h[keyFrom.name]
          else ctx.upstreamPath = withoutParam(ctx.upstreamPath, keyFrom.name)
        }
        if (forwardId !== undefined) h[forwardId] = found.id
        // Shared and frozen: built once per key, not per request.
        ctx.identity = { subject: found.id, scopes: found.scopes as string[] }
        annotate(ctx, 'ok', undefined)
      },

      close () {
        unredact?.()
      },
    }
  },
})
