import t from 'tap'
import { generateKeyPairSync } from 'node:crypto'
import { request } from 'undici'
import { UnsecuredJWT } from 'jose'
import { startUpstream, type Upstream } from '../../test/helpers/upstream.ts'
import { startTestProxy, simpleDoc, testLogger, type TestProxy } from '../../test/helpers/proxy.ts'
import type { PluginContext, RequestContext } from '../../src/plugin.ts'
import { schema } from './schema.ts'
import plugin from './plugin.ts'
import { sign, signingKey, startJwksServer, eventually, sleep, type JwksServer, type SigningKey } from './fixtures.ts'

const ISS = 'https://idp.example/'
const AUD = 'orders'

interface Reply { status: number, headers: Record<string, string | string[] | undefined>, body: Record<string, unknown> }

async function get (proxy: TestProxy, headers: Record<string, string | string[]> = {}, path = '/orders'): Promise<Reply> {
  const res = await request(`${proxy.url}${path}`, { headers })
  const text = await res.body.text()
  return { status: res.statusCode, headers: res.headers, body: text === '' ? {} : JSON.parse(text) as Record<string, unknown> }
}

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

async function setup (t: { teardown (fn: () => unknown): void }, config: Record<string, unknown>, keys: SigningKey[]): Promise<{ up: Upstream, idp: JwksServer, proxy: TestProxy }> {
  const idp = await startJwksServer(keys.map((k) => k.jwk))
  t.teardown(idp.close)
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url, { plugins: [{ name: 'jwt-auth', config: { jwksUrl: idp.url, issuer: ISS, audience: AUD, ...config } }] }), t)
  return { up, idp, proxy }
}

const k1 = await signingKey('RS256', 'k1')
const k2 = await signingKey('ES256', 'k2')
const good = { iss: ISS, aud: AUD }

t.test('a valid token passes; claims are forwarded and forged copies stripped', async (t) => {
  const { up, proxy } = await setup(t, { forwardClaims: { sub: 'x-user-id', email: 'x-user-email', roles: 'x-user-roles', tenant: 'x-tenant', groups: 'x-user-groups' } }, [k1, k2])
  const token = await sign(k1, { ...good, sub: 'alice', email: 'alice@example.com', roles: ['admin', 'dev'], groups: ['staff,admin', 'dev'] })
  const res = await get(proxy, { ...bearer(token), 'x-user-id': 'mallory', 'X-Tenant': 'forged', 'x-user-groups': 'forged' })
  t.equal(res.status, 200)
  const seen = up.seen[0]?.headers ?? {}
  t.equal(seen['x-user-id'], 'alice', 'the claim, not the client\'s header')
  t.equal(seen['x-user-email'], 'alice@example.com')
  t.equal(seen['x-user-roles'], 'admin,dev', 'a list claim is comma-joined')
  t.equal(seen['x-user-groups'], undefined, 'a list whose element holds a comma is not forwarded: it would read as three groups')
  t.equal(seen['x-tenant'], undefined, 'a forged header is stripped even when the token lacks the claim')
  t.equal(seen.authorization, `Bearer ${token}`, 'forwardToken defaults to true')

  const es = await get(proxy, { authorization: `bearer   ${await sign(k2, { ...good, sub: 'bob' })}` })
  t.equal(es.status, 200, 'ES256, a lower-case scheme and several spaces (RFC 6750 §2.1, RFC 9110 §11.1)')
  t.equal(up.seen[1]?.headers['x-user-id'], 'bob')
})

t.test('refuses missing credentials with a bare challenge', async (t) => {
  const { up, proxy } = await setup(t, { realm: 'orders-api' }, [k1])
  for (const headers of [{}, { authorization: 'Basic dXNlcjpwYXNz' }, { authorization: 'Bearerfoo' }] as Array<Record<string, string>>) {
    const res = await get(proxy, headers)
    t.equal(res.status, 401, JSON.stringify(headers))
    t.equal(res.headers['www-authenticate'], 'Bearer realm="orders-api"', 'no error code without credentials (RFC 6750 §3.1)')
    t.equal(res.body.code, 'UNAUTHORIZED')
  }
  t.equal(up.seen.length, 0)
})

t.test('refuses a repeated or unreadable credential with 400 invalid_request', async (t) => {
  const { up, proxy } = await setup(t, {}, [k1])
  const token = await sign(k1, good)
  for (const headers of [{ authorization: [`Bearer ${token}`, `Bearer ${token}`] }, { authorization: 'Bearer' }, { authorization: 'Bearer a b' }]) {
    const res = await get(proxy, headers)
    t.equal(res.status, 400)
    t.match(res.headers['www-authenticate'], /^Bearer realm="outrider", error="invalid_request", error_description="[^"]+"$/)
  }
  t.equal(up.seen.length, 0)
})

t.test('refuses bad tokens with 401 invalid_token and a description', async (t) => {
  const { up, idp, proxy } = await setup(t, {}, [k1])
  const now = Math.floor(Date.now() / 1000)
  const impostor = await signingKey('RS256', 'k1') // same kid, different key
  const valid = await sign(k1, good)
  const [h, p, s] = valid.split('.') as [string, string, string]
  const tampered = `${h}.${Buffer.from(JSON.stringify({ ...good, sub: 'admin', exp: now + 300 })).toString('base64url')}.${s}`
  // RFC 8725 §2.1: an HS256 token MACed with the RSA public key as the secret.
  const confused = await sign({ alg: 'HS256', kid: 'k1', privateKey: Buffer.from(JSON.stringify(k1.jwk)) }, good)
  const cases: Array<[string, string, RegExp]> = [
    ['expired', await sign(k1, { ...good, iat: now - 600, exp: now - 120 }), /expired/],
    ['expired beyond the skew only', await sign(k1, { ...good, exp: now - 31 }), /expired/],
    ['not yet valid', await sign(k1, { ...good, nbf: now + 120 }), /not valid yet/],
    ['issued in the future', await sign(k1, { ...good, iat: now + 120, exp: now + 600 }), /issued in the future/],
    ['wrong issuer', await sign(k1, { ...good, iss: 'https://evil.example/' }), /issuer/],
    ['no issuer', await sign(k1, { aud: AUD }), /issuer/],
    ['wrong audience', await sign(k1, { ...good, aud: ['billing'] }), /audience/],
    ['alg none', new UnsecuredJWT({ ...good, sub: 'admin', exp: now + 300 }).encode(), /algorithm/],
    ['HS256 with the public key as secret', confused, /algorithm/],
    ['signed by another key', await sign(impostor, good), /signature/],
    ['tampered payload', tampered, /signature/],
    ['garbage', 'abc.def.ghi', /malformed/],
    ['no exp', await sign(k1, { ...good, exp: undefined }), /no expiry/],
    ['no subject', await sign(k1, { ...good, sub: undefined }), /no subject/],
    ['unknown kid', await sign(await signingKey('RS256', 'k9'), good), /no known key/],
  ]
  for (const [name, token, description] of cases) {
    const res = await get(proxy, bearer(token))
    t.equal(res.status, 401, name)
    const challenge = String(res.headers['www-authenticate'])
    t.match(challenge, /^Bearer realm="outrider", error="invalid_token", error_description="[\x20\x21\x23-\x5b\x5d-\x7e]+"$/, `${name}: RFC 6750 §3 challenge`)
    t.match(challenge, description, name)
    t.equal(res.body.code, 'UNAUTHORIZED', name)
  }
  t.equal(up.seen.length, 0, 'nothing reached the upstream')
  t.ok(idp.hits <= 2, 'one initial fetch, at most one for the unknown kid')
  t.equal((await get(proxy, bearer(await sign(k1, { ...good, exp: now - 20 })))).status, 200, 'expired within the 30s skew')
})

t.test('maxAge and typ', async (t) => {
  const { proxy } = await setup(t, { maxAge: '1m', typ: 'at+jwt' }, [k1])
  const now = Math.floor(Date.now() / 1000)
  t.equal((await get(proxy, bearer(await sign(k1, good, { typ: 'at+jwt' })))).status, 200)
  const old = await get(proxy, bearer(await sign(k1, { ...good, iat: now - 300 }, { typ: 'at+jwt' })))
  t.equal(old.status, 401)
  t.match(old.headers['www-authenticate'], /too old/)
  t.match((await get(proxy, bearer(await sign(k1, good, { typ: 'JWT' })))).headers['www-authenticate'], /type/)
})

t.test('refuses a token without the route\'s scopes or claims with 403', async (t) => {
  const { up, proxy } = await setup(t, { requiredScopes: ['orders:read', 'orders:write'], requiredClaims: { email_verified: true, groups: ['staff', 'ops'] } }, [k1])
  const base = { ...good, email_verified: true, groups: ['ops'] }
  t.equal((await get(proxy, bearer(await sign(k1, { ...base, scope: 'profile orders:read orders:write' })))).status, 200, 'scope as a string')
  t.equal((await get(proxy, bearer(await sign(k1, { ...base, scp: ['orders:write', 'orders:read'] })))).status, 200, 'scp as a list')
  t.equal(up.seen.length, 2)

  const res = await get(proxy, bearer(await sign(k1, { ...base, scope: 'orders:read' })))
  t.equal(res.status, 403)
  t.equal(res.headers['www-authenticate'], 'Bearer realm="outrider", error="insufficient_scope", error_description="the token lacks a required scope", scope="orders:read orders:write"')
  t.equal(res.body.code, 'FORBIDDEN')

  const unverified = await get(proxy, bearer(await sign(k1, { ...base, email_verified: false, scope: 'orders:read orders:write' })))
  t.equal(unverified.status, 403, 'a claim with the wrong value')
  const outsider = await get(proxy, bearer(await sign(k1, { ...base, groups: ['guests'], scope: 'orders:read orders:write' })))
  t.equal(outsider.status, 403, 'a list claim without an accepted value')
  t.equal(up.seen.length, 2)
})

t.test('refetches the JWKS for an unknown kid, at most once per cooldown', async (t) => {
  const { idp, proxy } = await setup(t, { jwks: { cooldown: '1s' } }, [k1])
  t.equal((await get(proxy, bearer(await sign(k1, good)))).status, 200)
  t.equal(idp.hits, 1, 'one fetch at start')
  // Made before the cooldown starts: an RSA key takes a noticeable part of it on a busy machine.
  const strangerToken = bearer(await sign(await signingKey('RS256', 'nobody'), good))
  await sleep(1100)

  // The IdP rotates: k3 is published and tokens signed by it appear.
  const k3 = await signingKey('EdDSA', 'k3')
  idp.keys = [k1.jwk, k3.jwk]
  const rotated = await Promise.all([1, 2, 3].map(async () => get(proxy, bearer(await sign(k3, good)))))
  t.same(rotated.map((r) => r.status), [200, 200, 200], 'the new key is found')
  t.equal(idp.hits, 2, 'concurrent requests share one refetch')

  // Unknown kids within the cooldown: no fetch, whatever the rate.
  for (let i = 0; i < 5; i++) t.equal((await get(proxy, strangerToken)).status, 401)
  t.equal(idp.hits, 2, 'cooldown respected')

  await sleep(1100)
  t.equal((await get(proxy, strangerToken)).status, 401)
  t.equal(idp.hits, 3, 'one more fetch once the cooldown is over')
  t.equal((await get(proxy, bearer(await sign(k1, good)))).status, 200, 'known keys never wait')
  t.equal(idp.hits, 3)
})

t.test('keeps validating with cached keys while the IdP is down', async (t) => {
  const { idp, proxy } = await setup(t, { jwks: { cooldown: '1s', minRefresh: '1s' } }, [k1])
  idp.cacheControl = 'max-age=1'
  t.equal((await get(proxy, bearer(await sign(k1, good)))).status, 200)
  t.ok(await eventually(() => idp.hits >= 2), 'refreshed after max-age=1 without any traffic')

  idp.failWith = 503
  const before = idp.hits
  t.ok(await eventually(() => idp.hits > before), 'a refresh met the outage')
  t.equal((await get(proxy, bearer(await sign(k1, good)))).status, 200, 'cached keys still verify after a 503')

  await idp.close()
  await sleep(1100)
  t.equal((await get(proxy, bearer(await sign(k1, good)))).status, 200, 'and with the IdP gone entirely')
  const unknown = await get(proxy, bearer(await sign(await signingKey('ES256', 'new'), good)))
  t.equal(unknown.status, 401, 'an unknown kid is refused promptly, not hung on the dead IdP')
  t.match(unknown.headers['www-authenticate'], /no known key/)
})

t.test('a reload keeps the fetched keys: one JWKS per URL and process, shared by routes and snapshots', async (t) => {
  const idp = await startJwksServer([k1.jwk])
  t.teardown(idp.close)
  const up = await startUpstream()
  t.teardown(up.close)
  const route = (name: string, prefix: string): Record<string, unknown> => ({ name, match: { pathPrefix: prefix }, cluster: 'up', plugins: [{ name: 'jwt-auth', config: { jwksUrl: idp.url, issuer: ISS, audience: AUD } }] })
  const doc = (): Record<string, unknown> => ({ ...simpleDoc(up.url), routes: [route('a', '/a'), route('b', '/b')] })
  const proxy = await startTestProxy(doc(), t)
  const token = bearer(await sign(k1, good))
  t.equal((await get(proxy, token, '/a')).status, 200)
  t.equal((await get(proxy, token, '/b')).status, 200)
  t.equal(idp.hits, 1, 'two routes naming one JWKS fetch it once')
  idp.failWith = 503
  await proxy.reload(doc())
  t.equal((await get(proxy, token, '/a')).status, 200, 'a reload during an IdP outage still verifies with the keys it had')
  t.equal(idp.hits, 1, 'and did not fetch again')
})

t.test('a reload that changes the JWKS options or the algorithms during an IdP outage keeps the fetched keys', async (t) => {
  const { up, idp, proxy } = await setup(t, {}, [k1, k2])
  const doc = (config: Record<string, unknown>): Record<string, unknown> => simpleDoc(up.url, { plugins: [{ name: 'jwt-auth', config: { jwksUrl: idp.url, issuer: ISS, audience: AUD, ...config } }] })
  t.equal((await get(proxy, bearer(await sign(k1, good)))).status, 200)
  idp.failWith = 503
  await proxy.reload(doc({ jwks: { timeout: '3s', cooldown: '10s' } }))
  t.equal((await get(proxy, bearer(await sign(k1, good)))).status, 200, 'another timeout and cooldown')
  await proxy.reload(doc({ algorithms: ['ES256'] }))
  t.equal((await get(proxy, bearer(await sign(k2, good)))).status, 200, 'another algorithm list')
  const rs = await get(proxy, bearer(await sign(k1, good)))
  t.equal(rs.status, 401, 'and it applies: RS256 is no longer accepted')
  t.match(rs.headers['www-authenticate'], /not accepted/)
  t.equal(idp.hits, 1, 'no new key set, no new fetch')
})

t.test('a refresh revalidates with If-None-Match; a 304 keeps the keys', async (t) => {
  const { idp, proxy } = await setup(t, { jwks: { minRefresh: '1s' } }, [k1])
  idp.cacheControl = 'max-age=1'
  t.equal((await get(proxy, bearer(await sign(k1, good)))).status, 200)
  t.ok(await eventually(() => idp.notModified >= 1), '304 Not Modified on the refresh')
  t.equal((await get(proxy, bearer(await sign(k1, good)))).status, 200)
})

t.test('answers 503 while no key was ever fetched', async (t) => {
  const idp = await startJwksServer([])
  idp.failWith = 500
  t.teardown(idp.close)
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url, { plugins: [{ name: 'jwt-auth', config: { jwksUrl: idp.url, jwks: { cooldown: '1s' } } }] }), t)
  const res = await get(proxy, bearer(await sign(k1, good)))
  t.equal(res.status, 503, 'the proxy\'s failure, not the token\'s')
  t.equal(res.headers['www-authenticate'], undefined, 'no invalid_token: the client keeps its token')
  t.equal(res.headers['content-type'], 'application/problem+json')
  t.equal(res.body.code, 'AUTH_UNAVAILABLE')
  t.ok(Number(res.headers['retry-after']) >= 1, `Retry-After ${String(res.headers['retry-after'])}`)
  t.equal(up.seen.length, 0)

  idp.failWith = undefined
  idp.keys = [k1.jwk]
  await sleep(1100)
  t.equal((await get(proxy, bearer(await sign(k1, good)))).status, 200, 'recovers with the first successful fetch')
})

t.test('local keys: HMAC secret from a header, with the token kept from the upstream', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const secret = 'a-long-random-secret-of-32-bytes!'
  const proxy = await startTestProxy(simpleDoc(up.url, { plugins: [{ name: 'jwt-auth', config: { keys: [{ type: 'secret', secret }], algorithms: ['HS256'], tokenFrom: { from: 'header', name: 'X-Token' }, forwardToken: false } }] }), t)
  const token = await sign({ alg: 'HS256', privateKey: Buffer.from(secret) }, { sub: 'svc' })
  const res = await get(proxy, { 'x-token': token, 'x-other': 'kept' })
  t.equal(res.status, 200)
  t.equal(up.seen[0]?.headers['x-token'], undefined, 'stripped')
  t.equal(up.seen[0]?.headers['x-other'], 'kept')
  t.equal((await get(proxy, { 'x-token': await sign({ alg: 'HS256', privateKey: Buffer.from('another-secret-another-secret-32b') }) })).status, 401)
  t.equal((await get(proxy, { 'x-token': await sign(k1, {}) })).status, 401, 'RS256 is not allowed here')
  t.equal((await get(proxy, bearer(token))).status, 401, 'the Authorization header is not this route\'s source')
})

t.test('local keys: PEM keys without kid, from a cookie', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const a = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const b = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const c = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const pem = (k: typeof a): string => k.publicKey.export({ type: 'spki', format: 'pem' }) as string
  const proxy = await startTestProxy(simpleDoc(up.url, { plugins: [{ name: 'jwt-auth', config: {
    keys: [{ type: 'pem', pem: pem(a) }, { type: 'pem', pem: pem(b) }, { type: 'pem', pem: pem(c) }],
    tokenFrom: { from: 'cookie', name: 'session' },
    forwardToken: false,
  } }] }), t)
  const { importPKCS8 } = await import('jose')
  const priv = async (k: typeof a, alg: string) => importPKCS8(k.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, alg)
  const byC = await sign({ alg: 'RS256', privateKey: await priv(c, 'RS256') })
  const res = await get(proxy, { cookie: `theme=dark; session=${byC}; lang=en` })
  t.equal(res.status, 200, 'the second RSA key without a kid is tried too')
  t.equal(up.seen[0]?.headers.cookie, 'theme=dark; lang=en', 'only the token cookie is removed')
  t.equal((await get(proxy, { cookie: `session=${await sign({ alg: 'ES256', privateKey: await priv(b, 'ES256') })}` })).status, 200)
  t.equal(up.seen[1]?.headers.cookie, undefined, 'a Cookie with nothing else left is removed')
  t.equal((await get(proxy, { cookie: 'theme=dark' })).status, 401)
})

t.test('sets ctx.identity for later plugins', async (t) => {
  const idp = await startJwksServer([k1.jwk])
  t.teardown(idp.close)
  const hooks = await plugin.create(schema.parse({ jwksUrl: idp.url, forwardClaims: { sub: 'x-user-id' } }), { log: testLogger() } as PluginContext)
  t.teardown(() => hooks.close?.())
  const token = await sign(k1, { sub: 'carol', scope: 'a b', tenant: 'acme' })
  const ctx = { upstreamHeaders: { authorization: `Bearer ${token}`, 'x-user-id': 'forged' }, identity: undefined, annotate () {} } as unknown as RequestContext
  await hooks.onRequest?.(ctx)
  t.equal(ctx.identity?.subject, 'carol')
  t.same(ctx.identity?.scopes, ['a', 'b'])
  t.equal(ctx.identity?.claims?.tenant, 'acme')
  t.equal(ctx.upstreamHeaders['x-user-id'], 'carol')
})

t.test('close() stops the refresh timer', async (t) => {
  const idp = await startJwksServer([k1.jwk])
  idp.cacheControl = 'max-age=1'
  t.teardown(idp.close)
  const hooks = await plugin.create(schema.parse({ jwksUrl: idp.url, jwks: { minRefresh: '1s' } }), { log: testLogger() } as PluginContext)
  t.ok(await eventually(() => idp.hits === 1))
  await hooks.close?.()
  await sleep(1500)
  t.equal(idp.hits, 1, 'no refresh after close')
})
