import { definePlugin, type HeaderMap, type PluginHooks, type RequestContext } from '../../src/plugin.ts'
import { schema, type HeadersConfig } from './schema.ts'
import { compileValue, expandValue, type CompiledValue } from './template.ts'

/** One phase's edits, compiled once per snapshot. */
interface Edits {
  readonly remove: readonly string[]
  readonly set: ReadonlyArray<readonly [string, CompiledValue]>
  readonly add: ReadonlyArray<readonly [string, CompiledValue]>
}

function compile (phase: HeadersConfig['request']): Edits | undefined {
  const set = Object.entries(phase.set).map(([k, v]) => [k, compileValue(v)] as const)
  const add = Object.entries(phase.add).map(([k, v]) => [k, compileValue(v)] as const)
  if (phase.remove.length === 0 && set.length === 0 && add.length === 0) return undefined
  return { remove: phase.remove, set, add }
}

/**
 * Remove, then set, then add: so `remove: [x]` + `add: {x: v}` means "replace
 * whatever came with exactly v", and set + add of one name yields both values.
 */
function apply (edits: Edits, headers: HeaderMap, ctx: RequestContext): void {
  const { remove, set, add } = edits
  for (let i = 0; i < remove.length; i++) delete headers[remove[i] as string]
  for (let i = 0; i < set.length; i++) {
    const [name, v] = set[i] as readonly [string, CompiledValue]
    headers[name] = expandValue(v, ctx)
  }
  for (let i = 0; i < add.length; i++) {
    const [name, v] = add[i] as readonly [string, CompiledValue]
    const value = expandValue(v, ctx)
    const prev = headers[name]
    // Repeats travel as separate field lines: the only form that is right for
    // Set-Cookie too (RFC 9110 §5.3 lets lists be split or joined).
    // A new array, never a push: the one there may be shared (a cached response's).
    if (prev === undefined) headers[name] = value
    else headers[name] = typeof prev === 'string' ? [prev, value] : [...prev, value]
  }
}

/**
 * Adds, replaces and removes request and response headers, with a few
 * per-request variables. Values are compiled at create() time; a phase with no
 * edits gets no hook, so it costs nothing.
 *
 * @example
 * // routes[0].plugins:
 * // - name: headers
 * //   config:
 * //     request:  { set: { x-route: '${route}' }, remove: [cookie] }
 * //     response: { add: { x-served-by: 'outrider ${request_id}' }, remove: [server] }
 */
export default definePlugin({
  name: 'headers',
  schema,
  create (config) {
    const request = compile(config.request)
    const response = compile(config.response)
    const hooks: PluginHooks = {}
    if (request !== undefined) hooks.onRequest = (ctx) => { apply(request, ctx.upstreamHeaders, ctx) }
    if (response !== undefined) hooks.onResponse = (ctx, res) => { apply(response, res.headers, ctx) }
    return hooks
  },
})
