import t from 'tap'
import { exportJWK, generateKeyPair } from 'jose'
import { testLogger } from '../../test/helpers/proxy.ts'
import { freshnessMs, KeysUnavailableError, RemoteKeySet } from './remote-jwks.ts'
import { signingKey, startJwksServer, eventually } from './fixtures.ts'

const bounds = { minRefreshMs: 60_000, maxRefreshMs: 86_400_000, defaultRefreshMs: 600_000 }

t.test('freshness follows Cache-Control and Age, within bounds', async (t) => {
  t.equal(freshnessMs(undefined, undefined, bounds), 600_000, 'no header: the default')
  t.equal(freshnessMs('public, max-age=3600', undefined, bounds), 3_600_000)
  t.equal(freshnessMs('max-age="3600"', undefined, bounds), 3_600_000, 'quoted (RFC 9111 §5.2 tolerates it)')
  t.equal(freshnessMs('max-age=3600', '600', bounds), 3_000_000, 'minus Age (RFC 9111 §4.2.3)')
  t.equal(freshnessMs('max-age=10', undefined, bounds), 60_000, 'clamped to minRefresh')
  t.equal(freshnessMs('max-age=31536000', undefined, bounds), 86_400_000, 'clamped to maxRefresh')
  t.equal(freshnessMs('no-store', undefined, bounds), 60_000, 'no-store: as often as allowed')
  t.equal(freshnessMs('no-cache, max-age=3600', undefined, bounds), 60_000)
  t.equal(freshnessMs('s-maxage=3600', undefined, bounds), 600_000, 's-maxage is not max-age')
  t.equal(freshnessMs(['private', 'max-age=7200'], undefined, bounds), 7_200_000, 'split over two field lines')
})

function options (): ConstructorParameters<typeof RemoteKeySet>[1] {
  return { algorithms: ['RS256', 'ES256'], cooldownMs: 1000, timeoutMs: 1000, log: testLogger(), ...bounds }
}

t.test('uses public keys only: secrets and private keys in a JWKS are skipped', async (t) => {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true })
  const leaked = { ...await exportJWK(privateKey), kid: 'leaked' }
  const idp = await startJwksServer([{ kty: 'oct', k: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA', kid: 'hmac' }, leaked])
  t.teardown(idp.close)
  const set = new RemoteKeySet(idp.url, options())
  t.teardown(() => set.close())
  set.start()
  await t.rejects(Promise.resolve(set.resolve('RS256', 'leaked')), KeysUnavailableError, 'nothing usable: no keys at all')
  t.notOk(set.ready)

  const good = await signingKey('RS256', 'good')
  idp.keys = [...idp.keys, good.jwk]
  await new Promise((resolve) => setTimeout(resolve, 1100))
  const keys = await set.resolve('RS256', 'good')
  t.equal(keys.length, 1)
  t.same(await set.resolve('RS256', 'leaked'), [], 'the private JWK is still not used')
  t.same(await set.resolve('ES256', 'good'), [], 'an RSA key is no ES256 key')
})

t.test('a JWKS that is too big, not JSON or not a set is a failed fetch', async (t) => {
  const idp = await startJwksServer([])
  t.teardown(idp.close)
  const set = new RemoteKeySet(idp.url, options())
  t.teardown(() => set.close())
  idp.keys = Array.from({ length: 3000 }, (_, i) => ({ kty: 'RSA', kid: `k${i}`, n: 'x'.repeat(400), e: 'AQAB' }))
  set.start()
  t.ok(await eventually(() => idp.hits === 1))
  await t.rejects(Promise.resolve(set.resolve('RS256', 'k1')), KeysUnavailableError)
})
