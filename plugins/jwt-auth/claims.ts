/**
 * The scopes a token grants. `scope` is a space-separated string (RFC 8693
 * §4.2, RFC 9068 §2.2.3); `scp` is a list in some IdPs (Okta) and a string in
 * others (Entra ID), so both shapes are read from both claims.
 */
export function scopesOf (claims: Record<string, unknown>): string[] {
  const out: string[] = []
  add(out, claims.scope)
  add(out, claims.scp)
  return out
}

function add (out: string[], v: unknown): void {
  if (typeof v === 'string') {
    for (const s of v.split(' ')) if (s !== '') out.push(s)
  } else if (Array.isArray(v)) {
    for (const s of v) if (typeof s === 'string' && s !== '') out.push(s)
  }
}

/** C0 controls and DEL: these would split or corrupt a header (RFC 9110 §5.5). */
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/
const NON_ASCII = /[^\x00-\x7f]/

const AMBIGUOUS = /[,"]|^\s|\s$/

/**
 * A list element that reads back as itself from a comma-joined list: a
 * number, a boolean, or a string that is not empty and has no `,` or `"` and
 * no whitespace at its ends (RFC 9110 §5.6.1 list parsing splits at commas,
 * trims, skips empty elements and unquotes).
 */
function plainElement (x: unknown): boolean {
  if (typeof x === 'number' || typeof x === 'boolean') return true
  return typeof x === 'string' && x !== '' && !AMBIGUOUS.test(x)
}

/**
 * A claim as a request header value, or undefined when it has none. Strings,
 * numbers and booleans as they are; a list of them comma-joined (the list
 * syntax of RFC 9110 §5.6.1); an object as JSON. A list with an element that
 * would not come back as itself (`["admin,x", "b"]` would read as three
 * groups; an object or a nested list) has none: an upstream that authorises
 * by it must see no list rather than another one. Quoting such elements
 * (§5.6.4) was not chosen, as upstreams that split at every comma are common.
 * A value with control characters is dropped too: the token is signed, but a
 * CR/LF from an IdP's user profile must still never split a request head.
 * Non-ASCII text travels as its UTF-8 bytes (obs-text, §5.5), which is what
 * upstreams decoding header bytes as UTF-8 expect.
 */
export function claimHeaderValue (v: unknown): string | undefined {
  let s: string
  if (typeof v === 'string') s = v
  else if (typeof v === 'number' || typeof v === 'boolean') return String(v)
  else if (Array.isArray(v)) {
    if (!v.every(plainElement)) return undefined
    s = v.join(',')
  } else if (typeof v === 'object' && v !== null) s = JSON.stringify(v)
  else return undefined
  s = s.trim()
  if (s === '' || CONTROL.test(s)) return undefined
  return NON_ASCII.test(s) ? Buffer.from(s, 'utf8').toString('latin1') : s
}

export type ClaimValue = string | number | boolean

/** One `requiredClaims` entry, compiled: the claim and the values it may have (any, when absent). */
export interface ClaimRequirement {
  readonly name: string
  readonly accepts: readonly ClaimValue[] | undefined
}

export function compileRequirements (required: readonly string[] | Readonly<Record<string, ClaimValue | ClaimValue[]>>): readonly ClaimRequirement[] {
  if (Array.isArray(required)) return required.map((name) => ({ name, accepts: undefined }))
  return Object.entries(required as Record<string, ClaimValue | ClaimValue[]>).map(([name, v]) => ({ name, accepts: Array.isArray(v) ? v : [v] }))
}

/** Whether `claims` meets every requirement. A list claim (groups, roles, amr) meets one when it holds an accepted value. */
export function meetsRequirements (claims: Record<string, unknown>, required: readonly ClaimRequirement[]): boolean {
  for (let i = 0; i < required.length; i++) {
    const { name, accepts } = required[i] as ClaimRequirement
    // Own properties only: a JSON object still inherits `constructor` & co.
    const v = Object.hasOwn(claims, name) ? claims[name] : undefined
    if (v === undefined || v === null) return false
    if (accepts === undefined) continue
    if (Array.isArray(v) ? !v.some((x) => accepts.includes(x as ClaimValue)) : !accepts.includes(v as ClaimValue)) return false
  }
  return true
}
