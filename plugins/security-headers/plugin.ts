import { definePlugin, type HeaderMap } from '../../src/plugin.ts'
import { schema, type SecurityHeadersConfig } from './schema.ts'

/** A field to set; `force` replaces a value the upstream chose (`override`). */
type Field = readonly [name: string, value: string, force: boolean]

/** `max-age=…; includeSubDomains; preload` (RFC 6797 §6.1). */
function renderHsts (h: Exclude<SecurityHeadersConfig['hsts'], false>): string {
  let v = `max-age=${h.maxAge}`
  if (h.includeSubDomains) v += '; includeSubDomains'
  if (h.preload) v += '; preload'
  return v
}

/** Directive → sources as CSP3 §2.2 serializes a policy: `name value value; name`. */
function renderCsp (csp: Record<string, true | string | string[]>): string {
  return Object.entries(csp).map(([name, v]) => v === true ? name : `${name} ${Array.isArray(v) ? v.join(' ') : v}`).join('; ')
}

/**
 * Feature → allowlist as the structured-field dictionary Permissions Policy
 * uses (RFC 8941 §3.2): `camera=(), geolocation=(self "https://a.example"), fullscreen=*`.
 */
function renderPermissions (p: Record<string, string[]>): string {
  return Object.entries(p).map(([feature, list]) => {
    if (list.includes('*')) return `${feature}=*`
    return `${feature}=(${list.map((m) => m === 'self' || m === 'src' ? m : `"${m}"`).join(' ')})`
  }).join(', ')
}

/** Every field to set, in a fixed order; HSTS apart since it depends on the scheme. */
function render (c: SecurityHeadersConfig): { fields: Field[], hsts: Field | undefined } {
  const fields: Field[] = []
  const forced = new Set<string>(Array.isArray(c.override) ? c.override : [])
  const field = (name: string, value: string): Field => [name, value, c.override === true || forced.has(name)]
  const push = (name: string, value: string): void => { fields.push(field(name, value)) }
  if (c.contentTypeOptions) push('x-content-type-options', 'nosniff')
  if (c.referrerPolicy !== false) push('referrer-policy', Array.isArray(c.referrerPolicy) ? c.referrerPolicy.join(', ') : c.referrerPolicy)
  if (c.frameOptions !== false) push('x-frame-options', c.frameOptions)

  const policy = c.csp === undefined ? undefined : typeof c.csp === 'string' ? c.csp : renderCsp(c.csp)
  const ancestors = c.frameAncestors === undefined ? undefined : `frame-ancestors ${c.frameAncestors.join(' ')}`
  if (c.cspReportOnly) {
    // Report-only never blocks a frame; the framing rule stays enforced on its own.
    if (ancestors !== undefined) push('content-security-policy', ancestors)
    if (policy !== undefined) push('content-security-policy-report-only', policy)
  } else {
    const enforced = [policy, ancestors].filter((v) => v !== undefined).join('; ')
    if (enforced !== '') push('content-security-policy', enforced)
  }

  if (c.permissionsPolicy !== undefined) {
    push('permissions-policy', typeof c.permissionsPolicy === 'string' ? c.permissionsPolicy : renderPermissions(c.permissionsPolicy))
  }
  if (c.crossOriginOpenerPolicy !== undefined) push('cross-origin-opener-policy', c.crossOriginOpenerPolicy)
  return { fields, hsts: c.hsts === false ? undefined : field('strict-transport-security', renderHsts(c.hsts)) }
}

function assign (h: HeaderMap, fields: readonly Field[]): void {
  for (let i = 0; i < fields.length; i++) {
    const [name, value, force] = fields[i] as Field
    if (force || h[name] === undefined) h[name] = value
  }
}

/**
 * Adds the response headers that make browsers careful with what the
 * upstream serves (HSTS, nosniff, Referrer-Policy, X-Frame-Options and CSP
 * frame-ancestors, CSP, Permissions-Policy, COOP) and removes the ones that
 * advertise the stack behind the proxy. Every value is rendered in create();
 * a response costs a few assignments and deletes.
 *
 * A value the upstream set itself stands, as with nginx's `add_header` or
 * Kong's response-transformer `add`: the app may have chosen SAMEORIGIN or a
 * looser Referrer-Policy on purpose. `override` (true, or a list of fields)
 * replaces it with the route's.
 *
 * HSTS goes only on responses to https requests by default (RFC 6797 §7.2:
 * a host MUST NOT send it over plain http, where it could be injected or
 * stripped anyway), and the upstream's own is removed from plain-http ones
 * for the same reason; `httpsOnly: false` (TLS ends in front of Outrider)
 * sends ours and keeps theirs on every response.
 *
 * @example
 * // routes[0].plugins:
 * // - name: security-headers
 * //   config:
 * //     hsts: { maxAge: 63072000, preload: true }
 * //     frameAncestors: ["'self'", https://portal.example]
 * //     csp: { default-src: "'self'", img-src: ["'self'", 'data:'], upgrade-insecure-requests: true }
 * //     permissionsPolicy: { camera: [], geolocation: [self] }
 */
export default definePlugin({
  name: 'security-headers',
  schema,
  create (config: SecurityHeadersConfig) {
    const { fields, hsts } = render(config)
    const httpsOnly = config.hsts !== false && config.hsts.httpsOnly
    const overHttps: readonly Field[] = hsts === undefined ? fields : [...fields, hsts]
    const overHttp: readonly Field[] = httpsOnly ? fields : overHttps
    const removeOverHttps = config.removeResponseHeaders
    const removeOverHttp = httpsOnly ? [...removeOverHttps, 'strict-transport-security'] : removeOverHttps
    return {
      onResponse (ctx, res) {
        const h = res.headers
        const https = ctx.scheme === 'https'
        const remove = https ? removeOverHttps : removeOverHttp
        for (let i = 0; i < remove.length; i++) delete h[remove[i] as string]
        assign(h, https ? overHttps : overHttp)
      },
    }
  },
})
