import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto'
import { z } from 'zod'
import { duration, longDuration } from '../../src/config/units.ts'
import { HOP_BY_HOP } from '../../src/http/hop-by-hop.ts'
import { ALGORITHMS, compatible, hasPrivateMembers, isSymmetric, minSecretBytes, pemToJwk, type Algorithm } from './keys.ts'
import type { JWK } from 'jose'

/** RFC 9110 §5.6.2 `token`: header names (§5.1) and cookie names (RFC 6265 §4.1.1). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/**
 * What may sit inside a quoted-string of a WWW-Authenticate challenge without
 * escaping: RFC 6750 §3 restricts `realm`, `scope` and `error_description` to
 * printable ASCII other than `"` and `\`.
 */
export const QUOTABLE = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/

/** RFC 6749 §3.3 `scope-token`: printable ASCII except space, `"` and `\`. */
export const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/

/**
 * Request headers the plugin must not write or read a token from: hop-by-hop
 * fields never reach the upstream, framing is Outrider's own, and the
 * credentials headers have their own variants.
 */
const RESERVED_HEADERS: ReadonlySet<string> = new Set([...HOP_BY_HOP, 'host', 'content-length', 'trailer', 'cookie', 'authorization'])

const headerName = z.string()
  .regex(TOKEN, 'a header name (an RFC 9110 token)')
  .transform((s) => s.toLowerCase())
  .refine((s) => !RESERVED_HEADERS.has(s), { error: (iss) => `a header other than "${String(iss.input).toLowerCase()}" (hop-by-hop, framing and credential headers are not claim or token carriers)` })

const scope = z.string().regex(SCOPE_TOKEN, 'a scope token (RFC 6749 §3.3: printable ASCII, no spaces, " or \\)')

const algorithm = z.enum(ALGORITHMS, {
  error: (iss) => typeof iss.input === 'string' && iss.input.toLowerCase() === 'none'
    ? 'a signing algorithm, never "none": an unsigned token proves nothing (RFC 8725 §3.2)'
    : `one of ${ALGORITHMS.join(', ')}`,
})

const claimValue = z.union([z.string(), z.number(), z.boolean()])

const secretEncodings = {
  utf8: /^[\s\S]+$/,
  base64: /^[A-Za-z0-9+/]+={0,2}$/,
  base64url: /^[A-Za-z0-9_-]+={0,2}$/,
  hex: /^(?:[0-9A-Fa-f]{2})+$/,
} as const

/** The bytes of a configured secret. */
export function decodeSecret (secret: string, encoding: keyof typeof secretEncodings): Buffer {
  return Buffer.from(secret, encoding === 'base64url' ? 'base64url' : encoding)
}

/** RFC 7518 §3.3: RSA keys of 2048 bits or more; jose refuses smaller ones at verify time, so say so now. */
function weakKey (key: KeyObject): string | undefined {
  const bits = key.asymmetricKeyDetails?.modulusLength
  return bits !== undefined && bits < 2048 ? `an RSA key of at least 2048 bits (RFC 7518 §3.3); this one has ${bits}` : undefined
}

const kid = z.string().min(1).describe('Key id: a token whose header names this kid is verified with this key only.')

const localKey = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('jwk'),
    jwk: z.looseObject({
      kty: z.enum(['RSA', 'EC', 'OKP', 'oct'], { error: 'a JWK key type: RSA, EC, OKP or oct' }),
      kid: z.string().min(1).optional(),
    }).superRefine((jwk, ctx) => {
      if (jwk.kty === 'oct') {
        if (typeof jwk.k !== 'string' || !secretEncodings.base64url.test(jwk.k)) ctx.addIssue({ code: 'custom', path: ['k'], message: 'the secret as base64url (RFC 7518 §6.4.1)', input: jwk.k })
        return
      }
      if (hasPrivateMembers(jwk)) {
        ctx.addIssue({ code: 'custom', message: 'a public JWK: this one holds private key members (d, p, q …); a verifier needs only the public half', input: jwk })
        return
      }
      try {
        const problem = weakKey(createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' }))
        if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem, input: jwk })
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: `a valid ${jwk.kty} public JWK (${(err as Error).message})`, input: jwk })
      }
    }).describe('A JSON Web Key (RFC 7517): a public RSA, EC or OKP key, or an oct secret.'),
  }).describe('A JWK.'),
  z.strictObject({
    type: z.literal('pem'),
    pem: z.string().superRefine((pem, ctx) => {
      // createPublicKey would quietly derive the public half of a private key;
      // a private key in a verifier's config is a leak waiting to happen.
      if (/PRIVATE KEY-----/.test(pem)) {
        ctx.addIssue({ code: 'custom', message: 'a PEM public key or certificate, not a private key', input: '(redacted)' })
        return
      }
      try {
        const problem = weakKey(createPublicKey(pem))
        if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem, input: '(weak key)' })
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: `a PEM public key (SPKI "BEGIN PUBLIC KEY", PKCS#1 "BEGIN RSA PUBLIC KEY") or X.509 certificate (${(err as Error).message})`, input: '(unparsable)' })
      }
    }).describe('A PEM public key or X.509 certificate (RSA, EC or Ed25519).'),
    kid: kid.optional(),
  }).describe('A PEM public key.'),
  z.strictObject({
    type: z.literal('secret'),
    secret: z.string().min(1).describe('The shared HMAC secret; write it as ${ENV_VAR}, never inline.'),
    encoding: z.enum(['utf8', 'base64', 'base64url', 'hex']).default('utf8').describe('How `secret` is written.'),
    kid: kid.optional(),
  }).describe('An HMAC secret (HS256/384/512).'),
])

export type LocalKey = z.output<typeof localKey>

/** Options for fetching `jwksUrl`; defaults in JWKS_DEFAULTS. */
const jwksOptions = z.strictObject({
  cooldown: duration.default(30_000)
    .describe('Least time between two fetches caused by a token with an unknown kid (key rotation); failed fetches count too, so an IdP in trouble is not hammered.'),
  timeout: duration.default(5_000).describe('Deadline for one JWKS fetch.'),
  minRefresh: duration.refine((ms) => ms >= 1000, 'at least 1s').default(60_000)
    .describe('Shortest time a fetched set is kept before refreshing, whatever the response\'s Cache-Control says.'),
  maxRefresh: duration.refine((ms) => ms >= 1000, 'at least 1s').default(86_400_000)
    .describe('Longest time before refreshing (bounds how long a key the IdP dropped is still trusted while the IdP is reachable).'),
  defaultRefresh: duration.default(600_000)
    .describe('Refresh interval when the JWKS response has no Cache-Control max-age.'),
}).superRefine((o, ctx) => {
  if (o.minRefresh > o.maxRefresh) ctx.addIssue({ code: 'custom', path: ['maxRefresh'], message: 'at least minRefresh', input: o.maxRefresh })
})

export const JWKS_DEFAULTS = jwksOptions.parse({})

const stringOrList = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)], { error: 'a non-empty string or a non-empty list of them' })

/** A host that is this machine: the one place plain-http key fetching is safe. */
function isLoopback (hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127(?:\.\d{1,3}){3}$/.test(hostname)
}

function keyClass (k: LocalKey): 'secret' | 'public' {
  return k.type === 'secret' || (k.type === 'jwk' && k.jwk.kty === 'oct') ? 'secret' : 'public'
}

/** The JWK a local key stands for (the schema has already parsed it). */
export function localKeyJwk (k: LocalKey): JWK {
  if (k.type === 'jwk') return k.jwk as JWK
  if (k.type === 'pem') {
    const jwk = pemToJwk(k.pem)
    if (k.kid !== undefined) jwk.kid = k.kid
    return jwk
  }
  const jwk: JWK = { kty: 'oct', k: decodeSecret(k.secret, k.encoding).toString('base64url') }
  if (k.kid !== undefined) jwk.kid = k.kid
  return jwk
}

/**
 * Verifies JWTs (RFC 7519) signed with keys from a JWKS URL or configured
 * locally; per route, the claims and scopes a token must carry.
 */
export const schema = z.strictObject({
  jwksUrl: z.url({ protocol: /^https?$/, error: 'an https:// URL' }).optional()
    .describe('The IdP\'s JWK Set (e.g. https://idp.example/.well-known/jwks.json). https, or http to a loopback address only: keys fetched in clear text could be swapped by anyone on the path.'),
  jwks: jwksOptions.optional()
    .describe('How jwksUrl is fetched and cached; defaults: cooldown 30s, timeout 5s, refresh between 1m and 24h by Cache-Control, 10m without.'),
  keys: z.array(localKey).min(1).optional()
    .describe('Local verification keys, instead of jwksUrl: JWKs, PEM public keys, or HMAC secrets (not mixed with public keys).'),
  algorithms: z.array(algorithm).min(1).default(['RS256', 'ES256', 'EdDSA'])
    .describe('Accepted "alg" values. Public-key and HMAC algorithms never mix: HS* only with secret keys, and then only HS*.'),
  issuer: stringOrList.optional().describe('Required "iss": one value or a list of accepted ones. Strongly recommended (RFC 8725 §3.8).'),
  audience: stringOrList.optional().describe('Required "aud": the token must name one of these. Strongly recommended (RFC 8725 §3.9).'),
  typ: z.string().min(1).optional().describe('Required "typ" header (RFC 8725 §3.11), e.g. at+jwt for RFC 9068 access tokens.'),
  clockSkew: duration.refine((ms) => ms <= 300_000, 'at most 5m').default(30_000)
    .describe('Tolerance for exp, nbf and iat against this machine\'s clock.'),
  maxAge: longDuration.optional().describe('Refuse tokens issued (iat) longer ago than this; makes iat required.'),
  requireExp: z.boolean().default(true).describe('Refuse tokens without "exp": they would be valid forever.'),
  subjectClaim: z.string().min(1).default('sub').describe('The claim that becomes the identity subject; tokens without it are refused.'),
  requiredClaims: z.union([
    z.array(z.string().min(1)),
    z.record(z.string().min(1), z.union([claimValue, z.array(claimValue).min(1)])),
  ], { error: 'a list of claim names, or claim name → expected value (a string, number or boolean, or a list of accepted ones)' }).default([])
    .describe('Claims the token must carry (else 403): a list of names, or name → expected value (or list of accepted values). An array claim passes when it contains an expected value.'),
  requiredScopes: z.array(scope).default([])
    .describe('Scopes the token must grant, all of them (else 403 insufficient_scope). Read from "scope" (space-separated, RFC 8693 §4.2) and "scp" (a list, or a string).'),
  tokenFrom: z.discriminatedUnion('from', [
    z.strictObject({ from: z.literal('bearer') }),
    z.strictObject({ from: z.literal('header'), name: headerName.describe('The header that holds the bare token.') }),
    z.strictObject({ from: z.literal('cookie'), name: z.string().regex(TOKEN, 'a cookie name (an RFC 6265 token)').describe('The cookie that holds the token.') }),
  ]).default({ from: 'bearer' })
    .describe('Where the token is: the Authorization Bearer credential (RFC 6750 §2.1), a header, or a cookie.'),
  forwardClaims: z.record(z.string().min(1), headerName).default({})
    .describe('Top-level claim → request header sent upstream, e.g. { sub: x-user-id }. The client\'s own copies of these headers are always removed first.'),
  forwardToken: z.boolean().default(true)
    .describe('Send the token upstream. false removes it (the Authorization header, the token header or the cookie).'),
  realm: z.string().regex(QUOTABLE, 'a realm of printable ASCII without " or \\').default('outrider')
    .describe('The realm of the WWW-Authenticate challenge (RFC 9110 §11.5).'),
}).superRefine((c, ctx) => {
  if (c.jwksUrl === undefined && c.keys === undefined) {
    ctx.addIssue({ code: 'custom', path: [], message: 'a key source: jwksUrl (an IdP\'s JWK Set) or keys (local keys)', input: c })
    return
  }
  if (c.jwksUrl !== undefined && c.keys !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['keys'], message: 'either jwksUrl or keys, not both', input: c.keys })
    return
  }
  if (c.jwksUrl !== undefined) {
    // Zod runs this refinement even when a field already failed; an invalid
    // URL has its own issue.
    const url = URL.parse(c.jwksUrl)
    if (url !== null && url.protocol === 'http:' && !isLoopback(url.hostname)) {
      ctx.addIssue({ code: 'custom', path: ['jwksUrl'], message: 'an https:// URL (http only to a loopback address): keys fetched in clear text could be replaced on the way', input: c.jwksUrl })
    }
  } else if (c.jwks !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['jwks'], message: 'jwks options only with jwksUrl', input: c.jwks })
  }

  // One kind of key per route. RFC 8725 §2.1/§3.1: a verifier that accepts
  // HS256 where it holds a public key can be fed a token MACed with that
  // (public!) key; refusing the mix here is belt to jose's braces (it checks
  // the key type against the algorithm on every verify).
  const keys = c.keys ?? []
  const kind = keys.length > 0 ? keyClass(keys[0] as LocalKey) : 'public'
  let consistent = true
  keys.forEach((k, i) => {
    if (keyClass(k) !== kind) {
      consistent = false
      ctx.addIssue({ code: 'custom', path: ['keys', i], message: `a ${kind === 'secret' ? 'secret' : 'public'} key like keys[0]: HMAC secrets and public keys cannot be mixed in one route`, input: k.type })
    }
  })
  c.algorithms.forEach((alg, i) => {
    if (isSymmetric(alg) && kind === 'public') {
      ctx.addIssue({ code: 'custom', path: ['algorithms', i], message: `a public-key algorithm: ${alg} is HMAC and ${c.jwksUrl !== undefined ? 'jwksUrl' : 'keys'} holds public keys (RFC 8725 §2.1 algorithm confusion)`, input: alg })
    } else if (!isSymmetric(alg) && kind === 'secret') {
      ctx.addIssue({ code: 'custom', path: ['algorithms', i], message: `HS256, HS384 or HS512: the keys are HMAC secrets (${alg} needs a public key)`, input: alg })
    }
  })
  const seen = new Set<string>()
  c.algorithms.forEach((alg, i) => {
    if (seen.has(alg)) ctx.addIssue({ code: 'custom', path: ['algorithms', i], message: `each algorithm once ("${alg}" is repeated)`, input: alg })
    seen.add(alg)
  })
  if (!consistent) return

  // Every local key must be usable by some allowed algorithm: a key that can
  // verify nothing is a config mistake that would only show as 401s.
  const hs = c.algorithms.filter(isSymmetric)
  const needBytes = Math.max(32, ...hs.map(minSecretBytes))
  keys.forEach((k, i) => {
    if (k.type === 'secret') {
      if (!secretEncodings[k.encoding].test(k.secret)) {
        ctx.addIssue({ code: 'custom', path: ['keys', i, 'secret'], message: `a secret written in ${k.encoding}`, input: '(redacted)' })
        return
      }
      const bytes = decodeSecret(k.secret, k.encoding).length
      if (bytes < needBytes) {
        ctx.addIssue({ code: 'custom', path: ['keys', i, 'secret'], message: `a secret of at least ${needBytes} bytes (RFC 7518 §3.2: no shorter than the hash output of ${hs.join(', ')}); this one has ${bytes}`, input: '(redacted)' })
      }
      return
    }
    if (k.type === 'jwk' && k.jwk.kty === 'oct') {
      const bytes = Buffer.from(String(k.jwk.k), 'base64url').length
      if (bytes < needBytes) ctx.addIssue({ code: 'custom', path: ['keys', i, 'jwk', 'k'], message: `a secret of at least ${needBytes} bytes (RFC 7518 §3.2); this one has ${bytes}`, input: '(redacted)' })
    }
    let jwk: JWK
    try {
      jwk = localKeyJwk(k)
    } catch {
      return // unparsable: reported by the key's own schema
    }
    if (!c.algorithms.some((alg) => compatible(jwk, alg as Algorithm))) {
      ctx.addIssue({ code: 'custom', path: ['keys', i], message: `a key usable with one of ${c.algorithms.join(', ')} (this is ${jwk.kty}${jwk.crv === undefined ? '' : ` ${jwk.crv}`}${jwk.alg === undefined ? '' : ` for ${jwk.alg}`})`, input: k.type })
    }
  })

  // The token header is read after the forwarded-claim headers are stripped:
  // one name for both would strip every token before it is read.
  const seenHeaders = new Map<string, string>()
  for (const [claim, header] of Object.entries(c.forwardClaims)) {
    if (c.tokenFrom.from === 'header' && c.tokenFrom.name === header) {
      ctx.addIssue({ code: 'custom', path: ['forwardClaims', claim], message: `a header other than "${header}", which carries the token`, input: header })
    }
    const other = seenHeaders.get(header)
    if (other !== undefined) ctx.addIssue({ code: 'custom', path: ['forwardClaims', claim], message: `a header of its own ("${header}" already carries "${other}")`, input: header })
    seenHeaders.set(header, claim)
  }
})

export type JwtAuthConfig = z.output<typeof schema>
