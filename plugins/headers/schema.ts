import { z } from 'zod'
import { HOP_BY_HOP } from '../../src/http/hop-by-hop.ts'
import { parseTemplate } from './template.ts'

/** RFC 9110 §5.1: a field name is a `token` (§5.6.2, `tchar`). */
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/**
 * RFC 9110 §5.5: a field value is HTAB, SP, VCHAR and obs-text. CR, LF and NUL
 * MUST NOT reach the wire (they would split the header block); this is also
 * exactly the set node accepts, so a valid config can never make writeHead throw.
 */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/

/**
 * Fields this plugin refuses to edit, in either direction. Hop-by-hop fields
 * (RFC 9110 §7.6.1) describe one connection and are stripped before plugins
 * run; Content-Length and Trailer describe the framing Outrider produces
 * itself. Editing either would at best be ignored and at worst desynchronise
 * the framing between proxy and peer (request smuggling, RFC 9112 §11.2).
 */
export const RESERVED: ReadonlySet<string> = new Set([...HOP_BY_HOP, 'content-length', 'trailer'])

type Phase = 'request' | 'response'
type Op = 'set' | 'add' | 'remove'

/**
 * Why `name` may not be edited by `op` in `phase`, or undefined when it may.
 * `Host` is the one special case: a request MUST carry exactly one Host (RFC
 * 9112 §3.2), so it may be replaced (a virtual-host rewrite is a common need)
 * but never removed or repeated; a response has no Host at all.
 */
function nameProblem (name: string, phase: Phase, op: Op): string | undefined {
  if (!TOKEN.test(name)) return 'a header name: an RFC 9110 token (letters, digits and !#$%&\'*+-.^_`|~)'
  const lower = name.toLowerCase()
  if (RESERVED.has(lower)) return `a header other than "${lower}": hop-by-hop and framing headers are Outrider's own`
  // node answers Expect itself (100-continue, or 417), and undici refuses to send one.
  if (lower === 'expect' && phase === 'request' && op !== 'remove') return 'a header other than "expect": Outrider answers Expect: 100-continue itself'
  if (lower === 'host') {
    if (phase === 'response') return 'a header other than "host": it only exists on requests'
    if (op !== 'set') return '"host" only under set: a request carries exactly one Host (RFC 9112 §3.2)'
  }
  return undefined
}

const value = z.string()
  .max(8192, 'a header value of at most 8192 characters')
  .regex(FIELD_VALUE, 'a header value without CR, LF, NUL or other control characters (RFC 9110 §5.5)')
  .superRefine((v, ctx) => {
    const parts = parseTemplate(v)
    if (typeof parts === 'string') ctx.addIssue({ code: 'custom', message: parts, input: v })
  })

function lowerKeys (m: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const k in m) out[k.toLowerCase()] = m[k] as string
  return out
}

function fieldMap (phase: Phase, op: 'set' | 'add') {
  return z.record(z.string(), value).superRefine((m, ctx) => {
    const seen = new Map<string, string>()
    for (const name of Object.keys(m)) {
      const problem = nameProblem(name, phase, op)
      if (problem !== undefined) ctx.addIssue({ code: 'custom', path: [name], message: problem, input: name })
      const lower = name.toLowerCase()
      const other = seen.get(lower)
      // Names are case-insensitive (RFC 9110 §5.1): two spellings would silently overwrite each other.
      if (other !== undefined) ctx.addIssue({ code: 'custom', path: [name], message: `a header named once ("${other}" is the same header)`, input: name })
      seen.set(lower, name)
    }
  }).transform(lowerKeys)
}

function fieldList (phase: Phase) {
  return z.array(z.string()).superRefine((names, ctx) => {
    names.forEach((name, i) => {
      const problem = nameProblem(name, phase, 'remove')
      if (problem !== undefined) ctx.addIssue({ code: 'custom', path: [i], message: problem, input: name })
    })
  }).transform((names) => [...new Set(names.map((n) => n.toLowerCase()))])
}

function phaseSchema (phase: Phase) {
  const s = z.strictObject({
    set: fieldMap(phase, 'set').default({})
      .describe(`${phase === 'request' ? 'Request' : 'Response'} headers to replace (or create), name → value.`),
    add: fieldMap(phase, 'add').default({})
      .describe('Headers to append: an existing header keeps its values and gets one more.'),
    remove: fieldList(phase).default([])
      .describe('Header names to delete.'),
  })
  return s.default(s.parse({}))
}

/**
 * Edits applied in this order: remove, then set, then add. Values may use
 * `${request_id}`, `${client_ip}`, `${route}`, `${method}` and `${scheme}`.
 */
export const schema = z.strictObject({
  request: phaseSchema('request')
    .describe('Edits to the headers sent upstream (after the forwarding headers are added).'),
  response: phaseSchema('response')
    .describe('Edits to the headers sent to the client (upstream and local responses).'),
})

export type HeadersConfig = z.output<typeof schema>
