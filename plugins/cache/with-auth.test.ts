import t from 'tap'
import { ScriptedOrigin, get, uniquePath } from './test-origin.ts'
import { startTestProxy, simpleDoc } from '../../test/helpers/proxy.ts'
import { hashApiKey } from '../api-key/hash.ts'
import { sign, signingKey } from '../jwt-auth/fixtures.ts'

/**
 * Auth plugins before the cache: a request they authenticated is one with
 * credentials (RFC 9111 §3.5) wherever the credential was, and they remove
 * it before the cache looks. Its response is shared only when the origin
 * says it may be.
 */

const ALICE = 'alice-key-0123456789'
const BOB = 'bob-key-0123456789'
const apiKey = { name: 'api-key', config: { forwardId: 'x-consumer-id', keys: [{ id: 'alice', hash: hashApiKey(ALICE) }, { id: 'bob', hash: hashApiKey(BOB) }] } }

/** An origin whose answer names the caller (as the auth plugin told it), with the given Cache-Control. */
function perCaller (origin: ScriptedOrigin, path: string, cacheControl: string): void {
  origin.on(path, (req) => ({ headers: { 'cache-control': cacheControl }, body: `data of ${String(req.headers['x-consumer-id'] ?? req.headers['x-user'])}` }))
}

t.test('api-key: a response to a key-authenticated request is not stored without public, s-maxage or must-revalidate', async (t) => {
  const origin = await ScriptedOrigin.start()
  t.teardown(() => origin.close())
  const proxy = await startTestProxy(simpleDoc(origin.upstream.url, { plugins: [apiKey, { name: 'cache', config: {} }] }), t)
  const path = uniquePath('key')
  perCaller(origin, path, 'max-age=60')
  t.equal((await get(proxy, path, { 'x-api-key': ALICE })).body, 'data of alice')
  const bob = await get(proxy, path, { 'x-api-key': BOB })
  t.equal(bob.body, 'data of bob', 'bob never gets alice\'s response')
  t.equal(bob.headers['x-cache'], 'MISS')
  t.equal((await get(proxy, path, { 'x-api-key': ALICE })).body, 'data of alice')
  t.equal(origin.hits(path), 3, 'nothing was stored')
})

t.test('api-key: a response the origin marks shareable is stored and served to every authenticated client', async (t) => {
  const origin = await ScriptedOrigin.start()
  t.teardown(() => origin.close())
  const proxy = await startTestProxy(simpleDoc(origin.upstream.url, { plugins: [apiKey, { name: 'cache', config: {} }] }), t)
  for (const cc of ['public, max-age=60', 's-maxage=60', 'max-age=60, must-revalidate']) {
    const path = uniquePath('shared')
    perCaller(origin, path, cc)
    await get(proxy, path, { 'x-api-key': ALICE })
    const bob = await get(proxy, path, { 'x-api-key': BOB })
    t.equal(bob.headers['x-cache'], 'HIT', cc)
    t.equal(origin.hits(path), 1, `${cc}: one upstream request`)
  }
  t.equal((await get(proxy, uniquePath('anon'))).status, 401, 'and a client without a key still gets nothing')
})

t.test('jwt-auth from a cookie: the same (no Authorization header anywhere)', async (t) => {
  const origin = await ScriptedOrigin.start()
  t.teardown(() => origin.close())
  const key = await signingKey('ES256', 'k1')
  const jwt = { name: 'jwt-auth', config: { keys: [{ type: 'jwk', jwk: key.jwk }], tokenFrom: { from: 'cookie', name: 'session' }, forwardClaims: { sub: 'x-user' } } }
  const proxy = await startTestProxy(simpleDoc(origin.upstream.url, { plugins: [jwt, { name: 'cache', config: {} }] }), t)
  const path = uniquePath('jwt')
  perCaller(origin, path, 'max-age=60')
  const as = async (sub: string): Promise<string> => (await get(proxy, path, { cookie: `session=${await sign(key, { sub })}` })).body
  t.equal(await as('alice'), 'data of alice')
  t.equal(await as('bob'), 'data of bob')
  t.equal(origin.hits(path), 2)
})

t.test('a 304 to an authenticated revalidation that no longer marks the response shareable retires the shared copy', async (t) => {
  const origin = await ScriptedOrigin.start()
  t.teardown(() => origin.close())
  const proxy = await startTestProxy(simpleDoc(origin.upstream.url, { plugins: [apiKey, { name: 'cache', config: {} }] }), t)
  const path = uniquePath('reval')
  // Stored stale at once (Age past max-age), with a validator to revalidate with.
  origin.on(path, (req, n) => n === 1
    ? { headers: { 'cache-control': 'public, max-age=60', age: '120', etag: '"v1"' }, body: 'shared v1' }
    : req.headers['if-none-match'] === '"v1"'
      ? { status: 304, headers: { 'cache-control': 'max-age=60', etag: '"v1"' } }
      : { headers: { 'cache-control': 'max-age=60', etag: '"v1"' }, body: `v1 for ${String(req.headers['x-consumer-id'])}` })
  await get(proxy, path, { 'x-api-key': ALICE })
  const bob = await get(proxy, path, { 'x-api-key': BOB })
  t.equal(bob.headers['x-cache'], 'REVALIDATED')
  t.equal(bob.body, 'shared v1', 'bob is answered once with the stored body the 304 validated')
  const alice = await get(proxy, path, { 'x-api-key': ALICE })
  t.equal(alice.headers['x-cache'], 'MISS', 'no longer served from the shared copy')
  t.equal(origin.hits(path), 3)
})
