import { decodeProtectedHeader, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions, type CryptoKey } from 'jose'
import { definePlugin, type HeaderMap, type RequestContext } from '../../src/plugin.ts'
import { AuthUnavailableError, BadRequestError, ForbiddenError, UnauthorizedError } from '../../src/errors.ts'
import { schema, localKeyJwk, JWKS_DEFAULTS, type JwtAuthConfig } from './schema.ts'
import { buildKeyIndex, type Algorithm } from './keys.ts'
import { KeysUnavailableError, acquireKeySet, type HeldKeySet, type KeyLookup } from './remote-jwks.ts'
import { fromBearer, fromCookie, fromHeader, removeCookie, MISSING, INVALID_REQUEST, type Extracted } from './token.ts'
import { claimHeaderValue, compileRequirements, meetsRequirements, scopesOf } from './claims.ts'

/**
 * Why a token was refused, as the `error_description` of the challenge. Fixed
 * strings (RFC 6750 §3 allows printable ASCII without `"` and `\`), so every
 * challenge is rendered once in create(); none repeats anything the client sent.
 */
const DESCRIPTIONS = {
  malformed: 'the token is malformed',
  algorithm: 'the token algorithm is not accepted',
  unknownKey: 'no known key matches the token',
  signature: 'the token signature is invalid',
  expired: 'the token has expired',
  notYetValid: 'the token is not valid yet',
  tooOld: 'the token is too old',
  issuedInFuture: 'the token was issued in the future',
  issuer: 'the token issuer is not accepted',
  audience: 'the token audience is not accepted',
  type: 'the token type is not accepted',
  noExpiry: 'the token has no expiry',
  noSubject: 'the token has no subject',
  claims: 'the token claims are invalid',
} as const

type Reason = keyof typeof DESCRIPTIONS

/**
 * The `auth` annotation of a refusal (access log, trace): whether the token
 * was bad or merely old. `authReason` carries the Reason.
 */
function outcomeOf (reason: Reason): 'invalid' | 'expired' {
  return reason === 'expired' || reason === 'tooOld' ? 'expired' : 'invalid'
}

/** The key source found no key for the token's alg and kid. */
class NoMatchingKeyError extends Error {
  override name = 'NoMatchingKeyError'
}

/** Maps what jose (or the key source) threw to a reason; anything else is a bug and is rethrown. */
function reasonFor (err: unknown): Reason {
  if (err instanceof NoMatchingKeyError) return 'unknownKey'
  if (err instanceof errors.JWTExpired) return err.claim === 'iat' ? 'tooOld' : 'expired'
  if (err instanceof errors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'nbf': return 'notYetValid'
      case 'iss': return 'issuer'
      case 'aud': return 'audience'
      case 'typ': return 'type'
      case 'iat': return err.reason === 'check_failed' ? 'issuedInFuture' : 'claims'
      case 'exp': return err.reason === 'missing' ? 'noExpiry' : 'claims'
      default: return 'claims'
    }
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return 'algorithm'
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'signature'
  // JWSInvalid, JWTInvalid, JOSENotSupported (an unknown `crit` extension,
  // RFC 7515 §4.1.11) …: the token cannot be read as a signed JWT.
  if (err instanceof errors.JOSEError) return 'malformed'
  throw err
}

/** A quoted-string parameter; values were checked against RFC 6750 §3's charset by the schema. */
function param (name: string, value: string): string {
  return `, ${name}="${value}"`
}

function firstKey (keys: readonly CryptoKey[]): CryptoKey {
  const key = keys[0]
  if (key === undefined) throw new NoMatchingKeyError()
  return key
}

/**
 * Authenticates requests with a JWT (RFC 7519) verified by jose, and makes
 * the result available: `ctx.identity` for later plugins, chosen claims as
 * request headers for the upstream.
 *
 * - Keys come from a JWKS URL (see RemoteKeySet: cached by Cache-Control,
 *   refetched on an unknown kid at most once per cooldown, kept through an
 *   IdP outage and reloads) or from local JWKs, PEM public keys or HMAC
 *   secrets. Every key is imported once per algorithm it fits, before it is
 *   used; a request only looks one up.
 * - `algorithms` is an allow-list checked before any key is touched; `none`
 *   cannot be configured and HMAC never mixes with public keys (RFC 8725 §2.1).
 * - Missing credentials get `401` with a bare `Bearer realm="…"` challenge;
 *   a bad token `401 error="invalid_token"` with a description; a token
 *   without the route's scopes `403 error="insufficient_scope", scope="…"`
 *   (RFC 6750 §3); a repeated or unreadable credential `400 invalid_request`;
 *   a token that cannot be checked because no JWKS key could ever be fetched
 *   `503` with `Retry-After` (AuthUnavailableError).
 * - The client's own copies of the forwarded-claim headers are removed before
 *   anything else, so an upstream can trust them whatever the outcome.
 * - Every decision is annotated for the access log and the trace: `auth` (ok,
 *   missing, invalid, expired, unavailable, forbidden) and, on a refusal,
 *   `authReason` (a key of DESCRIPTIONS, `keysUnavailable`, `invalidRequest`,
 *   `scope`, `claims`).
 *
 * @example
 * // routes[0].plugins:
 * // - name: jwt-auth
 * //   config:
 * //     jwksUrl: https://idp.example/.well-known/jwks.json
 * //     issuer: https://idp.example/
 * //     audience: orders-api
 * //     requiredScopes: [orders:read]
 * //     forwardClaims: { sub: x-user-id, email: x-user-email }
 */
export default definePlugin({
  name: 'jwt-auth',
  schema,
  async create (config: JwtAuthConfig, ctx) {
    const algorithms = config.algorithms as Algorithm[]
    let source: KeyLookup
    let remote: HeldKeySet | undefined
    if (config.jwksUrl !== undefined) {
      const o = config.jwks ?? JWKS_DEFAULTS
      remote = acquireKeySet(config.jwksUrl, {
        algorithms,
        cooldownMs: o.cooldown,
        timeoutMs: o.timeout,
        minRefreshMs: o.minRefresh,
        maxRefreshMs: o.maxRefresh,
        defaultRefreshMs: o.defaultRefresh,
        log: ctx.log,
      })
      source = remote.keys
    } else {
      const index = await buildKeyIndex((config.keys ?? []).map(localKeyJwk), algorithms, (jwk, reason) => {
        // The schema checked every key; reaching this is a bug, not a config error.
        throw new Error(`local key ${jwk.kid ?? jwk.kty} ${reason}`)
      })
      source = index
    }

    const verifyOptions: JWTVerifyOptions = Object.freeze({
      algorithms,
      issuer: config.issuer,
      audience: config.audience,
      typ: config.typ,
      clockTolerance: config.clockSkew / 1000,
      maxTokenAge: config.maxAge === undefined ? undefined : config.maxAge / 1000,
      requiredClaims: config.requireExp ? ['exp'] : [],
    })
    const skewSeconds = config.clockSkew / 1000

    const getKey: JWTVerifyGetKey = (header) => {
      const keys = source.resolve(header.alg as string, header.kid)
      return 'then' in keys ? keys.then(firstKey) : firstKey(keys)
    }

    /**
     * Verifies signature and claims. The first candidate key is tried by
     * jose; only a token without a kid, met by several keys, can need more.
     */
    async function verify (token: string): Promise<JWTPayload> {
      try {
        return (await jwtVerify(token, getKey, verifyOptions)).payload
      } catch (err) {
        if (!(err instanceof errors.JWSSignatureVerificationFailed)) throw err
        const header = decodeProtectedHeader(token)
        const keys = await source.resolve(header.alg as string, header.kid)
        for (let i = 1; i < keys.length; i++) {
          try {
            return (await jwtVerify(token, keys[i] as CryptoKey, verifyOptions)).payload
          } catch (again) {
            if (!(again instanceof errors.JWSSignatureVerificationFailed)) throw again
          }
        }
        throw err
      }
    }

    // Every response the plugin can make, rendered now.
    const realm = `Bearer realm="${config.realm}"`
    const missing = Object.freeze({ 'www-authenticate': realm })
    const invalidRequest = Object.freeze({ 'www-authenticate': realm + param('error', 'invalid_request') + param('error_description', 'the request carries the token more than once or in a malformed way') })
    const invalid = new Map<Reason, Readonly<Record<string, string>>>()
    for (const [reason, text] of Object.entries(DESCRIPTIONS) as Array<[Reason, string]>) {
      invalid.set(reason, Object.freeze({ 'www-authenticate': realm + param('error', 'invalid_token') + param('error_description', text) }))
    }
    const requiredScopes = config.requiredScopes
    const scopeText = requiredScopes.join(' ')
    const insufficientScope = Object.freeze({
      'www-authenticate': realm + param('error', 'insufficient_scope') + param('error_description', 'the token lacks a required scope') + param('scope', scopeText),
    })
    const requirements = compileRequirements(config.requiredClaims)
    const subjectClaim = config.subjectClaim
    const forward = Object.entries(config.forwardClaims)
    const forwardHeaders = Object.values(config.forwardClaims)
    const tokenFrom = config.tokenFrom
    const forwardToken = config.forwardToken

    function extract (h: HeaderMap): Extracted {
      switch (tokenFrom.from) {
        case 'bearer': return fromBearer(h.authorization)
        case 'header': return fromHeader(h[tokenFrom.name])
        case 'cookie': return fromCookie(h.cookie, tokenFrom.name)
      }
    }

    function stripToken (h: HeaderMap): void {
      switch (tokenFrom.from) {
        case 'bearer': delete h.authorization; break
        case 'header': delete h[tokenFrom.name]; break
        case 'cookie': removeCookie(h, tokenFrom.name); break
      }
    }

    /** The 401 for `reason`, recorded as the request's auth decision. */
    function reject (rc: RequestContext, reason: Reason): UnauthorizedError {
      annotate(rc, outcomeOf(reason), reason)
      return new UnauthorizedError(DESCRIPTIONS[reason], { headers: invalid.get(reason) as Record<string, string> })
    }

    /** Called optionally: unit tests drive hooks with partial contexts. */
    function annotate (rc: RequestContext, outcome: string, reason: string | undefined): void {
      rc.annotate('auth', outcome)
      if (reason !== undefined) rc.annotate('authReason', reason)
    }

    return {
      async onRequest (rc: RequestContext): Promise<void> {
        const h = rc.upstreamHeaders
        // First, whatever happens next: the upstream trusts these headers,
        // so a client must never get its own values through.
        for (let i = 0; i < forwardHeaders.length; i++) delete h[forwardHeaders[i] as string]

        const token = extract(h)
        if (token === MISSING) {
          annotate(rc, 'missing', undefined)
          throw new UnauthorizedError('a bearer token is required', { headers: missing })
        }
        if (token === INVALID_REQUEST) {
          annotate(rc, 'invalid', 'invalidRequest')
          throw new BadRequestError('the token is sent more than once or is malformed', { headers: invalidRequest })
        }

        let claims: JWTPayload
        try {
          claims = await verify(token)
        } catch (err) {
          if (err instanceof KeysUnavailableError) {
            annotate(rc, 'unavailable', 'keysUnavailable')
            throw new AuthUnavailableError('the signing keys are unavailable', { cause: err, headers: { 'retry-after': String(err.retryAfter) } })
          }
          throw reject(rc, reasonFor(err))
        }
        // jose checks iat only against maxAge; a token from the future is
        // refused whether or not maxAge is set (RFC 7519 §4.1.6).
        if (typeof claims.iat === 'number' && claims.iat > Date.now() / 1000 + skewSeconds) throw reject(rc, 'issuedInFuture')
        const subject = Object.hasOwn(claims, subjectClaim) ? claims[subjectClaim] : undefined
        if (typeof subject !== 'string' || subject === '') throw reject(rc, 'noSubject')

        const scopes = scopesOf(claims)
        for (let i = 0; i < requiredScopes.length; i++) {
          if (!scopes.includes(requiredScopes[i] as string)) {
            annotate(rc, 'forbidden', 'scope')
            throw new ForbiddenError(`the token lacks a required scope (${scopeText})`, { headers: insufficientScope })
          }
        }
        if (!meetsRequirements(claims, requirements)) {
          annotate(rc, 'forbidden', 'claims')
          throw new ForbiddenError('the token lacks a required claim')
        }

        if (!forwardToken) stripToken(h)
        for (let i = 0; i < forward.length; i++) {
          const [claim, header] = forward[i] as [string, string]
          if (!Object.hasOwn(claims, claim)) continue
          const value = claimHeaderValue(claims[claim])
          if (value !== undefined) h[header] = value
          else ctx.log.debug('claim not forwarded: no unambiguous header value', { claim, header })
        }
        rc.identity = { subject, claims, scopes }
        annotate(rc, 'ok', undefined)
      },

      close () {
        remote?.release()
      },
    }
  },
})
