/**
 * Accept-Encoding (RFC 9110 §12.5.3): parsing and content-coding negotiation,
 * shared by the compression plugin (which coding to apply) and the cache
 * (which stored variant a request selects, the secondary key behind
 * `Vary: Accept-Encoding`). Both MUST agree, so both call `negotiate`.
 */

/** The content codings Outrider can produce, and `identity` (no coding). */
export type Coding = 'br' | 'zstd' | 'gzip' | 'identity'

/**
 * A client's weights in thousandths (a qvalue has at most three decimals,
 * RFC 9110 §12.4.2), so comparisons are exact integers. -1: not listed.
 */
export interface AcceptEncodingWeights {
  readonly br: number
  readonly zstd: number
  readonly gzip: number
  readonly identity: number
  /** `*`: every coding not listed by name, identity included. */
  readonly any: number
}

const NOT_LISTED = -1
const INVALID = -2
/**
 * The weight of an identity the field neither names nor reaches with `*`:
 * acceptable (§12.5.3 rule 2) but below every listed coding, so it wins only
 * when nothing named is acceptable. Half a thousandth sits between q=0 and q=0.001.
 */
const IMPLICIT_IDENTITY = 0.5

/**
 * Distinct header values are few (a handful per browser family and HTTP
 * library), so parsed values are remembered. Bounded in entries and key
 * length: odd or hostile values cost a parse each, never memory.
 */
const MEMO_ENTRIES = 256
const MEMO_KEY_LENGTH = 256
const memo = new Map<string, AcceptEncodingWeights>()

/**
 * Parses an Accept-Encoding field value into weights per coding Outrider
 * knows. Tokens compare case-insensitively; `x-gzip` is gzip (§8.4.1.3);
 * parameters other than `q` are ignored; a member whose `q` is not a valid
 * qvalue is ignored as a whole (guessing a weight the client did not write
 * could pick a coding it refused); a coding listed twice keeps its highest
 * weight. Codings Outrider does not produce (deflate, compress …) are skipped.
 *
 * @example
 * parseAcceptEncoding('gzip;q=0.8, br, *;q=0') // { br: 1000, zstd: -1, gzip: 800, identity: -1, any: 0 }
 */
export function parseAcceptEncoding (value: string): AcceptEncodingWeights {
  const known = memo.get(value)
  if (known !== undefined) return known
  const w = parse(value)
  if (value.length <= MEMO_KEY_LENGTH) {
    // FIFO eviction: Map iterates in insertion order.
    if (memo.size >= MEMO_ENTRIES) memo.delete(memo.keys().next().value as string)
    memo.set(value, w)
  }
  return w
}

/**
 * The coding to apply to a response: the one the client weights highest among
 * `offered` (the server's preference order, which breaks ties), identity
 * included. Identity is acceptable unless `identity;q=0`, or `*;q=0` without
 * an `identity` member, excludes it; it is implicitly the least preferred, or
 * placed where `offered` lists it. Without the header any coding is
 * acceptable and the answer is identity (§12.5.3: the server need not code
 * anything); an empty header means identity only. `undefined` when nothing is
 * acceptable, identity included (a proxy then still sends the response
 * uncoded, as §12.5.3 recommends, rather than a 406).
 *
 * @example
 * negotiate('gzip, br', ['br', 'zstd', 'gzip'])       // 'br'  (tie: server order)
 * negotiate('gzip;q=1, br;q=0.5', ['br', 'gzip'])     // 'gzip'
 * negotiate('br;q=0, *', ['br', 'gzip'])               // 'gzip'
 * negotiate(undefined, ['br', 'gzip'])                 // 'identity'
 * negotiate('*;q=0', ['br'])                           // undefined
 */
export function negotiate (acceptEncoding: string | string[] | undefined, offered: readonly Coding[]): Coding | undefined {
  if (acceptEncoding === undefined) return 'identity'
  const w = parseAcceptEncoding(typeof acceptEncoding === 'string' ? acceptEncoding : acceptEncoding.join(','))
  let best: Coding | undefined
  let bestQ = 0
  let identityOffered = false
  for (let i = 0; i < offered.length; i++) {
    const c = offered[i] as Coding
    let q: number
    if (c === 'identity') {
      identityOffered = true
      q = identityWeight(w)
    } else {
      const named = w[c]
      q = named !== NOT_LISTED ? named : w.any !== NOT_LISTED ? w.any : 0
    }
    // Strictly greater: on a tie the earlier (server-preferred) coding stays.
    if (q > bestQ) { best = c; bestQ = q }
  }
  if (!identityOffered && identityWeight(w) > bestQ) best = 'identity'
  return best
}

function identityWeight (w: AcceptEncodingWeights): number {
  if (w.identity !== NOT_LISTED) return w.identity
  if (w.any !== NOT_LISTED) return w.any
  return IMPLICIT_IDENTITY
}

interface MutableWeights { br: number, zstd: number, gzip: number, identity: number, any: number }

function parse (value: string): AcceptEncodingWeights {
  const w: MutableWeights = { br: NOT_LISTED, zstd: NOT_LISTED, gzip: NOT_LISTED, identity: NOT_LISTED, any: NOT_LISTED }
  const n = value.length
  let start = 0
  while (start < n) {
    let end = value.indexOf(',', start)
    if (end === -1) end = n
    let semi = value.indexOf(';', start)
    if (semi === -1 || semi > end) semi = end
    const name = value.slice(start, semi).trim().toLowerCase()
    if (name !== '') {
      const q = semi === end ? 1000 : weightParam(value, semi + 1, end)
      if (q !== INVALID) record(w, name, q)
    }
    start = end + 1
  }
  return Object.freeze(w)
}

function record (w: MutableWeights, name: string, q: number): void {
  let key: keyof MutableWeights
  switch (name) {
    case 'br': key = 'br'; break
    case 'zstd': key = 'zstd'; break
    case 'gzip': case 'x-gzip': key = 'gzip'; break
    case 'identity': key = 'identity'; break
    case '*': key = 'any'; break
    default: return
  }
  if (q > w[key]) w[key] = q
}

/** The `q` among `;`-separated parameters in value[from, to): 1000 when absent. */
function weightParam (value: string, from: number, to: number): number {
  let q = 1000
  let start = from
  while (start < to) {
    let end = value.indexOf(';', start)
    if (end === -1 || end > to) end = to
    const eq = value.indexOf('=', start)
    if (eq !== -1 && eq < end && value.slice(start, eq).trim().toLowerCase() === 'q') {
      q = qvalue(value.slice(eq + 1, end).trim())
      if (q === INVALID) return INVALID
    }
    start = end + 1
  }
  return q
}

/**
 * RFC 9110 §12.4.2: `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`,
 * in thousandths; INVALID for anything else (1.5, .5, 0.0001, -1, abc).
 */
function qvalue (s: string): number {
  const n = s.length
  if (n === 0 || n > 5) return INVALID
  const first = s.charCodeAt(0) - 48
  if (first !== 0 && first !== 1) return INVALID
  if (n === 1) return first * 1000
  if (s.charCodeAt(1) !== 46 /* . */) return INVALID
  let frac = 0
  for (let i = 2; i < 5; i++) {
    let d = 0
    if (i < n) {
      d = s.charCodeAt(i) - 48
      if (d < 0 || d > 9) return INVALID
    }
    frac = frac * 10 + d
  }
  if (first === 1) return frac === 0 ? 1000 : INVALID
  return frac
}
