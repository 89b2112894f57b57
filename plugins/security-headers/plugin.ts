import { definePlugin, type HeaderMap } from '../../src/plugin.ts'
import { schema, type SecurityHeadersConfig } from './schema.ts'

type Field = readonly [name: string, value: string]

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
  if (c.contentTypeOptions) fields.push(['x-content-type-options', 'nosniff'])
  if (c.referrerPolicy !== false) fields.push(['referrer-policy', Array.isArray(c.referrerPolicy) ? c.referrerPolicy.join(', ') : c.referrerPolicy])
  if (c.frameOptions !== false) fields.push(['x-frame-options', c.frameOptions])

  const policy = c.csp === undefined ? undefined : typeof c.csp === 'string' ? c.csp : renderCsp(c.csp)
  const ancestors = c.frameAncestors === undefined ? undefined : `frame-ancestors ${c.frameAncestors.join(' ')}`
  if (c.cspReportOnly) {
    // Report-only never blocks a frame; the framing rule stays enforced on its own.
    if (ancestors !== undefined) fields.push(['content-security-policy', ancestors])
    if (policy !== undefined) fields.push(['content-security-policy-report-only', policy])
  } else {
    const enforced = [policy, ancestors].filter((v) => v !== undefined).join('; ')
    if (enforced !== '') fields.push(['content-security-policy', enforced])
  }

  if (c.permissionsPolicy !== undefined) {
    fields.push(['permissions-policy', typeof c.permissionsPolicy === 'string' ? c.permissionsPolicy : renderPermissions(c.permissionsPolicy)])
  }
  if (c.crossOriginOpenerPolicy !== undefined) fields.push(['cross-origin-opener-policy', c.crossOriginOpenerPolicy])
  return { fields, hsts: c.hsts === false ? undefined : ['strict-transport-security', renderHsts(c.hsts)] }
}

function assign (h: HeaderMap, fields: readonly Field[], override: boolean): void {
  for (let i = 0; i < fields.length; i++) {
    const [name, value] = fields[i] as Field
    if (override || h[name] === undefined) h[name] = value
  }
}

/**
 * Adds the response headers that make browsers careful with what the
 * upstream serves (HSTS, nosniff, Referrer-Policy, X-Frame-Options and CSP
 * frame-ancestors, CSP, Permissions-Policy, COOP) and removes the ones that
 * advertise the stack behind the proxy. Every value is rendered in create();
 * a response costs a few assignments and deletes.
 *
 * HSTS goes only on responses to https requests by default (RFC 6797 §7.2:
 * a host MUST NOT send it over plain http, where it could be injected or
 * stripped anyway). `override: false` keeps a value the upstream chose.
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
    const overHttps: readonly Field[] = hsts === undefined ? fields : [...fields, hsts]
    const overHttp: readonly Field[] = hsts !== undefined && config.hsts !== false && !config.hsts.httpsOnly ? overHttps : fields
    const remove = config.removeResponseHeaders
    const override = config.override
    return {
      onResponse (ctx, res) {
        const h = res.headers
        for (let i = 0; i < remove.length; i++) delete h[remove[i] as string]
        assign(h, ctx.scheme === 'https' ? overHttps : overHttp, override)
      },
    }
  },
})
