import { z } from 'zod'
import { normalizeOrigin } from './origin.ts'

/** RFC 9110 §5.6.2: methods (§9.1) and field names (§5.1) are tokens. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

const origin = z.string().transform((entry, ctx) => {
  const r = normalizeOrigin(entry)
  if ('error' in r) {
    ctx.addIssue({ code: 'custom', message: r.error, input: entry })
    return z.NEVER
  }
  return r.origin
})

const method = z.string().regex(TOKEN, 'an HTTP method (a token such as PUT), or *')

// Fetch compares header names byte-case-insensitively; lower-case them once here.
const headerName = z.string().regex(TOKEN, 'a header name (an RFC 9110 token), or *').transform((s) => s.toLowerCase())

/** `*` means "any" only when it is the whole list: mixed with names it would read as one. */
function starAlone (list: readonly string[], ctx: z.RefinementCtx): void {
  if (list.length > 1 && list.includes('*')) {
    ctx.addIssue({ code: 'custom', path: [list.indexOf('*')], message: '"*" alone: it already allows everything', input: list })
  }
}

/**
 * The CORS policy of a route (Fetch §3.2, "CORS protocol"). Preflights are
 * answered at the proxy; actual responses get the allow headers added.
 */
export const schema = z.strictObject({
  allowOrigins: z.array(origin).min(1).superRefine(starAlone).default(['*'])
    .describe('Origins allowed to read responses: exact origins (https://app.example.com), patterns whose leftmost label is * (https://*.example.com, one or more labels), or ["*"] for any.'),
  allowMethods: z.array(method).min(1).superRefine(starAlone).default(['GET', 'HEAD', 'POST'])
    .describe('Methods a preflight allows (case-sensitive, as Fetch compares them). ["*"] echoes the requested method.'),
  allowHeaders: z.array(headerName).superRefine(starAlone).default([])
    .describe('Request headers a preflight allows. ["*"] echoes Access-Control-Request-Headers, which (unlike a literal *) also works for credentialed requests and Authorization.'),
  exposeHeaders: z.array(headerName).superRefine(starAlone).default([])
    .describe('Response headers scripts may read beyond the CORS-safelisted ones. ["*"] exposes all, for requests without credentials only.'),
  allowCredentials: z.boolean().default(false)
    .describe('Allow cookies and HTTP authentication: sends Access-Control-Allow-Credentials: true and echoes the origin.'),
  maxAge: z.number().int().min(0).max(86400).optional()
    .describe('Seconds a browser may cache a preflight answer (Access-Control-Max-Age). Absent: the browser default (5 s); browsers cap it (Chromium at 7200).'),
  allowPrivateNetwork: z.boolean().default(false)
    .describe('Answer Access-Control-Request-Private-Network preflights with Access-Control-Allow-Private-Network: true (Private Network Access).'),
}).superRefine((c, ctx) => {
  if (!c.allowCredentials) return
  // Fetch §3.2.5: for a request whose credentials mode is "include", `*` in
  // Access-Control-Allow-Origin or -Expose-Headers is not a wildcard; the
  // browser fails the request (or exposes a header literally named "*").
  if (c.allowOrigins.includes('*')) {
    ctx.addIssue({ code: 'custom', path: ['allowCredentials'], message: 'allowCredentials with explicit allowOrigins: browsers reject "Access-Control-Allow-Origin: *" on credentialed requests (Fetch §3.2.5); list the origins, or patterns such as https://*.example.com', input: c.allowCredentials })
  }
  if (c.exposeHeaders.includes('*')) {
    ctx.addIssue({ code: 'custom', path: ['exposeHeaders'], message: 'a list of header names when allowCredentials is true: "*" is taken literally on credentialed requests (Fetch §3.2.5)', input: c.exposeHeaders })
  }
})

export type CorsConfig = z.output<typeof schema>
