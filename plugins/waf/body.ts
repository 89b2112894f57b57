import type { BodyProblem } from './rule.ts'

/**
 * Reads a request body into the fields an application would see: form
 * fields, JSON keys and string values, multipart fields and uploaded files, or
 * the whole text. Values stay as sent (percent-encoding included) so the
 * engine normalises them the same way as query parameters.
 */

export interface BodyField {
  /** Field name (a JSON field's dotted path; an array's items share its path); '' for a whole text body. */
  readonly name: string
  readonly value: string
  /** `value` is the field's name (a JSON key, a form or multipart field name). */
  readonly isName: boolean
  /** Percent-encoded with `+` for space (application/x-www-form-urlencoded). */
  readonly form: boolean
  /** An uploaded file's name or content. */
  readonly file: 'content' | 'name' | undefined
}

export interface Body {
  readonly fields: BodyField[]
  /** Form and multipart fields: what an argument limit counts. */
  readonly argCount: number
  readonly problems: BodyProblem[]
}

export type BodyKind = 'form' | 'json' | 'multipart' | 'text' | 'binary'

/** The media type (lower case, no parameters) of a Content-Type value. */
export function mediaType (contentType: string): string {
  const semi = contentType.indexOf(';')
  return (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase()
}

/**
 * How a body is read, by its Content-Type. Types with no text an injection
 * could live in (images, octet streams, protobuf) are not read at all: a body
 * without a Content-Type is read as text unless it looks binary.
 */
export function bodyKind (contentType: string | undefined, body: Buffer): BodyKind {
  if (contentType === undefined) return body.subarray(0, 512).includes(0) ? 'binary' : 'text'
  const t = mediaType(contentType)
  if (t === 'application/x-www-form-urlencoded') return 'form'
  if (t === 'multipart/form-data') return 'multipart'
  if (t === 'application/json' || t.endsWith('+json') || t === 'application/csp-report') return 'json'
  if (t.startsWith('text/') || t === 'application/xml' || t.endsWith('+xml') || t === 'application/graphql' || t === 'application/javascript' || t === 'application/x-yaml' || t === 'application/yaml') return 'text'
  return 'binary'
}

/**
 * Splits `s` on `&` into `[name, value]` pairs, undecoded (for a query string
 * or a form body). A pair without `=` is a name with an empty value.
 */
export function splitPairs (s: string): Array<[string, string]> {
  const out: Array<[string, string]> = []
  if (s === '') return out
  let from = 0
  while (from <= s.length) {
    let amp = s.indexOf('&', from)
    if (amp === -1) amp = s.length
    if (amp > from) {
      const eq = s.indexOf('=', from)
      if (eq === -1 || eq > amp) out.push([s.slice(from, amp), ''])
      else out.push([s.slice(from, eq), s.slice(eq + 1, amp)])
    }
    from = amp + 1
  }
  return out
}

export function extractBody (contentType: string | undefined, body: Buffer, maxJsonDepth: number): Body {
  switch (bodyKind(contentType, body)) {
    case 'form': return form(body.toString('utf8'))
    case 'json': return json(body.toString('utf8'), maxJsonDepth)
    case 'multipart': return multipart(contentType as string, body)
    case 'text': return { fields: [field('', body.toString('utf8'), false, false, undefined)], argCount: 0, problems: [] }
    case 'binary': return { fields: [], argCount: 0, problems: [] }
  }
}

function field (name: string, value: string, isName: boolean, form: boolean, file: BodyField['file']): BodyField {
  return { name, value, isName, form, file }
}

function form (s: string): Body {
  const fields: BodyField[] = []
  const pairs = splitPairs(s)
  for (const [name, value] of pairs) {
    fields.push(field(name, name, true, true, undefined))
    fields.push(field(name, value, false, true, undefined))
  }
  return { fields, argCount: pairs.length, problems: [] }
}

/**
 * JSON keys (as names) and string values, walked to `maxDepth`. Numbers,
 * booleans and null carry no payload. Deeper nesting is reported, not read: a
 * parser behind the proxy would still see what is down there.
 */
function json (s: string, maxDepth: number): Body {
  let doc: unknown
  try {
    doc = JSON.parse(s)
  } catch {
    // Read what was sent as text: a lenient parser behind the proxy may accept it.
    return { fields: [field('', s, false, false, undefined)], argCount: 0, problems: ['json'] }
  }
  const fields: BodyField[] = []
  const problems: BodyProblem[] = []
  const walk = (v: unknown, path: string, depth: number): void => {
    if (typeof v === 'string') { fields.push(field(path, v, false, false, undefined)); return }
    if (v === null || typeof v !== 'object') return
    if (depth >= maxDepth) {
      if (!problems.includes('depth')) problems.push('depth')
      return
    }
    if (Array.isArray(v)) {
      for (const item of v) walk(item, path, depth + 1)
      return
    }
    for (const key of Object.keys(v)) {
      const child = path === '' ? key : `${path}.${key}`
      fields.push(field(child, key, true, false, undefined))
      walk((v as Record<string, unknown>)[key], child, depth + 1)
    }
  }
  walk(doc, '', 0)
  return { fields, argCount: 0, problems }
}

/** A parameter of a header value such as `form-data; name="a"; filename="b"`. */
export function headerParam (value: string, param: string): string | undefined {
  let i = 0
  const n = value.length
  while (i < n) {
    const semi = value.indexOf(';', i)
    if (semi === -1) return undefined
    i = semi + 1
    while (i < n && (value[i] === ' ' || value[i] === '\t')) i++
    const eq = value.indexOf('=', i)
    if (eq === -1) return undefined
    const key = value.slice(i, eq).trim().toLowerCase()
    let j = eq + 1
    let v: string
    if (value[j] === '"') {
      let out = ''
      j++
      while (j < n && value[j] !== '"') {
        if (value[j] === '\\' && j + 1 < n) j++
        out += value[j]
        j++
      }
      v = out
      i = j + 1
    } else {
      const end = value.indexOf(';', j)
      v = value.slice(j, end === -1 ? n : end).trim()
      i = end === -1 ? n : end
    }
    if (key === param) return v
  }
  return undefined
}

const CRLF = Buffer.from('\r\n')
const HEADER_END = Buffer.from('\r\n\r\n')
/** RFC 2046 §5.1.1: 1–70 characters from a restricted set. */
const BOUNDARY = /^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$/

/**
 * multipart/form-data (RFC 7578), strictly: a body a lenient parser could
 * split differently from this one (no closing delimiter, bare LF line ends,
 * a part without a Content-Disposition name) is reported, because the
 * content this parser missed is what the application would get.
 */
function multipart (contentType: string, body: Buffer): Body {
  const fields: BodyField[] = []
  const bad: Body = { fields, argCount: 0, problems: ['multipart'] }
  const boundary = headerParam(contentType, 'boundary')
  if (boundary === undefined || !BOUNDARY.test(boundary)) return bad
  const delim = Buffer.from(`--${boundary}`)
  const next = Buffer.from(`\r\n--${boundary}`)
  let pos = body.indexOf(delim)
  if (pos === -1) return bad
  let argCount = 0
  for (;;) {
    let after = pos + delim.length
    if (body[after] === 45 && body[after + 1] === 45) break // closing delimiter
    // Transport padding (RFC 2046 §5.1.1) may precede the line break.
    while (body[after] === 32 || body[after] === 9) after++
    if (!body.subarray(after, after + 2).equals(CRLF)) return bad
    const headStart = after + 2
    const headEnd = body.indexOf(HEADER_END, headStart)
    if (headEnd === -1) return bad
    const end = body.indexOf(next, headEnd + 4)
    if (end === -1) return bad
    const head = body.toString('utf8', headStart, headEnd)
    let disposition: string | undefined
    for (const line of head.split('\r\n')) {
      const colon = line.indexOf(':')
      if (colon === -1 || line.includes('\n')) return bad
      if (line.slice(0, colon).trim().toLowerCase() === 'content-disposition') {
        if (disposition !== undefined) return bad
        disposition = line.slice(colon + 1).trim()
      }
    }
    if (disposition === undefined || !disposition.toLowerCase().startsWith('form-data')) return bad
    const name = headerParam(disposition, 'name')
    if (name === undefined) return bad
    const filename = headerParam(disposition, 'filename*') ?? headerParam(disposition, 'filename')
    const content = body.subarray(headEnd + 4, end)
    argCount++
    fields.push(field(name, name, true, false, undefined))
    if (filename !== undefined) {
      fields.push(field(name, filename, false, false, 'name'))
      // Binary-safe: a web shell is ASCII whatever surrounds it.
      if (content.length > 0) fields.push(field(name, content.toString('latin1'), false, false, 'content'))
    } else {
      fields.push(field(name, content.toString('utf8'), false, false, undefined))
    }
    pos = end + 2
  }
  return { fields, argCount, problems: [] }
}
