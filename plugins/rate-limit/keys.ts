import { hash } from 'node:crypto'
import type { RequestContext } from '../../src/plugin.ts'
import { compileClientIp, type ClientIpOptions } from './client-ip.ts'
import type { KeyPart } from './schema.ts'

/** What one key part yields: a key component, or undefined to leave the request unlimited. */
type PartFn = (ctx: RequestContext) => string | undefined

/** Longest value kept as it is in a key; longer ones are hashed so keys stay bounded. */
const MAX_VALUE = 256

/**
 * An identity subject as a key component: a name an auth plugin chose, kept
 * readable. `|` separates the parts of a composite key and `%` escapes, so
 * both are escaped and no two different values (or pairs of values) can make
 * the same key. Values over MAX_VALUE become `%#` + their SHA-256, a form no
 * escaped value can take.
 */
function component (value: string): string {
  if (value.length > MAX_VALUE) return `%#${hash('sha256', value, 'base64url')}`
  if (value.includes('%') || value.includes('|')) return value.replaceAll('%', '%25').replaceAll('|', '%7C')
  return value
}

/**
 * A header or claim value as a key component: the first 16 bytes of its
 * SHA-256, in base64url (22 characters, no `|` or `%`). Such a value is
 * often a credential (an API key header, a bearer token's claim), and a key
 * is a Redis key name: KEYS, MONITOR, replicas and dumps would show it.
 * 128 bits leave no collision to fear, whatever the value's length.
 */
function digest (value: string): string {
  return hash('sha256', value, 'buffer').subarray(0, 16).toString('base64url')
}

function headerValue (ctx: RequestContext, name: string): string | undefined {
  const v = ctx.req.headers[name]
  if (v === undefined) return undefined
  const s = typeof v === 'string' ? v : v.join(',')
  return s === '' ? undefined : s
}

function claimValue (ctx: RequestContext, claim: string): string | undefined {
  const claims = ctx.identity?.claims
  // Own properties only: a claim named `constructor` must not read Object's.
  if (claims === undefined || !Object.hasOwn(claims, claim)) return undefined
  const v = claims[claim]
  if (v === null || v === undefined || v === '') return undefined
  return typeof v === 'string' ? v : JSON.stringify(v)
}

/**
 * The scope of a plugin that names none: the route name, `~` and a digest of
 * its key. Two rate-limit plugins of one route (per identity and per address,
 * say) would otherwise count each request twice into the same counters when
 * their keys coincide (an identity missing falls back to the address). The
 * limits are left out, so a reload that changes points (a control-plane rule
 * scaling the limit) keeps the counts; `~` is no scope character, so no named
 * scope can take it. PluginContext does not tell a plugin its place on the
 * route: two plugins with the same key share unless one names a scope.
 *
 * @example
 * defaultScope('api', [{ by: 'ip' }]) // 'api~' and 8 base64url characters
 */
export function defaultScope (route: string, parts: readonly KeyPart[]): string {
  return `${route}~${hash('sha256', JSON.stringify(parts), 'base64url').slice(0, 8)}`
}

/**
 * Compiles the `key` list into one function, once per snapshot. Each part
 * is tagged (`ip=`, `h=`, `id=`, `c=`), so an identity can never take the
 * counter of an address that happens to be spelt the same, and a request
 * whose identity is missing (counted by address instead) shares the counter
 * of that address under an `ip` key. `shared` for a missing value is the bare
 * tag: one counter for every request without it. Addresses, routes and
 * identity subjects stay readable; header and claim values are digests.
 *
 * @example
 * const keyOf = compileKey([{ by: 'identity', missing: 'ip' }, { by: 'header', name: 'x-tenant', missing: 'shared' }], { trustedProxies: [], ipv6Subnet: 64 })
 * keyOf(ctx) // 'id=svc-a|h=' + 22 base64url characters, or 'ip=192.0.2.1|h' without identity and tenant
 */
export function compileKey (parts: readonly KeyPart[], ip: ClientIpOptions): (ctx: RequestContext) => string | undefined {
  const clientIp = compileClientIp(ip)
  const byIp: PartFn = (ctx) => `ip=${clientIp(ctx)}`

  const orElse = (tag: string, missing: 'ip' | 'shared' | 'skip'): PartFn => {
    if (missing === 'ip') return byIp
    if (missing === 'shared') return () => tag
    return () => undefined
  }

  const compiled: PartFn[] = parts.map((p): PartFn => {
    switch (p.by) {
      case 'ip': {
        if (p.trustedProxies === undefined && p.ipv6Subnet === undefined) return byIp
        const own = compileClientIp({ trustedProxies: p.trustedProxies ?? ip.trustedProxies, ipv6Subnet: p.ipv6Subnet ?? ip.ipv6Subnet })
        return (ctx) => `ip=${own(ctx)}`
      }
      case 'header': {
        const name = p.name
        const missing = orElse('h', p.missing)
        return (ctx) => {
          const v = headerValue(ctx, name)
          return v === undefined ? missing(ctx) : `h=${digest(v)}`
        }
      }
      case 'identity': {
        const missing = orElse('id', p.missing)
        return (ctx) => {
          const s = ctx.identity?.subject
          return s === undefined || s === '' ? missing(ctx) : `id=${component(s)}`
        }
      }
      case 'claim': {
        const claim = p.claim
        const missing = orElse('c', p.missing)
        return (ctx) => {
          const v = claimValue(ctx, claim)
          return v === undefined ? missing(ctx) : `c=${digest(v)}`
        }
      }
      case 'route':
        return () => 'route'
    }
  })

  if (compiled.length === 1) return compiled[0] as PartFn
  return (ctx) => {
    let key = ''
    for (let i = 0; i < compiled.length; i++) {
      const c = (compiled[i] as PartFn)(ctx)
      if (c === undefined) return undefined
      key = i === 0 ? c : `${key}|${c}`
    }
    return key
  }
}
