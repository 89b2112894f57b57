import { z } from 'zod'
import { InvalidConfigError } from './errors.ts'
import type { ConfigDocument } from './validate.ts'

/**
 * Per-label config: an overlay is a patch layered on the base document for
 * the data planes whose labels its selector matches (Kubernetes'
 * `matchLabels`: every pair must be present; an empty selector matches every
 * node). A node's document is the base with every matching overlay applied,
 * lowest `priority` first (then by name), so the highest priority wins where
 * two overlays set the same field.
 */
export const overlaySchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, 'a name of 1 to 128 letters, digits, _ . -')
    .describe('Identifies the overlay in the API, the audit log and the fleet view.'),
  selector: z.record(z.string(), z.string()).default({})
    .describe('Labels a node must all have (key = value) for the overlay to apply; {} matches every node.'),
  priority: z.number().int().default(0)
    .describe('Higher is applied later, so it wins over lower-priority overlays.'),
  patch: z.record(z.string(), z.unknown())
    .describe('A JSON merge patch (RFC 7386) on the base document; lists of named objects (routes, clusters, plugins) merge by name.'),
})

export type Overlay = z.infer<typeof overlaySchema>

/** Validates an overlay; the issues' paths are relative to the overlay. */
export function parseOverlay (value: unknown): Overlay {
  const r = overlaySchema.safeParse(value)
  if (r.success) return r.data
  throw new InvalidConfigError(r.error.issues.map((i) => ({ path: i.path.map(String).join('.'), expected: i.message })))
}

/** True when every selector pair is among `labels`. */
export function selects (selector: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false
  return true
}

/** The overlays that apply to `labels`, in application order. */
export function matching (overlays: readonly Overlay[], labels: Readonly<Record<string, string>>): Overlay[] {
  return overlays.filter((o) => selects(o.selector, labels)).sort((a, b) => a.priority - b.priority || a.name.localeCompare(b.name))
}

/**
 * The base document with `overlays` applied in the order given.
 *
 * @example
 * compose({ routes: [{ name: 'a', cluster: 'x' }] }, [{ name: 'eu', selector: { zone: 'eu' }, priority: 0, patch: { routes: [{ name: 'a', cluster: 'eu' }] } }])
 * // { routes: [{ name: 'a', cluster: 'eu' }] }
 */
export function compose (base: ConfigDocument, overlays: readonly Overlay[]): ConfigDocument {
  let doc: unknown = base
  for (const o of overlays) doc = mergePatch(doc, o.patch)
  return doc as ConfigDocument
}

type Obj = Record<string, unknown>
const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)
const isNamedList = (v: unknown): v is Obj[] => Array.isArray(v) && v.length > 0 && v.every((e) => isObject(e) && typeof e.name === 'string')

/**
 * RFC 7386 merge patch (objects merge, `null` removes a key, anything else
 * replaces), extended for the config's named lists: when the patch is a
 * list of objects that all have a `name`, each element merges into the
 * element of that name, new names are appended (or inserted before
 * `$before`), and `{ name, $delete: true }` removes one. Plain RFC 7386
 * would replace the whole list, so an overlay adding one route would have
 * to repeat every other. Never mutates its inputs.
 */
export function mergePatch (target: unknown, patch: unknown): unknown {
  if (isNamedList(patch)) return mergeNamedList(Array.isArray(target) ? target : [], patch)
  if (!isObject(patch)) return structuredClone(patch)
  const out: Obj = isObject(target) ? { ...target } : {}
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]
    else out[k] = mergePatch(out[k], v)
  }
  return out
}

function mergeNamedList (target: readonly unknown[], patch: readonly Obj[]): unknown[] {
  const out = [...target]
  const indexOf = (name: unknown): number => out.findIndex((e) => isObject(e) && e.name === name)
  for (const { $delete, $before, ...element } of patch) {
    const at = indexOf(element.name)
    if ($delete === true) { if (at !== -1) out.splice(at, 1); continue }
    if (at !== -1) { out[at] = mergePatch(out[at], element); continue }
    const pos = $before === undefined ? -1 : indexOf($before)
    if (pos === -1) out.push(mergePatch(undefined, element))
    else out.splice(pos, 0, mergePatch(undefined, element))
  }
  return out
}
