import type { HeaderMap } from '../plugin.ts'

/**
 * Adds `name` to the response's `Vary` unless it is already listed (field
 * names compare case-insensitively) or `Vary: *` already varies on everything
 * (RFC 9110 §12.5.5). An existing value, single or repeated, is kept as is and
 * extended, so an upstream's `Vary: Accept-Encoding` survives.
 *
 * @example
 * const h = { vary: 'Accept-Encoding' }
 * appendVary(h, 'Origin') // h.vary === 'Accept-Encoding, Origin'
 */
export function appendVary (headers: HeaderMap, name: string): void {
  const prev = headers.vary
  if (prev === undefined || prev === '') { headers.vary = name; return }
  const list = typeof prev === 'string' ? prev : prev.join(', ')
  const lower = name.toLowerCase()
  for (const item of list.split(',')) {
    const t = item.trim().toLowerCase()
    if (t === '*' || t === lower) return
  }
  headers.vary = `${list}, ${name}`
}
