import { request } from 'undici'
import type { CryptoKey, JWK } from 'jose'
import type { Logger } from '../../src/log.ts'
import { ALGORITHMS, buildKeyIndex, hasPrivateMembers, isSymmetric, type Algorithm, type KeyIndex } from './keys.ts'

export interface RemoteKeySetOptions {
  /** A fetch that yields no key for any of these failed (an IdP misconfiguration keeps the keys we have). */
  readonly algorithms: readonly Algorithm[]
  /** Least time between two fetches made because of an unknown kid (or no keys yet). */
  readonly cooldownMs: number
  readonly timeoutMs: number
  /** Bounds on how long a fetched set stays fresh, whatever Cache-Control says. */
  readonly minRefreshMs: number
  readonly maxRefreshMs: number
  /** Freshness when the response says nothing (no max-age). */
  readonly defaultRefreshMs: number
  readonly log: Logger
}

/** A JWK Set is a few keys; anything bigger is a misconfigured (or hostile) endpoint. */
const MAX_BYTES = 1024 * 1024

/**
 * Keys are imported for every public-key algorithm: the set is shared by
 * holders with different allow-lists, and each applies its own when it
 * verifies (jose checks the token's alg against it before asking for a key).
 */
const PUBLIC_KEY_ALGORITHMS: readonly Algorithm[] = ALGORITHMS.filter((a) => !isSymmetric(a))

const NONE: readonly CryptoKey[] = Object.freeze([])

/** No key was ever fetched: the token cannot be judged, only turned away until keys can be had. */
export class KeysUnavailableError extends Error {
  override name = 'KeysUnavailableError'
  /** Seconds until the next fetch may bring keys (for Retry-After). */
  readonly retryAfter: number

  constructor (message: string, retryAfter: number) {
    super(message)
    this.retryAfter = retryAfter
  }
}

type HeaderValue = string | string[] | undefined

/**
 * How long a JWKS response stays fresh, in ms: `max-age` minus `Age` (RFC 9111
 * §5.2.2.1, §4.2.3), the minimum for `no-store`/`no-cache` (§5.2.2.4–5), the
 * default without either; always within [min, max]. The floor keeps an IdP
 * that says `max-age=0` from turning every proxy into a poller; the ceiling
 * bounds how long a key the IdP dropped (revoked) is still trusted.
 */
export function freshnessMs (cacheControl: HeaderValue, age: HeaderValue, o: Pick<RemoteKeySetOptions, 'minRefreshMs' | 'maxRefreshMs' | 'defaultRefreshMs'>): number {
  let ms = o.defaultRefreshMs
  if (cacheControl !== undefined) {
    const cc = Array.isArray(cacheControl) ? cacheControl.join(',') : cacheControl
    const maxAge = /(?:^|,)\s*max-age\s*=\s*"?(\d+)"?\s*(?:,|$)/i.exec(cc)
    if (/(?:^|,)\s*no-(?:store|cache)\s*(?:[,=]|$)/i.test(cc)) ms = 0
    else if (maxAge !== null) {
      ms = Number(maxAge[1]) * 1000
      const seconds = Number(Array.isArray(age) ? age[0] : age)
      if (Number.isFinite(seconds) && seconds > 0) ms -= seconds * 1000
    }
  }
  return Math.min(Math.max(ms, o.minRefreshMs), o.maxRefreshMs)
}

async function readLimited (body: AsyncIterable<Buffer> & { destroy (): unknown }, limit: number): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.length
    if (size > limit) {
      body.destroy()
      throw new Error(`the JWKS response exceeds ${limit} bytes`)
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/**
 * A JWK Set fetched from an IdP and kept, written for the failure modes that
 * jose's `createRemoteJWKSet` leaves to its caller:
 *
 * - **Fetched off the request path.** The first fetch starts in create(); the
 *   set is refreshed by a timer when it goes stale, so requests normally never
 *   wait for the IdP. Keys are imported once per fetch (`KeyIndex`).
 * - **Freshness from the IdP.** `Cache-Control: max-age` (less `Age`) decides
 *   when to refresh, clamped to [minRefresh, maxRefresh]; a refresh sends
 *   `If-None-Match`, and a 304 keeps the imported keys.
 * - **Rotation.** A token whose `kid` is unknown triggers a fetch (OpenID
 *   Connect Core §10.1.1: a signer may rotate and publish a new key at any
 *   time), at most one per `cooldown` however many such tokens arrive (anyone
 *   can mint a kid), and concurrent requests share the one fetch in flight.
 *   The cooldown counts from the last attempt, failed ones included, so an
 *   IdP in trouble is not hammered.
 * - **Outage.** A failed refresh keeps the keys we have (stale-if-error in the
 *   spirit of RFC 5861 §4) and retries with exponential back-off from
 *   `cooldown`, capped at `defaultRefresh`. A JWKS that parses but holds no
 *   usable key is treated as a failure too: an IdP misconfiguration must not
 *   lock every client out.
 *
 * Public keys only: `oct` (secret) keys and keys with private members are
 * skipped, so a JWKS can never turn HMAC on (the RFC 8725 §2.1 confusion).
 */
export class RemoteKeySet {
  readonly #url: string
  #o: RemoteKeySetOptions
  readonly #abort = new AbortController()
  #index: KeyIndex | undefined
  #etag: string | undefined
  #pending: Promise<void> | undefined
  #lastAttempt = -Infinity
  /** When the refresh timer fires next (performance.now() time). */
  #nextAttempt = Infinity
  #failures = 0
  #timer: NodeJS.Timeout | undefined
  #closed = false

  constructor (url: string, options: RemoteKeySetOptions) {
    this.#url = url
    this.#o = options
  }

  /** Starts the first fetch without waiting for it. */
  start (): void {
    void this.#refresh()
  }

  /** Options for the fetches from now on (the keys stay; the refresh already scheduled stays too). */
  configure (options: RemoteKeySetOptions): void {
    this.#o = options
  }

  /** Whether a key set was fetched at least once. */
  get ready (): boolean { return this.#index !== undefined }

  /**
   * The keys that may have signed a token with this `alg` and `kid`. Known
   * kids answer synchronously; an unknown one (or no keys yet) may wait for
   * one fetch. An empty list means no key matches; KeysUnavailableError that
   * there are no keys at all.
   */
  resolve (alg: string, kid: unknown): readonly CryptoKey[] | Promise<readonly CryptoKey[]> {
    const keys = this.#index?.resolve(alg, kid)
    if (keys !== undefined && keys.length > 0) return keys
    return this.#refetchFor(alg, kid)
  }

  async #refetchFor (alg: string, kid: unknown): Promise<readonly CryptoKey[]> {
    const pending = this.#pending ?? (this.#coolingDown() ? undefined : this.#refresh())
    if (pending !== undefined) await pending
    const index = this.#index
    if (index === undefined) throw new KeysUnavailableError(`no signing keys could be fetched from ${this.#url}`, this.#retryAfter())
    return index.resolve(alg, kid)
  }

  /** Whole seconds (at least 1) until the next fetch: the refresh timer, or the end of the cooldown for a request-driven one. */
  #retryAfter (): number {
    const next = Math.min(this.#nextAttempt, this.#lastAttempt + this.#o.cooldownMs)
    return Math.max(1, Math.ceil((next - performance.now()) / 1000))
  }

  #coolingDown (): boolean {
    return performance.now() - this.#lastAttempt < this.#o.cooldownMs
  }

  /** One fetch; never rejects (failures are logged and retried). */
  #refresh (): Promise<void> {
    this.#lastAttempt = performance.now()
    clearTimeout(this.#timer)
    const p: Promise<void> = this.#fetch().then((freshMs) => {
      this.#failures = 0
      this.#schedule(freshMs)
    }, (err: unknown) => {
      this.#failures++
      if (this.#closed) return
      // Back off, but never past the usual refresh interval: once the IdP is
      // back, keys should be current again within that time.
      const base = Math.max(this.#o.cooldownMs, 1000)
      const retryMs = Math.min(base * 2 ** (this.#failures - 1), Math.max(this.#o.defaultRefreshMs, base))
      this.#o.log.warn('JWKS fetch failed; keeping the keys we have', { url: this.#url, err, failures: this.#failures, retryMs, haveKeys: this.#index !== undefined })
      this.#schedule(retryMs)
    }).finally(() => {
      if (this.#pending === p) this.#pending = undefined
    })
    this.#pending = p
    return p
  }

  #schedule (ms: number): void {
    if (this.#closed) return
    clearTimeout(this.#timer)
    this.#nextAttempt = performance.now() + ms
    this.#timer = setTimeout(() => { void this.#refresh() }, ms)
    // A refresh timer alone must not keep the process alive.
    this.#timer.unref()
  }

  /** Fetches, parses and imports the set; returns how long it stays fresh. */
  async #fetch (): Promise<number> {
    const headers: Record<string, string> = { accept: 'application/jwk-set+json, application/json' }
    if (this.#etag !== undefined && this.#index !== undefined) headers['if-none-match'] = this.#etag
    // No redirects (undici's request never follows them): the URL in the
    // config is the one trusted for keys.
    const res = await request(this.#url, {
      method: 'GET',
      headers,
      signal: AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.#o.timeoutMs)]),
    })
    const fresh = freshnessMs(res.headers['cache-control'], res.headers.age, this.#o)
    if (res.statusCode === 304 && this.#index !== undefined) {
      await res.body.dump()
      return fresh
    }
    if (res.statusCode !== 200) {
      await res.body.dump()
      throw new Error(`the JWKS endpoint answered ${res.statusCode}`)
    }
    const doc = JSON.parse(await readLimited(res.body, MAX_BYTES)) as unknown
    const keys = (doc as { keys?: unknown } | null)?.keys
    if (!Array.isArray(keys)) throw new Error('a JWK Set: a JSON object with a "keys" array (RFC 7517 §5)')
    const usable: JWK[] = []
    for (const k of keys) {
      if (typeof k !== 'object' || k === null) continue
      const jwk = k as JWK
      if (jwk.kty === 'oct' || hasPrivateMembers(jwk as Record<string, unknown>)) {
        this.#o.log.warn('JWKS key skipped: only public keys are used from a JWKS', { url: this.#url, kid: jwk.kid, kty: jwk.kty })
        continue
      }
      usable.push(jwk)
    }
    const index = await buildKeyIndex(usable, PUBLIC_KEY_ALGORITHMS, (jwk, reason) => {
      this.#o.log.debug('JWKS key skipped', { url: this.#url, kid: jwk.kid, kty: jwk.kty, reason })
    })
    const wanted = this.#o.algorithms
    if (!wanted.some((alg) => index.resolve(alg, undefined).length > 0)) throw new Error(`the JWKS holds no key usable with ${wanted.join(', ')}`)
    if (this.#closed) return fresh
    this.#index = index
    const etag = res.headers.etag
    this.#etag = typeof etag === 'string' ? etag : undefined
    this.#o.log.debug('JWKS fetched', { url: this.#url, keys: usable.length, freshMs: fresh })
    return fresh
  }

  close (): void {
    this.#closed = true
    clearTimeout(this.#timer)
    this.#abort.abort()
  }
}

/** Verification keys for a token header, as one holder may use them. */
export interface KeyLookup {
  resolve (alg: string, kid: unknown): readonly CryptoKey[] | Promise<readonly CryptoKey[]>
}

/** A process-wide key set held by one route's plugin; `release` once, when the plugin closes. */
export interface HeldKeySet {
  /** The shared keys, for this holder's algorithms only. */
  readonly keys: KeyLookup
  release (): void
}

/**
 * Key sets by URL, reference-counted. Every route that names the same JWKS
 * (and the next snapshot, built before the old one closes) gets the same set:
 * one fetch per IdP and process, and a reload inherits the keys whatever else
 * it changed (algorithms, timeouts), so a config push during an IdP outage
 * does not lock every client out. Options are per holder where they can be:
 * each holder's algorithms filter its lookups. The fetch itself has one set
 * of timings: those of the holder that came last (the newest config), and a
 * fetch counts as good when it brings a key for any holder's algorithm. The
 * last release stops the refresh timer.
 */
const shared = new Map<string, { keys: RemoteKeySet, holders: RemoteKeySetOptions[] }>()

export function acquireKeySet (url: string, options: RemoteKeySetOptions): HeldKeySet {
  let entry = shared.get(url)
  const created = entry === undefined
  entry ??= { keys: new RemoteKeySet(url, options), holders: [] }
  shared.set(url, entry)
  entry.holders.push(options)
  entry.keys.configure(fetchOptions(entry.holders))
  if (created) entry.keys.start()
  const held = entry
  const allowed: ReadonlySet<string> = new Set(options.algorithms)
  let released = false
  return {
    keys: { resolve: (alg, kid) => allowed.has(alg) ? held.keys.resolve(alg, kid) : NONE },
    release: () => {
      if (released) return
      released = true
      held.holders.splice(held.holders.indexOf(options), 1)
      if (held.holders.length > 0) { held.keys.configure(fetchOptions(held.holders)); return }
      held.keys.close()
      if (shared.get(url) === held) shared.delete(url)
    },
  }
}

/** The newest holder's timings and log, with every holder's algorithms. */
function fetchOptions (holders: readonly RemoteKeySetOptions[]): RemoteKeySetOptions {
  const latest = holders[holders.length - 1] as RemoteKeySetOptions
  return { ...latest, algorithms: [...new Set(holders.flatMap((h) => h.algorithms))] }
}
