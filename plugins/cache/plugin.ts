import { createHash } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import { definePlugin, type HeaderMap, type LocalResponse, type PurgeSelector, type RequestContext, type ResponseContext, type SubrequestReply } from '../../src/plugin.ts'
import { endToEnd } from '../../src/http/response-head.ts'
import { problemResponse } from '../../src/http/problem.ts'
import { UpstreamProtocolError } from '../../src/errors.ts'
import { HOP_BY_HOP } from '../../src/http/hop-by-hop.ts'
import { schema, type CacheConfig } from './schema.ts'
import { parseCacheControl, pragmaNoCache, type CacheControl } from './cache-control.ts'
import { currentAge, effectiveCacheControl, refresh, type FreshnessOptions, type StoredResponse } from './stored-response.ts'
import { varyMatches, varyNames, varyValues } from './vary.ts'
import { isConditional, notModified, NOT_MODIFIED_FIELDS, sameValidator } from './conditional.ts'
import { explicitLifetime, isServerFailure, SAFE_METHODS, sharedWhenAuthenticated, staleIfError, storable, usable, type NotStorable } from './policy.ts'
import { acquireStore, metricsFor } from './process-state.ts'
import { byteRange, ifRangeHolds, storedPart } from './range.ts'
import { Capture } from './capture.ts'
import { RedisLayer } from './redis-layer.ts'

type Outcome = 'HIT' | 'MISS' | 'STALE' | 'REVALIDATED' | 'BYPASS'

/** What the cache decided in the request phase, for the response phase. */
interface CacheState {
  outcome: Outcome
  key: string
  reqCC: CacheControl
  /** When the request left for the upstream (RFC 9111 §4.2.3 request_time). */
  requestTime: number
  /** The stored response being revalidated, or kept for stale-if-error. */
  entry: StoredResponse | undefined
  /** The entry's validators went upstream instead of the client's conditionals. */
  revalidating: boolean
  /** The client's own conditional fields (answered by us after a revalidation). */
  clientHeaders: HeaderMap
  /** This request is the one a collapsed group waits for. */
  leader: (() => void) | undefined
  invalidate: boolean
  /** Answered in the request phase (from the cache, or 504 for only-if-cached). */
  served: boolean
  /**
   * A range request nothing stored could answer: its 200 is kept as on any
   * miss, its 206 as a part (unless a complete response is stored by then).
   */
  rangeMiss: boolean
}

/** Fields never stored: per-message, per-hop, or ours. */
const NOT_STORED: ReadonlySet<string> = new Set([...HOP_BY_HOP, 'proxy-authentication-info', 'age', 'x-request-id', 'x-outrider-attempts', 'connection'])
/** Fields a 304 must not overwrite in the stored response (RFC 9111 §3.2). */
const NOT_UPDATED: ReadonlySet<string> = new Set([...NOT_STORED, 'content-length'])

/** Selects the stored variant for a request: the most recently stored one whose Vary fields match (§4.1). */
function select (entries: readonly StoredResponse[] | undefined, req: HeaderMap, normaliseAE: boolean): StoredResponse | undefined {
  if (entries === undefined) return undefined
  for (const e of entries) if (varyMatches(e.varyNames, e.varyValues, req, normaliseAE)) return e
  return undefined
}

/** Copies the fields of `from` worth storing (and no field named by `private="…"`). */
function storedHeaders (from: HeaderMap, drop: readonly string[] | undefined, setCookie: CacheConfig['setCookie'], statusHeader: string): HeaderMap {
  const out: HeaderMap = {}
  for (const name in from) {
    const v = from[name]
    if (v === undefined || NOT_STORED.has(name) || name === statusHeader) continue
    if (name === 'set-cookie' && setCookie !== 'store') continue
    if (drop !== undefined && drop.includes(name)) continue
    out[name] = Array.isArray(v) ? [...v] : v
  }
  return out
}

function tagsOf (value: string | string[] | undefined): string[] {
  if (value === undefined) return []
  const raw = typeof value === 'string' ? value : value.join(' ')
  return [...new Set(raw.split(/[\s,]+/).filter((t) => t !== ''))].slice(0, 64)
}

/**
 * Does the request carry credentials (RFC 9111 §3.5)? `Authorization`, or an
 * identity an auth plugin before the cache established from wherever its
 * credential was (an `x-api-key` header, a cookie, a query parameter), which
 * it may also have removed before the cache looks.
 */
function authenticated (c: RequestContext): boolean {
  return c.identity !== undefined || c.req.headers.authorization !== undefined
}

/** Where a URL lives in the cache: `host/path?query`, host lower-cased and without a default port. */
export function cacheKey (authority: string, path: string, query: string): string {
  let host = authority.toLowerCase()
  if (host.endsWith(':80') || host.endsWith(':443')) host = host.slice(0, host.lastIndexOf(':'))
  return query === '' ? host + path : `${host}${path}?${query}`
}

/**
 * The `cache` plugin: a shared HTTP cache (RFC 9111, RFC 5861) in front of
 * the route's cluster. L1 in process (lru-cache, bounded by bytes), optional
 * L2 in Redis shared by every sidecar. Put it after authentication plugins
 * (they decide who may see a response; the cache decides whether the
 * upstream is asked) and before `compression` (see README).
 *
 * @example
 * plugins:
 *   - name: cache
 *     config: { maxSize: 256mib, l2: { type: redis, url: 'redis://redis:6379' }, tagHeader: cache-tag }
 */
export default definePlugin({
  name: 'cache',
  schema,
  async create (config, ctx) {
    const route = ctx.routeName
    const metrics = metricsFor(ctx.metrics)
    const counts: Record<Outcome, { inc (): void }> = {
      HIT: metrics.lookups.labels(route, 'hit'),
      MISS: metrics.lookups.labels(route, 'miss'),
      STALE: metrics.lookups.labels(route, 'stale'),
      REVALIDATED: metrics.lookups.labels(route, 'revalidated'),
      BYPASS: metrics.lookups.labels(route, 'bypass'),
    }
    const fresh: FreshnessOptions = { heuristicFraction: config.heuristicFraction, heuristicMax: config.heuristicMax / 1000, targeted: config.targetedCacheControl }
    const held = acquireStore(route, config.maxSize)
    const l1 = held.store
    const l2 = config.l2 === undefined
      ? undefined
      : await RedisLayer.open(config.l2, {
        log: ctx.log,
        onError: (op) => { metrics.l2Errors.labels(route, op).inc() },
        onRemotePurge: (selector) => { purgeLocal(selector) },
        sender: l1.id,
      }, fresh)
    const normaliseAE = config.normaliseAcceptEncoding
    const statusHeader = config.statusHeader.toLowerCase()
    const tagHeader = config.tagHeader?.toLowerCase()
    const methods = new Set<string>(config.methods)
    /** Leaders of collapsed misses, by key: resolved when their response is stored (or will not be). */
    const inflight = new Map<string, Promise<void>>()
    /**
     * URLs whose last response could not be stored ("hit-for-pass", as
     * Varnish calls it): for a while their misses are not collapsed, so an
     * uncacheable URL never queues its requests behind one another.
     */
    const passUntil = new LRUCache<string, true>({ max: 10_000, ttl: 10_000 })
    /** Keys with a background revalidation running (stale-while-revalidate refreshes once). */
    const refreshing = new Set<string>()

    function purgeLocal (selector: PurgeSelector): number {
      if ('url' in selector) return l1.delete(selector.url)
      if ('prefix' in selector) return l1.deletePrefix(selector.prefix)
      return l1.deleteTag(selector.tag)
    }

    /** How long a stored response stays useful (ms): fresh time left, then the stale windows. */
    function keepFor (e: StoredResponse, now: number): number {
      const freshLeft = Math.max(0, e.lifetime - currentAge(e, now))
      const cc = e.cc
      // Stale responses stay for revalidation (with a validator), for max-stale
      // requests and for the stale-* windows; the LRU bounds the memory.
      let staleSecs = Math.max(cc.staleWhileRevalidate ?? 0, cc.staleIfError ?? 0, config.keepStale / 1000)
      if (Number.isNaN(staleSecs)) staleSecs = config.keepStale / 1000
      return Math.floor((freshLeft + staleSecs) * 1000)
    }

    function makeEntry (key: string, status: number, headers: HeaderMap, body: Buffer, req: HeaderMap, requestTime: number, responseTime: number, ageHeader: string | string[] | undefined): StoredResponse {
      const resCC = effectiveCacheControl(headers, config.targetedCacheControl).cc
      const stored = storedHeaders(headers, resCC.privateFields, config.setCookie, statusHeader)
      const names = varyNames(headers.vary)
      const e: StoredResponse = {
        key,
        status,
        headers: stored,
        body,
        varyNames: names,
        varyValues: varyValues(req, names, normaliseAE),
        requestTime,
        responseTime,
        cc: resCC,
        dateValue: responseTime,
        ageValue: 0,
        lifetime: 0,
        etag: undefined,
        lastModified: undefined,
        tags: tagHeader === undefined ? [] : tagsOf(headers[tagHeader]),
        size: 0,
      }
      // A part's hash would be a tag of its own, not the representation's (RFC 9110 §8.8.3).
      if (config.generateEtag && status !== 206 && stored.etag === undefined && stored['last-modified'] === undefined) {
        stored.etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`
      }
      refresh(e, ageHeader, fresh)
      let headerBytes = 64
      for (const name in stored) headerBytes += name.length + String(stored[name]).length + 4
      e.size = body.length + headerBytes + 256
      return e
    }

    function put (e: StoredResponse, now: number): void {
      const keep = keepFor(e, now)
      if (keep <= 0) return
      if (e.size <= config.maxSize) l1.put(e, keep, now)
      // Parts stay in this process: in Redis one would replace another
      // sidecar's complete response, which the L2 script cannot tell apart.
      if (e.status !== 206) l2?.put(e, keep)
    }

    /** The headers a stored response goes out with. */
    function servedHeaders (e: StoredResponse, now: number, outcome: Outcome, validated: boolean): HeaderMap {
      const h: HeaderMap = {}
      // Arrays copied too: a later plugin that appends must not grow the stored response.
      for (const name in e.headers) { const v = e.headers[name]; h[name] = Array.isArray(v) ? [...v] : v }
      if (!validated && e.cc.noCacheFields !== undefined) for (const f of e.cc.noCacheFields) delete h[f]
      h.age = String(Math.floor(currentAge(e, now)))
      if (statusHeader !== '') h[statusHeader] = outcome
      return h
    }

    function notModifiedHeaders (e: StoredResponse, now: number, outcome: Outcome): HeaderMap {
      const h: HeaderMap = {}
      for (const f of NOT_MODIFIED_FIELDS) if (e.headers[f] !== undefined) h[f] = e.headers[f]
      h.age = String(Math.floor(currentAge(e, now)))
      if (statusHeader !== '') h[statusHeader] = outcome
      return h
    }

    /** Answers the client from a stored response (a 304 when its own conditional matches). */
    function serve (c: RequestContext, st: CacheState, e: StoredResponse, now: number, outcome: Outcome): LocalResponse {
      st.outcome = outcome
      st.served = true
      counts[outcome].inc()
      c.annotate('cache', outcome.toLowerCase())
      const req = c.req.headers as HeaderMap
      if (notModified(req, e)) return { status: 304, headers: notModifiedHeaders(e, now, outcome) }
      const headers = servedHeaders(e, now, outcome, false)
      if (req.range !== undefined && (e.status === 200 || e.status === 206) && ifRangeHolds(req['if-range'], e)) {
        // A stored part holds [first, last] of `length` bytes; rangeOf only
        // brings requests for ranges inside it.
        const part = e.status === 206 ? storedPart(e.headers['content-range']) : undefined
        const length = part?.length ?? e.body.length
        const offset = part?.first ?? 0
        const r = byteRange(String(req.range), length)
        if (r === 'unsatisfiable') {
          return { status: 416, headers: { 'content-range': `bytes */${length}`, ...(statusHeader === '' ? {} : { [statusHeader]: outcome }) } }
        }
        if (r !== undefined) {
          headers['content-range'] = `bytes ${r[0]}-${r[1]}/${length}`
          return { status: 206, headers, body: e.body.subarray(r[0] - offset, r[1] - offset + 1) }
        }
      }
      return { status: e.status, headers, body: e.body }
    }

    /** Replaces an upstream (or error) response with a stored one in the response phase. */
    function serveInstead (c: RequestContext, res: ResponseContext, e: StoredResponse, now: number, outcome: Outcome, validated: boolean): void {
      clearHeaders(res)
      if (notModified(st(c)?.clientHeaders ?? {}, e)) {
        res.status = 304
        Object.assign(res.headers, notModifiedHeaders(e, now, outcome))
        res.replaceBody(Buffer.alloc(0))
        delete res.headers['content-length']
      } else {
        res.status = e.status
        Object.assign(res.headers, servedHeaders(e, now, outcome, validated))
        res.replaceBody(e.body)
      }
    }

    /** Drops what the upstream's response said before another answer replaces it (the request id stays). */
    function clearHeaders (res: ResponseContext): void {
      for (const name in res.headers) if (name !== 'x-request-id') delete res.headers[name]
    }

    function st (c: RequestContext): CacheState | undefined {
      return c.state.cache as CacheState | undefined
    }

    /** Why a response to `c` may not be stored (RFC 9111 §3, with this config's Set-Cookie and targeted rules); undefined when it may. */
    function whyNotStored (status: number, headers: HeaderMap, reqCC: CacheControl, c: RequestContext, partial = false): NotStorable | undefined {
      const resCC = effectiveCacheControl(headers, config.targetedCacheControl).cc
      return storable(status, headers, resCC, reqCC, authenticated(c), config.setCookie, partial)
    }

    /**
     * Updates a stored response from a 304 (RFC 9111 §3.2, §4.3.4) to a
     * request (`authed`: with credentials). Undefined when the 304 is about
     * another representation.
     */
    function freshen (e: StoredResponse, headers: HeaderMap, authed: boolean, requestTime: number, now: number): StoredResponse | undefined {
      const match = sameValidator(headers.etag, e.etag)
      if (match === undefined) return undefined
      const cc = effectiveCacheControl(headers, config.targetedCacheControl).cc
      // The origin no longer lets a shared cache keep it: a copy answers this
      // client once (with its fields), and the shared object stays untouched
      // for requests still holding it. Updated by an authenticated request's
      // 304, it is a response to that request (§3.5): shared only when the
      // directives it has then (the 304's, else its own) say so.
      const shared = !cc.private && !cc.noStore &&
        (!authed || sharedWhenAuthenticated(effectiveCacheControl({ ...e.headers, ...headers }, config.targetedCacheControl).cc))
      const out = shared ? e : { ...e, headers: { ...e.headers } }
      for (const name in headers) {
        const v = headers[name]
        if (v === undefined || NOT_UPDATED.has(name) || name === statusHeader) continue
        // Matched weakly: the 304 may describe other bytes (another Content-Encoding, say) than the stored ones.
        if (match === 'weak' && name.startsWith('content-')) continue
        // One client's fields never go into the shared copy (that client still gets them: see clientFields).
        if (shared && ((name === 'set-cookie' && config.setCookie !== 'store') || cc.privateFields?.includes(name) === true)) continue
        out.headers[name] = v
      }
      if (shared && cc.privateFields !== undefined) for (const f of cc.privateFields) delete out.headers[f]
      out.requestTime = requestTime
      out.responseTime = now
      refresh(out, headers.age, fresh)
      if (!shared) { l1.remove(e); return out }
      // Purged or replaced while the 304 was on its way: not written back anywhere (evicted is stored again).
      const keep = Math.max(1, keepFor(e, now))
      if (l1.touch(e, keep, now, requestTime)) l2?.put(e, keep)
      return e
    }

    /** What a 304 says to the client that asked only, kept out of the shared copy: its cookie and its `private="…"` fields. */
    function clientFields (res: ResponseContext, from: HeaderMap): void {
      if (from['set-cookie'] !== undefined) res.headers['set-cookie'] = from['set-cookie']
      const named = effectiveCacheControl(from, config.targetedCacheControl).cc.privateFields
      if (named !== undefined) for (const f of named) if (from[f] !== undefined) res.headers[f] = from[f]
    }

    /**
     * A 200 to a HEAD about a stored GET (RFC 9111 §4.3.5): same validators
     * and length, its headers and freshness refresh the stored copy; a
     * different representation makes the stored one unusable.
     */
    function headUpdate (e: StoredResponse, headers: HeaderMap, authed: boolean, requestTime: number, now: number): void {
      const etag = headers.etag
      const lm = headers['last-modified']
      const length = headers['content-length']
      const changed = (etag !== undefined && String(etag) !== e.etag) ||
        (lm !== undefined && String(lm) !== e.lastModified) ||
        (length !== undefined && Number(length) !== e.body.length)
      if (changed) { l1.remove(e); return }
      freshen(e, headers, authed, requestTime, now)
    }

    /** stale-while-revalidate: refresh `e` once in the background; the client already has its answer. */
    function refreshInBackground (c: RequestContext, e: StoredResponse): void {
      if (refreshing.has(e.key)) return
      refreshing.add(e.key)
      const headers: HeaderMap = { ...c.upstreamHeaders }
      delete headers['if-none-match']
      delete headers['if-modified-since']
      delete headers['if-match']
      delete headers['if-unmodified-since']
      delete headers.range
      if (e.etag !== undefined) headers['if-none-match'] = e.etag
      if (e.lastModified !== undefined) headers['if-modified-since'] = e.lastModified
      const requestTime = Date.now()
      const req = c.req.headers as HeaderMap
      const authed = authenticated(c)
      const reqCC = st(c)?.reqCC ?? parseCacheControl(undefined)
      ctx.upstream.request({ method: 'GET', path: c.upstreamPath, headers, maxBodySize: config.maxEntrySize }).then((reply) => {
        const now = Date.now()
        if (reply.status === 304) { if (freshen(e, reply.headers, authed, requestTime, now) === undefined) l1.remove(e); return }
        if (isServerFailure(reply.status)) return
        if (whyNotStored(reply.status, reply.headers, reqCC, c) !== undefined || reply.body === undefined) { l1.remove(e); return }
        put(makeEntry(e.key, reply.status, reply.headers, reply.body, req, requestTime, now, reply.headers.age), now)
      }, (err: unknown) => {
        ctx.log.debug('background revalidation failed; the stale response stays', { key: e.key, err })
      }).finally(() => { refreshing.delete(e.key) })
    }

    /**
     * A range request: cut from a fresh stored 200, or from a stored part
     * that holds the whole range (RFC 9111 §3.3); anything else goes upstream
     * as the client sent it, without collapsing or revalidation.
     */
    function rangeOf (c: RequestContext, state: CacheState, e: StoredResponse | undefined): LocalResponse | undefined {
      if (e !== undefined && (e.status === 200 || holdsRange(c.req.headers as HeaderMap, e))) {
        const now = Date.now()
        const verdict = usable(e, state.reqCC, state.reqCC.noCache, now)
        if (verdict === 'fresh' || verdict === 'stale-ok') return serve(c, state, e, now, verdict === 'fresh' ? 'HIT' : 'STALE')
      }
      if (state.reqCC.onlyIfCached) return onlyIfCachedMiss(state)
      state.rangeMiss = true
      state.requestTime = Date.now()
      return undefined
    }

    /** Can the stored part `e` answer this range request (the range inside it, If-Range holding)? */
    function holdsRange (req: HeaderMap, e: StoredResponse): boolean {
      if (e.status !== 206 || !ifRangeHolds(req['if-range'], e)) return false
      const part = storedPart(e.headers['content-range'])
      if (part === undefined) return false
      const r = byteRange(String(req.range), part.length)
      return r === 'unsatisfiable' || (r !== undefined && r[0] >= part.first && r[1] <= part.last)
    }

    /** Is a complete response stored for this URL (any variant: a part without Vary would drop them all)? */
    function holdsComplete (key: string): boolean {
      return l1.get(key)?.some((e) => e.status !== 206) === true
    }

    /** A stored part answers range requests only (§3.3): to any other request it is as if nothing were stored. */
    function complete (e: StoredResponse | undefined): StoredResponse | undefined {
      return e?.status === 206 ? undefined : e
    }

    /** The rest of the request phase once the stored response (or none) is known: serve, revalidate, collapse or fetch. */
    function afterLookup (c: RequestContext, state: CacheState, e: StoredResponse | undefined): LocalResponse | undefined | Promise<LocalResponse | undefined> {
      const req = c.req.headers as HeaderMap
      const noCache = state.reqCC.noCache || (req['cache-control'] === undefined && pragmaNoCache(req.pragma))
      const r = decide(c, state, e, noCache)
      if (r !== undefined) return r
      const key = state.key
      if (config.collapse && c.method === 'GET' && !noCache && state.entry === undefined && passUntil.get(key) === undefined) {
        const pending = inflight.get(key)
        if (pending !== undefined) {
          // Another request is fetching this URL: wait for it, then look again (once).
          let timer: NodeJS.Timeout | undefined
          return Promise.race([pending, new Promise<void>((resolve) => { timer = setTimeout(resolve, config.collapseTimeout) })]).then(() => {
            clearTimeout(timer)
            const again = decide(c, state, complete(select(l1.get(key), req, normaliseAE)), noCache)
            if (again === undefined) state.requestTime = Date.now()
            return again
          })
        }
        let done: () => void = () => {}
        inflight.set(key, new Promise<void>((resolve) => { done = resolve }))
        state.leader = () => { inflight.delete(key); done() }
      }
      state.requestTime = Date.now()
      return undefined
    }

    /** An L2 hit is copied into L1 for the time it has left. */
    function promote (e: StoredResponse | undefined): StoredResponse | undefined {
      if (e === undefined) return undefined
      const now = Date.now()
      const keep = keepFor(e, now)
      if (keep > 0 && e.size <= config.maxSize) l1.put(e, keep, now)
      return e
    }

    /** §5.2.1.7: nothing usable stored, and the client will not wait for the origin. */
    function onlyIfCachedMiss (state: CacheState): LocalResponse {
      state.outcome = 'MISS'
      state.served = true
      counts.MISS.inc()
      return { status: 504, headers: statusHeader === '' ? {} : { [statusHeader]: 'MISS' } }
    }

    /** The request phase once a stored response (or none) is known. */
    function decide (c: RequestContext, state: CacheState, e: StoredResponse | undefined, noCache: boolean): LocalResponse | undefined {
      const now = Date.now()
      if (e !== undefined) {
        const verdict = usable(e, state.reqCC, noCache, now)
        if (verdict === 'fresh') return serve(c, state, e, now, 'HIT')
        if (verdict === 'stale-ok') return serve(c, state, e, now, 'STALE')
        if (verdict === 'swr' && c.method === 'GET') {
          refreshInBackground(c, e)
          return serve(c, state, e, now, 'STALE')
        }
      }
      if (state.reqCC.onlyIfCached) return onlyIfCachedMiss(state)
      state.entry = e
      if (e !== undefined && (e.etag !== undefined || e.lastModified !== undefined) && c.method === 'GET') {
        // Ask with our validators; the client's own conditionals are answered from the result.
        const h = c.upstreamHeaders
        state.clientHeaders = { 'if-none-match': h['if-none-match'], 'if-modified-since': h['if-modified-since'] }
        delete h['if-none-match']
        delete h['if-modified-since']
        if (e.etag !== undefined) h['if-none-match'] = e.etag
        if (e.lastModified !== undefined) h['if-modified-since'] = e.lastModified
        state.revalidating = true
      }
      return undefined
    }

    return {
      /**
       * Synchronous when L1 decides (a hit, or a miss with no L2): the hit
       * path makes no promise. L2 lookups and collapsed waits are async.
       */
      onRequest (c: RequestContext): LocalResponse | undefined | Promise<LocalResponse | undefined> {
        const req = c.req.headers as HeaderMap
        const key = cacheKey(c.authority, c.path, c.query)
        const state: CacheState = {
          outcome: 'BYPASS',
          key,
          reqCC: parseCacheControl(req['cache-control']),
          requestTime: 0,
          entry: undefined,
          revalidating: false,
          clientHeaders: {},
          leader: undefined,
          invalidate: false,
          served: false,
          rangeMiss: false,
        }
        c.state.cache = state
        // A WebSocket handshake is a GET, but what it asks for is a tunnel: never a stored response.
        if (c.req.headers.upgrade !== undefined && c.req.headers.connection !== undefined && /upgrade/i.test(c.req.headers.connection)) return undefined
        if (!methods.has(c.method)) {
          state.invalidate = !SAFE_METHODS.has(c.method)
          state.requestTime = Date.now()
          return undefined
        }
        const local = select(l1.get(key), req, normaliseAE)
        if (req.range !== undefined) {
          // A part here that cannot answer: L2 may hold the complete response.
          if (l2 === undefined || (local !== undefined && (local.status !== 206 || holdsRange(req, local)))) return rangeOf(c, state, local)
          return l2.get(key, req, normaliseAE).then((e) => rangeOf(c, state, promote(e) ?? local))
        }
        state.outcome = 'MISS'
        // A part here answers nothing but ranges: L2 may hold the complete response.
        if (l2 === undefined || (local !== undefined && local.status !== 206)) return afterLookup(c, state, complete(local))
        return l2.get(key, req, normaliseAE).then((e) => afterLookup(c, state, complete(promote(e))))
      },

      onResponse (c: RequestContext, res: ResponseContext): void | Promise<void> {
        const state = st(c)
        if (state === undefined) return
        // Our own answer from the request phase (a stored response, or 504 for only-if-cached).
        if (state.served) return
        const now = Date.now()
        if (state.invalidate) {
          // §4.4: a successful unsafe request invalidates the URL and the URLs it names on the same host.
          if (!res.local && res.status >= 200 && res.status < 400) invalidate(c, res.headers)
          finishOutcome(c, res, 'BYPASS')
          if (c.method === 'POST' && !res.local && isOwnRepresentation(c, res.headers)) keepPostResponse(c, res, state)
          return
        }
        if (state.rangeMiss) { keepAfterRangeMiss(c, res, state); return }
        if (state.outcome === 'BYPASS') { finishOutcome(c, res, 'BYPASS'); return }
        const e = state.entry
        if (e !== undefined && state.revalidating && res.status === 304 && !res.local) {
          const from304 = { ...res.headers }
          const answer = freshen(e, res.headers, authenticated(c), state.requestTime, now)
          if (answer !== undefined) {
            serveInstead(c, res, answer, now, 'REVALIDATED', true)
            clientFields(res, from304)
            count(c, 'REVALIDATED')
            release(state)
            return
          }
          l1.remove(e)
          // §4.3.4: a 304 about another representation (a different strong
          // ETag) updates nothing, and it was the answer to our validators,
          // not the client's question: ask again as the client did.
          return askAsTheClientDid(c, res, state)
        }
        if (e !== undefined && isServerFailure(res.status) && staleIfError(e, state.reqCC, now, res.local)) {
          serveInstead(c, res, e, now, 'STALE', false)
          count(c, 'STALE')
          release(state)
          return
        }
        finishOutcome(c, res, 'MISS')
        if (c.method === 'HEAD' && e !== undefined && !res.local && res.status === 200) headUpdate(e, res.headers, authenticated(c), state.requestTime, now)
        if (res.local || c.method !== 'GET') { release(state); return }
        const req = c.req.headers as HeaderMap
        if (whyNotStored(res.status, res.headers, state.reqCC, c) !== undefined) {
          // A stored copy the origin no longer lets us keep must go (e.g. now no-store).
          if (e !== undefined) l1.remove(e)
          passUntil.set(state.key, true)
          release(state)
          return
        }
        keep(res, state, req, undefined)
      },

      onLog (c: RequestContext): void {
        // However the exchange ended, a collapsed group must not wait for it any longer.
        const state = st(c)
        if (state !== undefined) release(state)
      },

      async purge (selector: PurgeSelector): Promise<number> {
        const n = purgeLocal(selector)
        if (l2 !== undefined) await l2.purge(selector)
        return n
      },

      async close (): Promise<void> {
        held.release()
        await l2?.close()
      },
    }

    function count (c: RequestContext, outcome: Outcome): void {
      counts[outcome].inc()
      c.annotate('cache', outcome.toLowerCase())
    }

    /**
     * Replaces `res` (a 304 to our validators that no stored response matches)
     * with the origin's answer to the request as the client sent it: its own
     * conditionals, none of ours. A 200 is stored as on any miss. When that
     * answer cannot be had whole, a 502: a 304 must never reach a client that
     * did not ask conditionally (RFC 9110 §15.4.5).
     */
    async function askAsTheClientDid (c: RequestContext, res: ResponseContext, state: CacheState): Promise<void> {
      const headers: HeaderMap = { ...c.upstreamHeaders }
      delete headers['if-none-match']
      delete headers['if-modified-since']
      const own = state.clientHeaders
      if (own['if-none-match'] !== undefined) headers['if-none-match'] = own['if-none-match']
      if (own['if-modified-since'] !== undefined) headers['if-modified-since'] = own['if-modified-since']
      const requestTime = Date.now()
      let reply: SubrequestReply | undefined
      try {
        reply = await ctx.upstream.request({ method: 'GET', path: c.upstreamPath, headers, maxBodySize: config.maxEntrySize })
      } catch (err) {
        ctx.log.debug('asking again after a 304 for another representation failed', { key: state.key, err })
      }
      clearHeaders(res)
      if (reply === undefined || reply.body === undefined) {
        const why = reply === undefined ? 'could not be had' : `is larger than cache.maxEntrySize (${config.maxEntrySize} bytes)`
        const p = problemResponse(new UpstreamProtocolError(`the origin answered a revalidation with a 304 for another representation, and the full response ${why}`), c.requestId, false)
        res.status = p.status
        Object.assign(res.headers, p.headers)
        res.replaceBody(Buffer.from(p.body))
        finishOutcome(c, res, 'MISS')
        release(state)
        return
      }
      res.status = reply.status
      Object.assign(res.headers, endToEnd(reply.headers))
      res.replaceBody(reply.body)
      finishOutcome(c, res, 'MISS')
      const now = Date.now()
      const req = c.req.headers as HeaderMap
      if (whyNotStored(reply.status, reply.headers, state.reqCC, c) === undefined) {
        put(makeEntry(state.key, reply.status, reply.headers, reply.body, req, requestTime, now, reply.headers.age), now)
      }
      release(state)
    }

    /** Stores the response as it streams to the client (`whole`: how long its body must be to be kept). */
    function keep (res: ResponseContext, state: CacheState, req: HeaderMap, whole: number | undefined): void {
      const length = Number(res.headers['content-length'] ?? -1)
      if (length > config.maxEntrySize) { release(state); return }
      const headers = { ...res.headers }
      const status = res.status
      const requestTime = state.requestTime
      res.pipeThrough(new Capture(config.maxEntrySize, (body) => {
        const at = Date.now()
        // A part never replaces a complete response (even a stale one, which
        // may yet be revalidated; or one stored while the part was on its way).
        const kept = body !== undefined && (whole === undefined || (body.length === whole && !holdsComplete(state.key)))
        if (kept) put(makeEntry(state.key, status, headers, body, req, requestTime, at, headers.age), at)
        release(state)
      }))
    }

    /**
     * The answer to a range request nothing stored could serve. A 200 is a
     * complete response like any other; a 206 with one range of a known
     * length is kept as a part, for later ranges inside it (RFC 9111 §3.3).
     * Parts are not combined (§3.4 needs matching strong validators, and a
     * complete response is one request away).
     */
    function keepAfterRangeMiss (c: RequestContext, res: ResponseContext, state: CacheState): void {
      finishOutcome(c, res, 'MISS')
      if (res.local || c.method !== 'GET') return
      const partial = res.status === 206
      const part = partial ? storedPart(res.headers['content-range']) : undefined
      if (partial ? part === undefined : res.status !== 200) return
      const req = c.req.headers as HeaderMap
      if (whyNotStored(res.status, res.headers, state.reqCC, c, partial) !== undefined) return
      keep(res, state, req, part === undefined ? undefined : part.last - part.first + 1)
    }

    /**
     * A 200 to a POST with explicit freshness whose Content-Location is the
     * request's own URL is that resource's current representation (RFC 9110
     * §9.3.3): stored for later GETs, after the POST invalidated the old one.
     */
    function keepPostResponse (c: RequestContext, res: ResponseContext, state: CacheState): void {
      if (res.status !== 200) return
      if (!explicitLifetime(res.headers, effectiveCacheControl(res.headers, config.targetedCacheControl).cc)) return
      const req = c.req.headers as HeaderMap
      if (whyNotStored(res.status, res.headers, state.reqCC, c) !== undefined) return
      keep(res, state, req, undefined)
    }

    /** Does the response's Content-Location name the request's own URL? */
    function isOwnRepresentation (c: RequestContext, headers: HeaderMap): boolean {
      const loc = headers['content-location']
      // Content-Location is in the origin's URL space: only when the path went
      // upstream as the client sent it is that the cache's too (a rewrite may
      // map another resource onto this URL).
      const own = c.query === '' ? c.path : `${c.path}?${c.query}`
      return c.upstreamPath === own && sameHostKey(c, loc) === st(c)?.key
    }

    /** The cache key of a URL a response names (Location, Content-Location), when it is on the request's host. */
    function sameHostKey (c: RequestContext, ref: string | string[] | undefined): string | undefined {
      if (typeof ref !== 'string') return undefined
      let u: URL
      try { u = new URL(ref, `http://${c.authority}${c.query === '' ? c.path : `${c.path}?${c.query}`}`) } catch { return undefined }
      if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.host.toLowerCase() !== c.authority.toLowerCase()) return undefined
      return cacheKey(u.host, u.pathname, u.search.slice(1))
    }

    function finishOutcome (c: RequestContext, res: ResponseContext, outcome: Outcome): void {
      const state = st(c)
      if (state !== undefined) state.outcome = outcome
      if (statusHeader !== '') res.headers[statusHeader] = outcome
      count(c, outcome)
    }

    function release (state: CacheState): void {
      const l = state.leader
      if (l === undefined) return
      state.leader = undefined
      l()
    }

    function invalidate (c: RequestContext, headers: HeaderMap): void {
      const keys = [cacheKey(c.authority, c.path, c.query)]
      for (const field of ['location', 'content-location']) {
        // Only the same host: another origin's entries are not this response's to invalidate.
        const k = sameHostKey(c, headers[field])
        if (k !== undefined) keys.push(k)
      }
      for (const k of keys) {
        l1.delete(k)
        void l2?.purge({ url: k })
      }
    }
  },
})
