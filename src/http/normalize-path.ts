/**
 * Path normalisation before routing, so the route that matches is the resource
 * the upstream will serve: `/public/../admin` or `/%61dmin` must not ride on
 * another route's prefix. As Envoy's normalize_path + merge_slashes do:
 * percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2: `%61`
 * is `a`, `%2e` is `.`), runs of `/` merged and dot-segments removed (§5.2.4).
 * Other escapes (`%2F` in an id, say) are left as sent.
 *
 * Undefined for a path that servers read in different ways: a dot-segment
 * behind an escaped slash or a backslash (`..%2f`, `..%5c`, `..\`: nginx,
 * IIS and others resolve them after decoding) or followed by a path parameter
 * (`..;/`: Tomcat and Jetty drop the parameter, then resolve). The caller
 * refuses it (400), as Envoy's `path_with_escaped_slashes_action:
 * REJECT_REQUEST` does. Paths with nothing to do — nearly all — are returned
 * untouched after four scans.
 */
/** The 400's detail for a path normalizePath refuses. */
export const AMBIGUOUS_PATH = 'ambiguous path: a dot-segment behind an escaped slash, a backslash or a path parameter'

export function normalizePath (path: string): string | undefined {
  const pct = path.indexOf('%')
  const backslash = path.indexOf('\\')
  if (pct === -1 && backslash === -1 && path.indexOf('/.') === -1 && path.indexOf('//') === -1) return path
  const segments = (pct === -1 ? path : decodeUnreserved(path)).split('/')
  const out: string[] = []
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i] as string
    const last = i === segments.length - 1
    if (s === '.' || s === '') { if (last) out.push(''); continue }
    if (s === '..') { out.pop(); if (last) out.push(''); continue }
    out.push(s)
  }
  const p = '/' + out.join('/')
  return hiddenDotSegment(p) ? undefined : p
}

/** `%XX` of ALPHA / DIGIT / `-` / `.` / `_` / `~` as the character itself. */
function decodeUnreserved (path: string): string {
  let out = ''
  let from = 0
  for (let i = path.indexOf('%'); i !== -1 && i + 2 < path.length; i = path.indexOf('%', i + 1)) {
    const code = hex(path.charCodeAt(i + 1)) * 16 + hex(path.charCodeAt(i + 2))
    if (code < 0 || UNRESERVED[code] !== 1) continue
    out += path.slice(from, i) + String.fromCharCode(code)
    from = i + 3
    i += 2
  }
  return from === 0 ? path : out + path.slice(from)
}

function hex (c: number): number {
  if (c >= 48 && c <= 57) return c - 48
  const l = c | 0x20
  if (l >= 97 && l <= 102) return l - 87
  return -256
}

const UNRESERVED = new Uint8Array(128)
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c)
  if (/[A-Za-z0-9\-._~]/.test(ch)) UNRESERVED[c] = 1
}

/**
 * True when a normalised path (no plain dot-segment left) still has one once
 * `%2F`, `%5C` and `\` are read as `/` and a segment's `;parameters` dropped.
 */
function hiddenDotSegment (p: string): boolean {
  if (p.indexOf('.') === -1) return false
  if (p.indexOf('%') === -1 && p.indexOf('\\') === -1 && p.indexOf(';') === -1) return false
  for (const segment of p.split(SEPARATORS)) {
    const semi = segment.indexOf(';')
    const name = semi === -1 ? segment : segment.slice(0, semi)
    if (name === '.' || name === '..') return true
  }
  return false
}

const SEPARATORS = /\/|\\|%2f|%5c/i
