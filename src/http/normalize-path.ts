/**
 * Path normalisation before routing, so the route that matches is the resource
 * the upstream will serve: `/public/../admin` must not ride on `/public`'s
 * route. Like Envoy's normalize_path + merge_slashes: percent-encoded dots
 * (`%2e`) are decoded, runs of `/` merged and dot-segments removed
 * (RFC 3986 §5.2.4). Other percent-escapes are left as sent. Paths without
 * anything to do — nearly all — are returned untouched after two scans.
 */
export function normalizePath (path: string): string {
  if (path.indexOf('/.') === -1 && path.indexOf('//') === -1 && path.indexOf('%2') === -1) return path
  let p = path.replace(/%2e/gi, '.')
  const segments = p.split('/')
  const out: string[] = []
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i] as string
    const last = i === segments.length - 1
    if (s === '.' || s === '') { if (last) out.push(''); continue }
    if (s === '..') { out.pop(); if (last) out.push(''); continue }
    out.push(s)
  }
  p = '/' + out.join('/')
  return p
}
