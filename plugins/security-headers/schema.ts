import { z } from 'zod'
import { HOP_BY_HOP } from '../../src/http/hop-by-hop.ts'

/** RFC 9110 §5.6.2 `token`: a header name (§5.1). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/** Visible ASCII and spaces: a header value with no CR, LF or other controls (RFC 9110 §5.5). */
const FIELD_VALUE = /^[\x20-\x7e]*$/

/** One CSP source or directive value: no `;` (ends the directive) or `,` (starts another policy, CSP3 §3.1). */
const CSP_VALUE = /^[\x21-\x2b\x2d-\x3a\x3c-\x7e]+$/

/** CSP3 §2.3.1 directive-name, and Permissions Policy feature names: lower-case letters, digits, `-`. */
const NAME = /^[a-z][a-z0-9-]*$/

/** Fields the plugin must not remove: framing is Outrider's own (RFC 9112 §6). */
const FRAMING: ReadonlySet<string> = new Set([...HOP_BY_HOP, 'content-length', 'trailer', 'content-type'])

/** The Referrer Policy tokens (W3C Referrer Policy §3). */
const REFERRER_POLICIES = [
  'no-referrer', 'no-referrer-when-downgrade', 'same-origin', 'origin', 'strict-origin',
  'origin-when-cross-origin', 'strict-origin-when-cross-origin', 'unsafe-url',
] as const

const referrerPolicy = z.enum(REFERRER_POLICIES, { error: `a Referrer-Policy token: ${REFERRER_POLICIES.join(', ')}` })

const hsts = z.strictObject({
  maxAge: z.number().int().min(0).default(31_536_000)
    .describe('max-age in seconds (RFC 6797 §6.1.1); 0 tells browsers to forget the policy. Default one year.'),
  includeSubDomains: z.boolean().default(true).describe('Apply to every subdomain too (§6.1.2).'),
  preload: z.boolean().default(false).describe('Ask to be in browsers\' built-in HSTS lists (hstspreload.org): hard to undo.'),
  httpsOnly: z.boolean().default(true)
    .describe('Send only on requests that came over https, and remove the upstream\'s own from plain-http responses: RFC 6797 §7.2 forbids it over plain http. false sends it always (and keeps the upstream\'s), for when TLS ends in front of Outrider.'),
}).superRefine((h, ctx) => {
  // hstspreload.org refuses (and later removes) sites that preload without both.
  if (h.preload && (h.maxAge < 31_536_000 || !h.includeSubDomains)) {
    ctx.addIssue({ code: 'custom', path: ['preload'], message: 'preload only with maxAge >= 31536000 and includeSubDomains: true (the preload list requires both)', input: h.preload })
  }
})

const cspValue = z.union([
  z.literal(true),
  z.string().regex(CSP_VALUE, 'one CSP source without spaces, ";" or ","'),
  z.array(z.string().regex(CSP_VALUE, 'one CSP source without spaces, ";" or ","')).min(1),
])

const csp = z.union([
  z.string().min(1).regex(FIELD_VALUE, 'a policy of printable ASCII (no CR, LF or other controls)'),
  z.record(z.string().regex(NAME, 'a CSP directive name (lower-case, e.g. default-src)'), cspValue),
], { error: 'a policy string, or directive → sources (lower-case directive names, e.g. default-src; values a source, a list of sources, or true)' })

/** Permissions Policy allowlist members: `*`, `self`, `src`, or an origin (a string in the structured header). */
const allowMember = z.string().refine((s) => s === '*' || s === 'self' || s === 'src' || /^https?:\/\/[\x21\x23-\x5b\x5d-\x7e]+$/.test(s),
  'self, src, * or an origin such as https://a.example')

/** The fields this plugin sets: what `override` may name. */
const MANAGED = [
  'strict-transport-security', 'x-content-type-options', 'referrer-policy', 'x-frame-options',
  'content-security-policy', 'content-security-policy-report-only', 'permissions-policy', 'cross-origin-opener-policy',
] as const

const frameSource = z.string().regex(CSP_VALUE, 'a frame-ancestors source such as \'self\', \'none\' or https://app.example')

/**
 * Response headers that tell browsers to be careful: HSTS, nosniff,
 * Referrer-Policy, framing rules, a CSP and more. Everything is rendered
 * once when the config is applied; a response only gets assignments.
 */
export const schema = z.strictObject({
  hsts: z.union([z.literal(false), hsts], { error: 'false, or { maxAge, includeSubDomains, preload, httpsOnly }' }).prefault({})
    .describe('Strict-Transport-Security (RFC 6797), or false. Default: one year, includeSubDomains, https requests only.'),
  contentTypeOptions: z.boolean().default(true)
    .describe('X-Content-Type-Options: nosniff (Fetch §3.6): browsers trust Content-Type instead of guessing.'),
  referrerPolicy: z.union([z.literal(false), referrerPolicy, z.array(referrerPolicy).min(1)], { error: `false, a Referrer-Policy token or a list of them: ${REFERRER_POLICIES.join(', ')}` }).default('no-referrer')
    .describe('Referrer-Policy, or a list (the last one the browser knows wins), or false.'),
  frameOptions: z.union([z.literal(false), z.enum(['DENY', 'SAMEORIGIN'])], { error: 'DENY, SAMEORIGIN or false (ALLOW-FROM is obsolete: use frameAncestors)' }).default('DENY')
    .describe('X-Frame-Options (RFC 7034): DENY, SAMEORIGIN or false. Browsers that know CSP frame-ancestors prefer it.'),
  frameAncestors: z.array(frameSource).min(1).optional()
    .describe('CSP frame-ancestors sources, e.g. ["\'none\'"] or ["\'self\'", "https://portal.example"]; added to csp (or sent as a CSP of its own).'),
  csp: csp.optional()
    .describe('Content-Security-Policy: a policy string, or directive → sources (true for a directive without value, e.g. upgrade-insecure-requests).'),
  cspReportOnly: z.boolean().default(false)
    .describe('Send csp as Content-Security-Policy-Report-Only: violations are reported, not enforced. frameAncestors stays enforced, in a Content-Security-Policy of its own.'),
  permissionsPolicy: z.union([
    z.string().min(1).regex(FIELD_VALUE, 'a policy of printable ASCII (no CR, LF or other controls)'),
    z.record(z.string().regex(NAME, 'a feature name such as camera or geolocation'), z.array(allowMember)),
  ], { error: 'a policy string, or feature → allowlist ([], ["self"], ["*"] or origins)' }).optional()
    .describe('Permissions-Policy: a string, or feature → allowlist ([] disables it, ["self"], ["*"], origins).'),
  crossOriginOpenerPolicy: z.enum(['same-origin', 'same-origin-allow-popups', 'noopener-allow-popups', 'unsafe-none']).optional()
    .describe('Cross-Origin-Opener-Policy (HTML §7.1.3).'),
  removeResponseHeaders: z.array(z.string().regex(TOKEN, 'a header name (an RFC 9110 token)').transform((s) => s.toLowerCase())
    .refine((s) => !FRAMING.has(s), { error: (iss) => `a header other than "${String(iss.input)}": framing headers are Outrider's own` }))
    .default(['server', 'x-powered-by'])
    .transform((names) => [...new Set(names)])
    .describe('Response headers removed because they tell an attacker what runs behind the proxy.'),
  override: z.union([z.boolean(), z.array(z.enum(MANAGED)).min(1).transform((names) => [...new Set(names)])], {
    error: `true, false, or a list of the fields to force: ${MANAGED.join(', ')}`,
  }).default(false)
    .describe('Replace values the upstream set itself: true for every field, or a list of field names (lower case). Default false: the upstream\'s value stands where it set one, and only the gaps are filled.'),
}).superRefine((c, ctx) => {
  if (c.frameAncestors !== undefined) {
    if (typeof c.csp === 'string' ? /(?:^|;)\s*frame-ancestors\b/i.test(c.csp) : c.csp?.['frame-ancestors'] !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['frameAncestors'], message: 'frame-ancestors in one place: csp already has it', input: c.frameAncestors })
    }
    const none = c.frameAncestors.indexOf('\'none\'')
    if (none !== -1 && c.frameAncestors.length > 1) {
      ctx.addIssue({ code: 'custom', path: ['frameAncestors', none], message: '\'none\' alone: with other sources it is ignored (CSP3 §2.3.1)', input: c.frameAncestors })
    }
  }
})

export type SecurityHeadersConfig = z.output<typeof schema>
