import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose'

/**
 * Test fixtures: a real JWKS endpoint on 127.0.0.1:0 and signing keys made
 * with jose. Not a test file itself (tap runs `*.test.ts` only).
 */

export interface SigningKey {
  readonly kid: string | undefined
  readonly alg: string
  readonly privateKey: CryptoKey
  readonly jwk: JWK
}

export async function signingKey (alg: 'RS256' | 'ES256' | 'EdDSA' | 'PS256', kid?: string): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true })
  const jwk = await exportJWK(publicKey)
  if (kid !== undefined) jwk.kid = kid
  jwk.use = 'sig'
  return { kid, alg, privateKey, jwk }
}

/** A token signed by `key` whose claims default to a valid, current one. */
export async function sign (key: SigningKey | { kid?: string, alg: string, privateKey: CryptoKey | Uint8Array }, claims: JWTPayload = {}, header: Record<string, unknown> = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({ sub: 'user-1', iat: now, exp: now + 300, ...claims })
    .setProtectedHeader({ alg: key.alg, ...(key.kid === undefined ? {} : { kid: key.kid }), ...header })
    .sign(key.privateKey)
}

export interface JwksServer {
  readonly url: string
  /** Requests served, 304s included. */
  hits: number
  /** Of which answered 304 Not Modified. */
  notModified: number
  keys: JWK[]
  /** Sent as Cache-Control when set. */
  cacheControl: string | undefined
  /** When set, every request gets this status and no keys. */
  failWith: number | undefined
  close (): Promise<void>
}

/** A JWKS endpoint that serves `keys` with an ETag, honouring If-None-Match. */
export async function startJwksServer (keys: JWK[]): Promise<JwksServer> {
  const state: JwksServer = {
    url: '',
    hits: 0,
    notModified: 0,
    keys,
    cacheControl: undefined,
    failWith: undefined,
    close: async () => {},
  }
  const server = http.createServer((req, res) => {
    state.hits++
    if (state.failWith !== undefined) { res.writeHead(state.failWith).end(); return }
    const body = JSON.stringify({ keys: state.keys })
    const etag = `"${state.keys.map((k) => k.kid ?? '-').join(',')}"`
    const headers: Record<string, string> = { etag }
    if (state.cacheControl !== undefined) headers['cache-control'] = state.cacheControl
    if (req.headers['if-none-match'] === etag) {
      state.notModified++
      res.writeHead(304, headers).end()
      return
    }
    res.writeHead(200, { ...headers, 'content-type': 'application/jwk-set+json' }).end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  ;(state as { url: string }).url = `http://127.0.0.1:${port}/jwks.json`
  state.close = () => new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  })
  return state
}

/** Polls `check` until it holds (or `ms` pass): for timer-driven refreshes. */
export async function eventually (check: () => boolean, ms = 5000): Promise<boolean> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (check()) return true
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return check()
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
