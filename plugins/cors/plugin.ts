import type { IncomingMessage } from 'node:http'
import { definePlugin, type HeaderMap, type RequestContext } from '../../src/plugin.ts'
import { schema } from './schema.ts'
import { compileOrigins } from './origin.ts'
import { appendVary } from '../../src/http/vary.ts'
import { ForbiddenError } from '../../src/errors.ts'

/**
 * The first value of request header `lower` as the client sent it. CORS
 * answers what the browser sent, so this reads the raw head rather than
 * `upstreamHeaders`, which another plugin may have edited (removing `Origin`
 * before it goes upstream is a common config). A scan with no allocation:
 * the length test rejects almost every name before any character is compared.
 */
function clientHeader (req: IncomingMessage, lower: string): string | undefined {
  const raw = req.rawHeaders
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    if (name.length === lower.length && equalsLower(name, lower)) return raw[i + 1]
  }
  return undefined
}

/**
 * ASCII case-insensitive comparison against a lower-case name of letters and
 * `-`. `| 0x20` lower-cases A–Z and maps no other token character onto a-z or
 * `-`, so it cannot produce a false match.
 */
function equalsLower (name: string, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    if ((name.charCodeAt(i) | 0x20) !== lower.charCodeAt(i)) return false
  }
  return true
}

/**
 * The CORS protocol of the Fetch standard (§3.2) at the proxy.
 *
 * - A preflight (OPTIONS with `Origin` and `Access-Control-Request-Method`,
 *   §3.2.2) is answered here with 204 and never forwarded. For an allowed
 *   origin the answer carries the configured lists and the browser compares
 *   the method and headers itself, so its console names the one that is
 *   missing. For a disallowed origin it carries no CORS headers at all: the
 *   browser fails the preflight; a 403 would add nothing a browser uses and
 *   would count a routine probe as an error.
 * - Other requests go upstream untouched; the response gets the allow headers
 *   for an allowed `Origin`. The route's policy is authoritative: whatever
 *   CORS headers the upstream sent are replaced, so a permissive backend
 *   cannot widen it.
 * - WebSocket handshakes: browsers apply no CORS to them (a page on any site
 *   may open a socket, cookies and all: cross-site WebSocket hijacking), so
 *   `Origin` is checked here, as RFC 6455 §10.2 advises. A handshake whose
 *   `Origin` is not allowed is refused with 403; one without `Origin` (not
 *   from a browser) passes. Scripts cannot set `Upgrade` (Fetch's forbidden
 *   request-headers), so any request a page sends with it is a handshake.
 * - Caches (§3.2.5): a `*` policy sends `Access-Control-Allow-Origin: *` on
 *   every response and no `Vary`; any other policy sends `Vary: Origin` on
 *   every response, with or without `Origin`, so a shared cache never serves
 *   one origin's answer (or a non-CORS one) to another.
 *
 * Place it first in the route: a preflight carries no credentials, so an auth
 * plugin before it would refuse every preflight. The route need not list
 * OPTIONS in `match.methods`: the router gives it the preflights for the
 * methods it does list (src/router.ts, `takesPreflight`).
 *
 * @example
 * // routes[0].plugins:
 * // - name: cors
 * //   config:
 * //     allowOrigins: [https://app.example.com, 'https://*.example.com']
 * //     allowMethods: [GET, POST, PUT, DELETE]
 * //     allowHeaders: [authorization, content-type]
 * //     exposeHeaders: [x-request-id]
 * //     allowCredentials: true
 * //     maxAge: 600
 */
export default definePlugin({
  name: 'cors',
  schema,
  create (config) {
    const origins = compileOrigins(config.allowOrigins)
    const credentials = config.allowCredentials
    // The answer is the same for every origin: `*` works and nothing varies.
    const staticAny = origins.any && !credentials
    const reflectMethods = config.allowMethods[0] === '*'
    const reflectHeaders = config.allowHeaders[0] === '*'
    const allowMethods = config.allowMethods.join(', ')
    const allowHeaders = config.allowHeaders.length === 0 ? undefined : config.allowHeaders.join(', ')
    const exposeHeaders = config.exposeHeaders.length === 0 ? undefined : config.exposeHeaders.join(', ')
    const maxAge = config.maxAge === undefined ? undefined : String(config.maxAge)
    const privateNetwork = config.allowPrivateNetwork
    const preflightVary = [
      staticAny ? undefined : 'Origin',
      reflectMethods ? 'Access-Control-Request-Method' : undefined,
      reflectHeaders ? 'Access-Control-Request-Headers' : undefined,
      privateNetwork ? 'Access-Control-Request-Private-Network' : undefined,
    ].filter((v) => v !== undefined).join(', ')

    function preflight (req: IncomingMessage, origin: string, method: string): { status: number, headers: HeaderMap } {
      const headers: HeaderMap = {}
      if (preflightVary !== '') headers.vary = preflightVary
      if (!origins.allows(origin)) return { status: 204, headers }
      headers['access-control-allow-origin'] = staticAny ? '*' : origin
      if (credentials) headers['access-control-allow-credentials'] = 'true'
      headers['access-control-allow-methods'] = reflectMethods ? method : allowMethods
      const allowed = reflectHeaders ? clientHeader(req, 'access-control-request-headers') : allowHeaders
      if (allowed !== undefined && allowed !== '') headers['access-control-allow-headers'] = allowed
      if (maxAge !== undefined) headers['access-control-max-age'] = maxAge
      if (privateNetwork && clientHeader(req, 'access-control-request-private-network') === 'true') {
        headers['access-control-allow-private-network'] = 'true'
      }
      return { status: 204, headers }
    }

    function refuseForeignHandshake (ctx: RequestContext): void {
      const origin = clientHeader(ctx.req, 'origin')
      if (origin === undefined || origins.allows(origin)) return
      ctx.annotate('cors', 'origin-refused')
      throw new ForbiddenError('the WebSocket handshake comes from an origin this route does not allow')
    }

    return {
      onRequest (ctx) {
        if (ctx.method !== 'OPTIONS') {
          if (!origins.any && clientHeader(ctx.req, 'upgrade') !== undefined) refuseForeignHandshake(ctx)
          return
        }
        const origin = clientHeader(ctx.req, 'origin')
        if (origin === undefined) return
        const method = clientHeader(ctx.req, 'access-control-request-method')
        // OPTIONS without Access-Control-Request-Method is an ordinary (CORS) request.
        if (method === undefined) return
        return preflight(ctx.req, origin, method)
      },

      onResponse (ctx, res) {
        const req = ctx.req
        // A preflight was answered in onRequest (or refused by a plugin before
        // this one); either way its headers are final.
        if (ctx.method === 'OPTIONS' && clientHeader(req, 'access-control-request-method') !== undefined &&
          clientHeader(req, 'origin') !== undefined) return
        const h = res.headers
        delete h['access-control-allow-origin']
        delete h['access-control-allow-credentials']
        delete h['access-control-expose-headers']
        if (staticAny) {
          h['access-control-allow-origin'] = '*'
          if (exposeHeaders !== undefined) h['access-control-expose-headers'] = exposeHeaders
          return
        }
        appendVary(h, 'Origin')
        const origin = clientHeader(req, 'origin')
        if (origin === undefined || !origins.allows(origin)) return
        h['access-control-allow-origin'] = origin
        if (credentials) h['access-control-allow-credentials'] = 'true'
        if (exposeHeaders !== undefined) h['access-control-expose-headers'] = exposeHeaders
      },
    }
  },
})
