import type { RequestContext } from '../../src/plugin.ts'

/**
 * The variables a header value may use, each read from the request context.
 * Deliberately few: every one is a plain property read, so expanding a value
 * costs a concatenation and nothing else.
 */
export const VARIABLES: Readonly<Record<string, (ctx: RequestContext) => string>> = {
  request_id: (ctx) => ctx.requestId,
  client_ip: (ctx) => ctx.clientIp,
  route: (ctx) => ctx.routeName,
  method: (ctx) => ctx.method,
  scheme: (ctx) => ctx.scheme,
}

/** A value compiled once: a constant, or literal parts and variable readers in order. */
export type CompiledValue = string | ReadonlyArray<string | ((ctx: RequestContext) => string)>

/**
 * Splits `value` at `${name}` references. Returns the parts, or a message saying
 * what was expected (every `${` closed, known variables only) for the schema.
 * Plain `indexOf` scanning: this runs at config time only, but it is also the
 * one definition of the syntax, so the schema and `compileValue` cannot disagree.
 *
 * @example
 * parseTemplate('id=${request_id}') // ['id=', { variable: 'request_id' }]
 */
export function parseTemplate (value: string): Array<string | { variable: string }> | string {
  const parts: Array<string | { variable: string }> = []
  let from = 0
  for (;;) {
    const open = value.indexOf('${', from)
    if (open === -1) break
    const close = value.indexOf('}', open + 2)
    if (close === -1) return `a header value whose "\${" at offset ${open} is closed by "}"`
    const name = value.slice(open + 2, close)
    if (!Object.hasOwn(VARIABLES, name)) return `a header value using known variables only ("\${${name}}" is not one of ${Object.keys(VARIABLES).map((v) => `\${${v}}`).join(', ')})`
    if (open > from) parts.push(value.slice(from, open))
    parts.push({ variable: name })
    from = close + 1
  }
  if (from < value.length) parts.push(value.slice(from))
  return parts
}

/**
 * Compiles a validated value: a string when it has no variables (the common
 * case, assigned as is per request), otherwise the parts to concatenate.
 *
 * @example
 * const v = compileValue('${client_ip} via outrider')
 * expandValue(v, ctx) // '10.0.0.7 via outrider'
 */
export function compileValue (value: string): CompiledValue {
  const parts = parseTemplate(value)
  if (typeof parts === 'string') throw new Error(`invalid header value template: ${parts}`)
  if (parts.every((p) => typeof p === 'string')) return value
  return parts.map((p) => typeof p === 'string' ? p : VARIABLES[p.variable] as (ctx: RequestContext) => string)
}

/** The value of `v` for this request. */
export function expandValue (v: CompiledValue, ctx: RequestContext): string {
  if (typeof v === 'string') return v
  let s = ''
  for (let i = 0; i < v.length; i++) {
    const p = v[i] as string | ((ctx: RequestContext) => string)
    s += typeof p === 'string' ? p : p(ctx)
  }
  return s
}
