import { createPublicKey, webcrypto } from 'node:crypto'
import type { CryptoKey, JWK } from 'jose'

/**
 * The JWS algorithms (RFC 7518 §3.1, RFC 8037 §3.1, RFC 9864 for `Ed25519`)
 * Outrider verifies. `none` is deliberately absent: an unsigned token proves
 * nothing (RFC 8725 §3.2).
 */
export const ALGORITHMS = [
  'HS256', 'HS384', 'HS512',
  'RS256', 'RS384', 'RS512',
  'PS256', 'PS384', 'PS512',
  'ES256', 'ES384', 'ES512',
  'EdDSA', 'Ed25519',
] as const

export type Algorithm = typeof ALGORITHMS[number]

/** What a key must be to verify `alg` (RFC 7518 §3.2–3.5, RFC 8037 §3.1). */
const REQUIREMENTS: Readonly<Record<Algorithm, { kty: string, crv?: string, hash?: string }>> = {
  HS256: { kty: 'oct', hash: 'SHA-256' },
  HS384: { kty: 'oct', hash: 'SHA-384' },
  HS512: { kty: 'oct', hash: 'SHA-512' },
  RS256: { kty: 'RSA' },
  RS384: { kty: 'RSA' },
  RS512: { kty: 'RSA' },
  PS256: { kty: 'RSA' },
  PS384: { kty: 'RSA' },
  PS512: { kty: 'RSA' },
  ES256: { kty: 'EC', crv: 'P-256' },
  ES384: { kty: 'EC', crv: 'P-384' },
  ES512: { kty: 'EC', crv: 'P-521' },
  EdDSA: { kty: 'OKP', crv: 'Ed25519' },
  Ed25519: { kty: 'OKP', crv: 'Ed25519' },
}

/** HMAC algorithms: the one family whose key is a shared secret. */
export function isSymmetric (alg: Algorithm): boolean {
  return REQUIREMENTS[alg]?.kty === 'oct'
}

/**
 * RFC 7518 §3.2: an HMAC key MUST be at least as long as the hash output
 * (32 bytes for HS256, 48 for HS384, 64 for HS512).
 */
export function minSecretBytes (alg: Algorithm): number {
  return alg === 'HS512' ? 64 : alg === 'HS384' ? 48 : 32
}

/** JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2; RFC 8037 §2). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'priv'] as const

export function hasPrivateMembers (jwk: Record<string, unknown>): boolean {
  return PRIVATE_MEMBERS.some((m) => jwk[m] !== undefined)
}

/**
 * Whether `jwk` may verify `alg`: the key type and curve match, and the key's
 * own `alg`, `use` and `key_ops` (RFC 7517 §4.2–4.4), when present, allow it.
 */
export function compatible (jwk: JWK, alg: Algorithm): boolean {
  const need = REQUIREMENTS[alg] as { kty: string, crv?: string } | undefined
  if (need === undefined || jwk.kty !== need.kty) return false
  if (need.crv !== undefined && jwk.crv !== need.crv) return false
  if (jwk.alg !== undefined && jwk.alg !== alg) return false
  if (jwk.use !== undefined && jwk.use !== 'sig') return false
  if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) return false
  return true
}

/** A PEM public key or certificate as a JWK (the private half of a PEM is refused by the schema). */
export function pemToJwk (pem: string): JWK {
  return createPublicKey(pem).export({ format: 'jwk' }) as JWK
}

/** A shared secret as an `oct` JWK (RFC 7518 §6.4). */
export function secretToJwk (secret: Buffer, kid: string | undefined): JWK {
  const jwk: JWK = { kty: 'oct', k: secret.toString('base64url') }
  if (kid !== undefined) jwk.kid = kid
  return jwk
}

/** The public members only: what WebCrypto needs, nothing a JWKS author added. */
function publicPart (jwk: JWK): JWK {
  const { kty, crv, n, e, x, y } = jwk
  const out: JWK = { kty }
  if (crv !== undefined) out.crv = crv
  if (n !== undefined) out.n = n
  if (e !== undefined) out.e = e
  if (x !== undefined) out.x = x
  if (y !== undefined) out.y = y
  return out
}

/**
 * Imports `jwk` for `alg` as a verify-only CryptoKey. Asymmetric keys go
 * through jose's importer; HMAC secrets are imported here because jose turns
 * an `oct` JWK into raw bytes, which it would import again on every verify.
 */
export async function importForAlgorithm (jwk: JWK, alg: Algorithm): Promise<CryptoKey> {
  const need = REQUIREMENTS[alg]
  if (need.kty === 'oct') {
    const raw = Buffer.from(jwk.k ?? '', 'base64url')
    return webcrypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: need.hash as string }, false, ['verify']) as Promise<CryptoKey>
  }
  // jose is loaded here, not at the top: config validation reads this
  // module, and a proxy without jwt-auth should not carry jose.
  const { importJWK } = await import('jose')
  const key = await importJWK(publicPart(jwk), alg)
  if (key instanceof Uint8Array) throw new TypeError(`a ${alg} key did not import as a CryptoKey`)
  // jose refuses RSA keys under 2048 bits at verify time (RFC 7518 §3.3); refusing
  // them here keeps a weak key out of the index, so it is never even tried.
  const modulus = (key.algorithm as { modulusLength?: number }).modulusLength
  if (modulus !== undefined && modulus < 2048) throw new TypeError(`an RSA key of ${modulus} bits (2048 at least, RFC 7518 §3.3)`)
  return key
}

interface AlgorithmKeys {
  /** Keys with a `kid`, by kid. */
  readonly byKid: Map<string, CryptoKey[]>
  /** Keys without a `kid`: candidates for any token (RFC 7515 §4.1.4 makes kid optional). */
  readonly anyKid: CryptoKey[]
  /** Every key for this algorithm, in set order. */
  readonly all: CryptoKey[]
}

const NONE: readonly CryptoKey[] = Object.freeze([])

/**
 * Verification keys imported once, per algorithm: looking one up per request
 * is two Map reads, never an import. Built for a local key list once per
 * snapshot, and for a remote JWKS once per fetch.
 */
export class KeyIndex {
  readonly #byAlg = new Map<string, AlgorithmKeys>()
  /** How many (key, algorithm) pairs were imported. */
  size = 0

  /** Adds `key` as `jwk.kid`'s key for `alg`. */
  add (alg: Algorithm, kid: string | undefined, key: CryptoKey): void {
    let entry = this.#byAlg.get(alg)
    if (entry === undefined) {
      entry = { byKid: new Map(), anyKid: [], all: [] }
      this.#byAlg.set(alg, entry)
    }
    if (kid === undefined) entry.anyKid.push(key)
    else {
      const list = entry.byKid.get(kid)
      if (list === undefined) entry.byKid.set(kid, [key])
      else list.push(key)
    }
    entry.all.push(key)
    this.size++
  }

  /**
   * The keys that may have signed a token with this header, best first: the
   * keys named by its `kid`, else the keys that carry no kid. A token without
   * a kid may have been signed by any key for its algorithm.
   */
  resolve (alg: string, kid: unknown): readonly CryptoKey[] {
    const entry = this.#byAlg.get(alg)
    if (entry === undefined) return NONE
    if (typeof kid !== 'string') return entry.all
    return entry.byKid.get(kid) ?? entry.anyKid
  }
}

/**
 * Imports every (key, algorithm) pair that fits. `onSkip` hears about each
 * key that fits no allowed algorithm or fails to import; local keys were
 * checked by the schema, so for them it is a bug, for a JWKS a log line.
 */
export async function buildKeyIndex (jwks: readonly JWK[], algorithms: readonly Algorithm[], onSkip: (jwk: JWK, reason: string) => void): Promise<KeyIndex> {
  const index = new KeyIndex()
  for (const jwk of jwks) {
    let fits = false
    for (const alg of algorithms) {
      if (!compatible(jwk, alg)) continue
      fits = true
      try {
        index.add(alg, typeof jwk.kid === 'string' ? jwk.kid : undefined, await importForAlgorithm(jwk, alg))
      } catch (err) {
        onSkip(jwk, `cannot be imported for ${alg}: ${(err as Error).message}`)
      }
    }
    if (!fits) onSkip(jwk, `fits none of the allowed algorithms (${algorithms.join(', ')})`)
  }
  return index
}
