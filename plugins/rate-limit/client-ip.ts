import { BlockList, isIPv4, isIPv6 } from 'node:net'
import type { RequestContext } from '../../src/plugin.ts'

/** An address as the key code uses it: family and text without port, brackets or `::ffff:`. */
interface Address {
  readonly family: 'ipv4' | 'ipv6'
  readonly address: string
}

const V4_WITH_PORT = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/

/**
 * Reads one address as proxies write them in `X-Forwarded-For` (no standard
 * grammar exists; these are the forms seen in practice): `192.0.2.1`,
 * `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`. IPv4-mapped IPv6
 * (`::ffff:192.0.2.1`, what a dual-stack socket reports) becomes IPv4, so
 * one client has one key whichever socket it came through.
 */
export function parseAddress (text: string): Address | undefined {
  let s = text
  if (s.startsWith('[')) {
    const end = s.indexOf(']')
    if (end === -1) return undefined
    s = s.slice(1, end)
  } else {
    const m = V4_WITH_PORT.exec(s)
    if (m !== null) s = m[1] as string
  }
  if (isIPv4(s)) return { family: 'ipv4', address: s }
  if (!isIPv6(s)) return undefined
  const lower = s.toLowerCase()
  if (lower.startsWith('::ffff:') && isIPv4(lower.slice(7))) return { family: 'ipv4', address: lower.slice(7) }
  return { family: 'ipv6', address: lower }
}

/** The eight 16-bit groups of a valid IPv6 address (`::` and a dotted IPv4 tail expanded). */
function ipv6Groups (address: string): number[] {
  let text = address
  const v4: number[] = []
  const lastColon = text.lastIndexOf(':')
  if (text.includes('.', lastColon)) {
    const o = text.slice(lastColon + 1).split('.').map(Number) as [number, number, number, number]
    v4.push((o[0] << 8) | o[1], (o[2] << 8) | o[3])
    text = text.slice(0, lastColon + 1)
    if (!text.endsWith('::')) text = text.slice(0, -1)
  }
  const parse = (part: string): number[] => part === '' ? [] : part.split(':').map((g) => parseInt(g, 16))
  const gap = text.indexOf('::')
  if (gap === -1) return [...parse(text), ...v4]
  const left = parse(text.slice(0, gap))
  const right = parse(text.slice(gap + 2))
  return [...left, ...new Array<number>(8 - left.length - right.length - v4.length).fill(0), ...right, ...v4]
}

/**
 * The `/bits` network of an IPv6 address, as text (`2001:db8:0:1::/64`). An
 * IPv6 client usually holds a whole /64 (RFC 6177, RFC 7421) and can pick
 * any address in it, so keying by the full address would let it step past
 * a limit by changing its interface identifier.
 */
export function ipv6Network (address: string, bits: number): string {
  if (bits >= 128) return address
  const groups = ipv6Groups(address)
  for (let i = 0; i < 8; i++) {
    const keep = Math.max(0, Math.min(16, bits - i * 16))
    groups[i] = keep === 0 ? 0 : (groups[i] as number) & (0xffff << (16 - keep)) & 0xffff
  }
  // Shortest form of the masked address: the trailing zero groups become `::`.
  let last = 8
  while (last > 0 && groups[last - 1] === 0) last--
  const text = groups.slice(0, last).map((g) => g.toString(16)).join(':')
  return `${last === 8 ? text : `${text}::`}/${bits}`
}

/** A `trustedProxies` entry: an address or a CIDR block, IPv4 or IPv6. */
export function parseCidr (text: string): { address: string, prefix: number, family: 'ipv4' | 'ipv6' } | undefined {
  const slash = text.indexOf('/')
  const a = parseAddress(slash === -1 ? text : text.slice(0, slash))
  if (a === undefined || text.startsWith('[')) return undefined
  if (slash === -1) return { ...a, prefix: a.family === 'ipv4' ? 32 : 128 }
  const p = text.slice(slash + 1)
  const written = isIPv4(text.slice(0, slash)) ? 32 : 128
  if (!/^\d{1,3}$/.test(p) || Number(p) > written) return undefined
  // `::ffff:10.0.0.0/104` was read as IPv4: its prefix counts the 96 mapped bits.
  const prefix = a.family === 'ipv4' && written === 128 ? Number(p) - 96 : Number(p)
  if (prefix < 0) return undefined
  return { ...a, prefix }
}

export interface ClientIpOptions {
  /** Addresses and CIDR blocks whose `X-Forwarded-For` is believed. */
  readonly trustedProxies: readonly string[]
  /** IPv6 clients are keyed by this network prefix (IPv4 by the full address). */
  readonly ipv6Subnet: number
}

/**
 * Compiles how a request's client address is found, once per snapshot.
 *
 * The TCP peer is the client unless it is a trusted proxy. Then the proxy
 * chain in `X-Forwarded-For` is read from the right: every proxy appends the
 * address it received the request from, so the entries a trusted proxy wrote
 * are the right-most ones, and the first untrusted address from the right is
 * the last one nobody can have forged. Everything to its left came from the
 * client and is ignored (it is what a client sets to spoof its address). When
 * the chain is all trusted the left-most entry is used; an entry that is not
 * an address ends the walk at the trusted hop that reported it.
 *
 * The header is read from the request as received (`ctx.req`), not from the
 * upstream headers, which already carry Outrider's own hop.
 */
export function compileClientIp (options: ClientIpOptions): (ctx: RequestContext) => string {
  const trusted = new BlockList()
  for (const entry of options.trustedProxies) {
    const c = parseCidr(entry)
    if (c === undefined) throw new Error(`not an address or CIDR block: ${entry}`)
    trusted.addSubnet(c.address, c.prefix, c.family)
  }
  const bits = options.ipv6Subnet
  const keyOf = (a: Address): string => a.family === 'ipv4' ? a.address : ipv6Network(a.address, bits)
  const isTrusted = (a: Address): boolean => trusted.check(a.address, a.family)
  const anyTrusted = options.trustedProxies.length > 0

  return (ctx) => {
    const peer = parseAddress(ctx.clientIp)
    // A socket without an address (already closed): one shared bucket.
    if (peer === undefined) return ctx.clientIp
    if (!anyTrusted || !isTrusted(peer)) return keyOf(peer)
    const xff = ctx.req.headers['x-forwarded-for']
    if (typeof xff !== 'string') return keyOf(peer)
    let last = peer
    let end = xff.length
    while (end > 0) {
      const comma = xff.lastIndexOf(',', end - 1)
      const entry = xff.slice(comma + 1, end).trim()
      end = comma === -1 ? 0 : comma
      if (entry === '') continue
      const a = parseAddress(entry)
      if (a === undefined) break
      if (!isTrusted(a)) return keyOf(a)
      last = a
    }
    return keyOf(last)
  }
}
