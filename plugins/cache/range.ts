import type { StoredResponse } from './stored-response.ts'

/**
 * One byte range of RFC 9110 §14.1.2 (`bytes=a-b`, `bytes=a-`, `bytes=-n`)
 * as inclusive offsets; undefined for several ranges or a syntax we do not
 * serve (the whole representation then goes out, which §14.2 allows).
 */
export function byteRange (header: string, length: number): [number, number] | 'unsatisfiable' | undefined {
  const m = /^bytes=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header)
  if (m === null) return undefined
  const [, a, b] = m as unknown as [string, string, string]
  if (a === '' && b === '') return undefined
  if (a === '') {
    const n = Number(b)
    if (n === 0) return 'unsatisfiable'
    return [Math.max(0, length - n), length - 1]
  }
  const start = Number(a)
  if (start >= length) return 'unsatisfiable'
  const end = b === '' ? length - 1 : Math.min(Number(b), length - 1)
  if (end < start) return undefined
  return [start, end]
}

/** The one range a stored partial response holds: its `Content-Range: bytes first-last/length`. */
export interface StoredPart { first: number, last: number, length: number }

const CONTENT_RANGE = /^bytes (\d{1,15})-(\d{1,15})\/(\d{1,15})$/

/**
 * The range a 206 carries, when it is one this cache can store: a single
 * range of a representation whose complete length is known (RFC 9110
 * §14.4). A `*` length or a multipart body is not kept.
 */
export function storedPart (contentRange: string | string[] | undefined): StoredPart | undefined {
  if (typeof contentRange !== 'string') return undefined
  const m = CONTENT_RANGE.exec(contentRange.trim())
  if (m === null) return undefined
  const first = Number(m[1])
  const last = Number(m[2])
  const length = Number(m[3])
  return first <= last && last < length ? { first, last, length } : undefined
}

/** If-Range (RFC 9110 §13.1.5): the range applies only to the representation the client has. */
export function ifRangeHolds (ifRange: string | string[] | undefined, e: StoredResponse): boolean {
  if (ifRange === undefined) return true
  const v = String(ifRange).trim()
  if (v.startsWith('"')) return e.etag !== undefined && !e.etag.startsWith('W/') && e.etag === v
  return e.lastModified !== undefined && e.lastModified === v
}
