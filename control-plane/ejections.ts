import type { ConfigDocument } from './validate.ts'

/**
 * An endpoint a rule took out of a cluster (the eject-endpoint action),
 * remembered in the store so that it counts against the cluster's
 * `maxEjectedPercent` and can be put back by a later version, on whichever
 * replica holds the rules lease by then.
 */
export interface Ejection {
  cluster: string
  /** The endpoint object as configured: readmission puts it back as it was. */
  endpoint: Record<string, unknown>
  /** The rule that ejected it. */
  rule: string
  /** The version that removed it. */
  version: number
  /** When to put it back (ms since the epoch, by the rules' clock); absent: an operator does. */
  readmitAt?: number
}

type Obj = Record<string, unknown>
const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)

function origin (url: unknown): string | undefined {
  try { return typeof url === 'string' ? new URL(url).origin : undefined } catch { return undefined }
}

/** The endpoint list of a cluster of `doc`, or undefined when there is no such cluster. */
function endpointsOf (doc: ConfigDocument | undefined, cluster: string): unknown[] | undefined {
  const c = Array.isArray(doc?.clusters) ? (doc.clusters as unknown[]).find((x) => isObject(x) && x.name === cluster) : undefined
  if (!isObject(c)) return undefined
  return Array.isArray(c.endpoints) ? c.endpoints as unknown[] : []
}

/** Whether the same endpoint (by origin) is meant. */
export const sameEjection = (a: Ejection, b: Ejection): boolean => a.cluster === b.cluster && origin(a.endpoint.url) === origin(b.endpoint.url)

/**
 * Where an ejection stands in `doc`: `out` (still ejected), `back` (the
 * endpoint is in the cluster again: a rollback or an operator put it back)
 * or `gone` (the cluster no longer exists).
 */
export function ejectionState (doc: ConfigDocument | undefined, e: Ejection): 'out' | 'back' | 'gone' {
  const endpoints = endpointsOf(doc, e.cluster)
  if (endpoints === undefined) return 'gone'
  const o = origin(e.endpoint.url)
  return endpoints.some((x) => isObject(x) && origin(x.url) === o) ? 'back' : 'out'
}

/** Endpoints of `cluster` still ejected in `doc`. */
export function ejectedCount (doc: ConfigDocument | undefined, ejections: readonly Ejection[], cluster: string): number {
  return ejections.filter((e) => e.cluster === cluster && ejectionState(doc, e) === 'out').length
}

/** Puts an ejected endpoint back into `doc` (mutated); false when its cluster is gone. */
export function readmit (doc: ConfigDocument, e: Ejection): boolean {
  const endpoints = endpointsOf(doc, e.cluster)
  if (endpoints === undefined) return false
  if (ejectionState(doc, e) === 'out') endpoints.push(structuredClone(e.endpoint))
  return true
}
