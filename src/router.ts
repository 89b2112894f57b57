import { Buffer } from 'node:buffer'
import type { MatchConfig, ValueMatch } from './config/schema.ts'

/** What the router reads of a request. The listener builds it once per request. */
export interface RouteRequest {
  /** Upper-case method as node reports it. */
  readonly method: string
  /** Host header or HTTP/2 :authority, raw: may carry a port and upper case. */
  readonly host: string | undefined
  /**
   * Path without the query, as the client sent it (still percent-encoded).
   * Normalisation (dot-segments, double slashes) is the listener's job and
   * MUST happen before routing, or `pathPrefix: /admin` is bypassed by `//admin`.
   */
  readonly path: string
  /** Raw query without the leading `?`; '' when absent. */
  readonly query: string
  /** node's lower-cased headers. */
  readonly headers: Readonly<Record<string, string | readonly string[] | undefined>>
}

/** One route as the router sees it: its match and whatever the caller wants back. */
export interface RouteEntry<R> {
  readonly match: MatchConfig
  readonly value: R
  /**
   * The route answers CORS preflights itself (it has the `cors` plugin), so a
   * preflight for one of its `methods` is its own even when OPTIONS is not
   * listed. See `takesPreflight`.
   */
  readonly answersPreflight?: boolean
}

type FieldValue = string | readonly string[] | undefined
type FieldTest = (value: FieldValue) => boolean

interface FieldMatcher {
  readonly name: string
  readonly test: FieldTest
}

/** A route's matchers compiled once; host is not here, the host index settles it. */
interface CompiledRoute<R> {
  readonly value: R
  readonly methods: readonly string[] | undefined
  /** `methods` when the route answers preflights for them and OPTIONS is not among them; else undefined. */
  readonly preflightMethods: readonly string[] | undefined
  readonly path: string | undefined
  readonly pathPrefix: string | undefined
  readonly pathRegex: RegExp | undefined
  readonly headers: readonly FieldMatcher[]
  readonly query: readonly FieldMatcher[] | undefined
}

interface Candidate<R> {
  readonly route: CompiledRoute<R>
  /** Wildcard suffixes (`.example.com`) still to test; undefined when the host is already known to match. */
  readonly suffixes: readonly string[] | undefined
}

type QueryParams = Map<string, string | string[]>

const NO_PARAMS: QueryParams = new Map()

/**
 * The compiled route table of one Snapshot. Everything (regexes, host index,
 * value matchers) is built in the constructor so `match` only compares strings.
 *
 * Requests are tested against the routes in declared order and the first
 * match wins. Routes are indexed by exact host: a request only visits the
 * routes that name its host, match it by wildcard, or name no host at all,
 * still in declared order.
 *
 * @example
 * const router = new Router([
 *   { match: { host: 'api.example.com', pathPrefix: '/users' }, value: 'users' },
 *   { match: {}, value: 'fallback' },
 * ])
 * router.match({ method: 'GET', host: 'API.example.com:443', path: '/users/1', query: '', headers: {} }) // 'users'
 */
export class Router<R> {
  readonly #byHost = new Map<string, readonly Candidate<R>[]>()
  /** For a host that no route names exactly: wildcard and any-host routes. */
  readonly #otherHost: readonly Candidate<R>[]
  /** For a request without a host: only routes that name no host. */
  readonly #noHost: readonly Candidate<R>[]
  /** Query parameter names some route tests; the parser keeps no others. */
  readonly #queryNames = new Set<string>()
  #lastHost: string | undefined = undefined
  #lastNormalized: string | undefined = undefined

  constructor (entries: readonly RouteEntry<R>[]) {
    const compiled = entries.map((e) => ({ route: this.#compile(e), hosts: compileHosts(e.match.host) }))

    const exactHosts = new Set<string>()
    for (const { hosts } of compiled) {
      if (hosts !== undefined) for (const h of hosts.exact) exactHosts.add(h)
    }

    // Per exact host, wildcard routes are resolved now, so those lists carry no host tests at all.
    for (const host of exactHosts) {
      const list: Candidate<R>[] = []
      for (const { route, hosts } of compiled) {
        if (hosts === undefined || hosts.exact.includes(host) || hasSuffix(host, hosts.suffixes)) {
          list.push({ route, suffixes: undefined })
        }
      }
      this.#byHost.set(host, list)
    }

    const otherHost: Candidate<R>[] = []
    const noHost: Candidate<R>[] = []
    for (const { route, hosts } of compiled) {
      if (hosts === undefined) {
        otherHost.push({ route, suffixes: undefined })
        noHost.push({ route, suffixes: undefined })
      } else if (hosts.suffixes.length > 0) {
        otherHost.push({ route, suffixes: hosts.suffixes })
      }
    }
    this.#otherHost = otherHost
    this.#noHost = noHost
  }

  /** @returns the value of the first route that matches, or undefined (→ 404). */
  match (req: RouteRequest): R | undefined {
    // Consecutive requests nearly always name the same host: one string
    // comparison instead of lower-casing and slicing it again.
    let host: string | undefined
    if (req.host === this.#lastHost && req.host !== undefined) host = this.#lastNormalized
    else {
      host = normalizeHost(req.host)
      this.#lastHost = req.host
      this.#lastNormalized = host
    }
    const candidates = host === undefined ? this.#noHost : (this.#byHost.get(host) ?? this.#otherHost)
    // Parsed at most once, and only when a candidate that got that far tests the query.
    let params: QueryParams | undefined
    for (let i = 0; i < candidates.length; i++) {
      const { route, suffixes } = candidates[i]!
      if (suffixes !== undefined && !hasSuffix(host!, suffixes)) continue
      if (!matchesHead(route, req)) continue
      if (route.query !== undefined) {
        params ??= parseQuery(req.query, this.#queryNames)
        if (!matchesFields(route.query, params)) continue
      }
      return route.value
    }
    return undefined
  }

  #compile (entry: RouteEntry<R>): CompiledRoute<R> {
    const m = entry.match
    let query: FieldMatcher[] | undefined
    if (m.query !== undefined && Object.keys(m.query).length > 0) {
      query = Object.entries(m.query).map(([name, vm]) => ({ name, test: compileValueMatch(vm) }))
      for (const { name } of query) this.#queryNames.add(name)
    }
    return {
      value: entry.value,
      // Exact membership: HEAD does not ride on a GET-only route unless listed,
      // so a route's methods list says exactly what reaches its pipeline.
      methods: m.methods,
      preflightMethods: entry.answersPreflight === true && m.methods !== undefined && !m.methods.includes('OPTIONS') ? m.methods : undefined,
      path: m.path,
      pathPrefix: m.pathPrefix,
      // No flags: a sticky or global regex would carry lastIndex across requests.
      pathRegex: m.pathRegex === undefined ? undefined : new RegExp(m.pathRegex),
      // Names lower-cased again for callers that bypass the schema; node's keys are lower case.
      headers: Object.entries(m.headers ?? {}).map(([name, vm]) => ({ name: name.toLowerCase(), test: compileValueMatch(vm) })),
      query,
    }
  }
}

/** Everything but host and query, cheapest first. */
function matchesHead (route: CompiledRoute<unknown>, req: RouteRequest): boolean {
  if (route.methods !== undefined && !route.methods.includes(req.method) && !takesPreflight(route, req)) return false
  if (route.path !== undefined && req.path !== route.path) return false
  if (route.pathPrefix !== undefined && !req.path.startsWith(route.pathPrefix)) return false
  if (route.pathRegex !== undefined && !route.pathRegex.test(req.path)) return false
  const headers = route.headers
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i]!
    if (!h.test(req.headers[h.name])) return false
  }
  return true
}

/**
 * A CORS preflight (OPTIONS with `Origin` and `Access-Control-Request-Method`,
 * Fetch §3.2.2) asks the resource about the actual request, and the resource's
 * own policy MUST answer it (§4.8): it belongs to the route that would take
 * that request. So a route with `cors` takes a preflight for one of its
 * methods though OPTIONS is not listed; a preflight for a method it does not
 * serve goes on, as that request would, to the route that serves it (or to
 * 404, which fails the preflight as surely as a refusal).
 */
function takesPreflight (route: CompiledRoute<unknown>, req: RouteRequest): boolean {
  const methods = route.preflightMethods
  if (methods === undefined || req.method !== 'OPTIONS' || req.headers.origin === undefined) return false
  const requested = req.headers['access-control-request-method']
  return typeof requested === 'string' && methods.includes(requested)
}

function matchesFields (fields: readonly FieldMatcher[], params: QueryParams): boolean {
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i]!
    if (!f.test(params.get(f.name))) return false
  }
  return true
}

function compileValueMatch (vm: ValueMatch): FieldTest {
  if (typeof vm === 'string') return anyValue((v) => v === vm)
  if (vm.present !== undefined) {
    const want = vm.present
    return (v) => isPresent(v) === want
  }
  if (vm.exact !== undefined) {
    const exact = vm.exact
    return anyValue((v) => v === exact)
  }
  if (vm.prefix !== undefined) {
    const prefix = vm.prefix
    return anyValue((v) => v.startsWith(prefix))
  }
  if (vm.regex !== undefined) {
    const re = new RegExp(vm.regex)
    return anyValue((v) => re.test(v))
  }
  // The schema requires exactly one kind; an empty object asks only for presence.
  return isPresent
}

/** A multi-valued field (repeated header or query parameter) matches if any value does. */
function anyValue (test: (v: string) => boolean): FieldTest {
  return (v) => v === undefined ? false : typeof v === 'string' ? test(v) : v.some(test)
}

function isPresent (v: FieldValue): boolean {
  return v !== undefined && (typeof v === 'string' || v.length > 0)
}

interface HostPatterns {
  readonly exact: readonly string[]
  /** `*.example.com` stored as `.example.com`. */
  readonly suffixes: readonly string[]
}

function compileHosts (host: string | readonly string[] | undefined): HostPatterns | undefined {
  if (host === undefined) return undefined
  const exact: string[] = []
  const suffixes: string[] = []
  for (const pattern of typeof host === 'string' ? [host] : host) {
    const h = normalizeHost(pattern)
    if (h === undefined) continue
    if (h.startsWith('*.')) suffixes.push(h.slice(1))
    else exact.push(h)
  }
  return { exact, suffixes }
}

/** `*.example.com` matches any depth of subdomain but not the apex. */
function hasSuffix (host: string, suffixes: readonly string[]): boolean {
  for (let i = 0; i < suffixes.length; i++) {
    const s = suffixes[i]!
    if (host.length > s.length && host.endsWith(s)) return true
  }
  return false
}

/**
 * Lower-cases a Host value and drops its port and trailing dot
 * (RFC 9110 §7.2; host names are case-insensitive, RFC 4343). An IPv6
 * literal loses its brackets, so `[::1]:8080` and a configured `::1` agree.
 *
 * @example
 * normalizeHost('API.Example.com.:8443') // 'api.example.com'
 * normalizeHost('[::1]:8080') // '::1'
 */
export function normalizeHost (host: string | undefined): string | undefined {
  if (host === undefined || host === '') return undefined
  let h = host.toLowerCase()
  if (h.charCodeAt(0) === 0x5b /* [ */) {
    const end = h.indexOf(']')
    return end === -1 ? h : h.slice(1, end)
  }
  const colon = h.indexOf(':')
  // A second colon means a bare IPv6 address (invalid in Host, but it has no port to strip).
  if (colon !== -1 && h.indexOf(':', colon + 1) === -1) h = h.slice(0, colon)
  if (h.charCodeAt(h.length - 1) === 0x2e /* . */) h = h.slice(0, -1)
  return h === '' ? undefined : h
}

/**
 * Parses an `application/x-www-form-urlencoded` query (WHATWG URL §5.1),
 * keeping only the parameters some route tests, so values nobody reads are
 * never decoded.
 */
function parseQuery (query: string, names: ReadonlySet<string>): QueryParams {
  if (query === '' || names.size === 0) return NO_PARAMS
  const params: QueryParams = new Map()
  let start = 0
  while (start <= query.length) {
    let end = query.indexOf('&', start)
    if (end === -1) end = query.length
    if (end > start) {
      const eq = query.indexOf('=', start)
      const nameEnd = eq === -1 || eq > end ? end : eq
      const name = decodeComponent(query.slice(start, nameEnd))
      if (names.has(name)) {
        const value = nameEnd === end ? '' : decodeComponent(query.slice(nameEnd + 1, end))
        const prev = params.get(name)
        if (prev === undefined) params.set(name, value)
        else if (typeof prev === 'string') params.set(name, [prev, value])
        else prev.push(value)
      }
    }
    start = end + 1
  }
  return params
}

function decodeComponent (s: string): string {
  if (s.includes('+')) s = s.replaceAll('+', ' ')
  if (!s.includes('%')) return s
  try {
    return decodeURIComponent(s)
  } catch {
    return decodeLenient(s)
  }
}

/**
 * Percent-decoding that never throws, as WHATWG URL does it: a `%` without two
 * hex digits stays literal and invalid UTF-8 becomes U+FFFD. Only reached for
 * malformed input, which a client controls, so it MUST NOT fail the request.
 */
function decodeLenient (s: string): string {
  const bytes = Buffer.from(s, 'utf8')
  let out = 0
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!
    if (b === 0x25 && i + 2 < bytes.length) {
      const hi = hexValue(bytes[i + 1]!)
      const lo = hexValue(bytes[i + 2]!)
      if (hi !== -1 && lo !== -1) {
        bytes[out++] = hi * 16 + lo
        i += 2
        continue
      }
    }
    bytes[out++] = b
  }
  return bytes.toString('utf8', 0, out)
}

function hexValue (c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30
  if (c >= 0x41 && c <= 0x46) return c - 0x37
  if (c >= 0x61 && c <= 0x66) return c - 0x57
  return -1
}
