import t from 'tap'
import { createHash } from 'node:crypto'
import type { RequestContext } from '../../src/plugin.ts'
import { compileClientIp, ipv6Network, parseAddress, parseCidr } from './client-ip.ts'
import { compileKey } from './keys.ts'
import { schema } from './schema.ts'

/** The parts of a request context the key code reads. */
function rc (clientIp: string, headers: Record<string, string> = {}, identity?: RequestContext['identity']): RequestContext {
  return { clientIp, req: { headers }, identity } as unknown as RequestContext
}

function keyOf (key: unknown, ctx: RequestContext, extra: Record<string, unknown> = {}): string | undefined {
  const c = schema.parse({ points: 1, duration: 1, key, ...extra })
  return compileKey(c.key, { trustedProxies: c.trustedProxies, ipv6Subnet: c.ipv6Subnet })(ctx)
}

t.test('reads addresses in the forms proxies write them', async (t) => {
  t.same(parseAddress('192.0.2.1'), { family: 'ipv4', address: '192.0.2.1' })
  t.same(parseAddress('192.0.2.1:4711'), { family: 'ipv4', address: '192.0.2.1' })
  t.same(parseAddress('2001:DB8::1'), { family: 'ipv6', address: '2001:db8::1' })
  t.same(parseAddress('[2001:db8::1]:443'), { family: 'ipv6', address: '2001:db8::1' })
  t.same(parseAddress('::ffff:192.0.2.1'), { family: 'ipv4', address: '192.0.2.1' }, 'IPv4-mapped is IPv4')
  for (const bad of ['', 'unknown', '192.0.2', '192.0.2.1.5', '[2001:db8::1', 'host:80', '_hidden']) t.equal(parseAddress(bad), undefined, bad)
})

t.test('IPv6 clients are keyed by their network', async (t) => {
  t.equal(ipv6Network('2001:db8:1:2:3:4:5:6', 64), '2001:db8:1:2::/64')
  t.equal(ipv6Network('2001:db8:1:2:ffff::1', 64), '2001:db8:1:2::/64', 'another interface id, same /64')
  t.equal(ipv6Network('2001:db8:abcd:12ff::1', 56), '2001:db8:abcd:1200::/56')
  t.equal(ipv6Network('2001:db8::', 48), '2001:db8::/48')
  t.equal(ipv6Network('64:ff9b::192.0.2.1', 96), '64:ff9b::/96')
  t.equal(ipv6Network('1:2:3:4:5:6:7:8', 112), '1:2:3:4:5:6:7::/112')
  t.equal(ipv6Network('::1', 128), '::1')
  t.equal(ipv6Network('fe80::1', 1), '8000::/1')
})

t.test('reads trusted proxy entries', async (t) => {
  t.same(parseCidr('10.0.0.0/8'), { family: 'ipv4', address: '10.0.0.0', prefix: 8 })
  t.same(parseCidr('192.0.2.7'), { family: 'ipv4', address: '192.0.2.7', prefix: 32 })
  t.same(parseCidr('fd00::/8'), { family: 'ipv6', address: 'fd00::', prefix: 8 })
  t.same(parseCidr('::ffff:172.16.0.0/108'), { family: 'ipv4', address: '172.16.0.0', prefix: 12 })
  for (const bad of ['10.0.0.0/33', '10.0.0.0/', '10/8', '::/129', '[::1]', 'x/8', '10.0.0.0/-1']) t.equal(parseCidr(bad), undefined, bad)
})

t.test('X-Forwarded-For counts only behind a trusted proxy, read from the right', async (t) => {
  const direct = compileClientIp({ trustedProxies: [], ipv6Subnet: 64 })
  t.equal(direct(rc('203.0.113.9', { 'x-forwarded-for': '198.51.100.1' })), '203.0.113.9', 'no trusted proxy: the header is ignored')
  t.equal(direct(rc('::ffff:203.0.113.9')), '203.0.113.9')
  t.equal(direct(rc('2001:db8:1:2::99')), '2001:db8:1:2::/64')

  const lb = compileClientIp({ trustedProxies: ['10.0.0.0/8'], ipv6Subnet: 64 })
  t.equal(lb(rc('10.1.2.3', { 'x-forwarded-for': '198.51.100.1' })), '198.51.100.1', 'the load balancer says who it is')
  t.equal(lb(rc('203.0.113.9', { 'x-forwarded-for': '198.51.100.1' })), '203.0.113.9', 'a client that is not the load balancer cannot say')
  t.equal(lb(rc('10.1.2.3', { 'x-forwarded-for': '6.6.6.6, 198.51.100.1' })), '198.51.100.1', 'what the client put in front is ignored')
  t.equal(lb(rc('10.1.2.3', { 'x-forwarded-for': '6.6.6.6, 10.0.0.1, 198.51.100.1' })), '198.51.100.1', 'a forged trusted address to the left changes nothing')
  t.equal(lb(rc('10.1.2.3', { 'x-forwarded-for': '6.6.6.6, 198.51.100.1, 10.9.9.9' })), '198.51.100.1', 'trusted hops are skipped')
  t.equal(lb(rc('10.1.2.3', { 'x-forwarded-for': '10.9.9.9, 10.8.8.8' })), '10.9.9.9', 'all trusted: the left-most')
  t.equal(lb(rc('10.1.2.3', { 'x-forwarded-for': 'unknown, 10.8.8.8' })), '10.8.8.8', 'not an address: the hop that reported it')
  t.equal(lb(rc('10.1.2.3', { 'x-forwarded-for': '198.51.100.1:5123' })), '198.51.100.1', 'with a port')
  t.equal(lb(rc('10.1.2.3', { 'x-forwarded-for': '[2001:db8:7:7::1]:443' })), '2001:db8:7:7::/64', 'bracketed IPv6')
  t.equal(lb(rc('10.1.2.3', { 'x-forwarded-for': ' , 198.51.100.1 ,' })), '198.51.100.1', 'empty members')
  t.equal(lb(rc('10.1.2.3')), '10.1.2.3', 'no header: the proxy itself')
  t.equal(lb(rc('::ffff:10.1.2.3', { 'x-forwarded-for': '198.51.100.1' })), '198.51.100.1', 'a mapped peer is trusted as IPv4')
})

/** What a header or claim value becomes in a key: 16 bytes of SHA-256, base64url. */
function digest (value: string): string {
  return createHash('sha256').update(value).digest().subarray(0, 16).toString('base64url')
}

t.test('keys are tagged per kind, escaped and bounded', async (t) => {
  const id = { subject: 'svc-a', claims: { org: 'acme', n: 7, obj: { a: 1 }, empty: '' } }
  t.equal(keyOf('ip', rc('192.0.2.1')), 'ip=192.0.2.1')
  t.equal(keyOf('route', rc('192.0.2.1')), 'route')
  t.equal(keyOf('identity', rc('192.0.2.1', {}, id)), 'id=svc-a')
  t.equal(keyOf('identity', rc('192.0.2.1')), 'ip=192.0.2.1', 'no identity: the client address')
  t.equal(keyOf({ by: 'identity', missing: 'shared' }, rc('192.0.2.1')), 'id')
  t.equal(keyOf({ by: 'identity', missing: 'skip' }, rc('192.0.2.1')), undefined)
  t.equal(keyOf({ by: 'claim', claim: 'org' }, rc('192.0.2.1', {}, id)), `c=${digest('acme')}`)
  t.equal(keyOf({ by: 'claim', claim: 'n' }, rc('192.0.2.1', {}, id)), `c=${digest('7')}`)
  t.equal(keyOf({ by: 'claim', claim: 'obj' }, rc('192.0.2.1', {}, id)), `c=${digest('{"a":1}')}`)
  t.equal(keyOf({ by: 'claim', claim: 'empty' }, rc('192.0.2.1', {}, id)), 'ip=192.0.2.1')
  t.equal(keyOf({ by: 'claim', claim: 'constructor' }, rc('192.0.2.1', {}, id)), 'ip=192.0.2.1', 'never a prototype property')
  t.equal(keyOf({ by: 'header', name: 'X-Tenant' }, rc('192.0.2.1', { 'x-tenant': 'globex' })), `h=${digest('globex')}`)
  t.equal(keyOf({ by: 'header', name: 'x-tenant' }, rc('192.0.2.1', { 'x-tenant': '' })), 'ip=192.0.2.1', 'empty is missing')
  t.equal(keyOf([{ by: 'identity' }, { by: 'header', name: 'x-tenant', missing: 'shared' }], rc('192.0.2.1', {}, id)), 'id=svc-a|h')
  const pair = (a: string, b: string): string | undefined => keyOf([{ by: 'header', name: 'x-a' }, { by: 'header', name: 'x-b' }], rc('192.0.2.1', { 'x-a': a, 'x-b': b }))
  t.equal(pair('p|h=q', 'r'), `h=${digest('p|h=q')}|h=${digest('r')}`, 'a separator in a value cannot forge a second part')
  t.not(pair('p|h=q', 'r'), pair('p', 'q|h=r'))
  t.equal(keyOf({ by: 'identity' }, rc('192.0.2.1', {}, { subject: 'a|id=b' })), 'id=a%7Cid=b', 'subjects are escaped')
  t.equal(keyOf([{ by: 'identity', missing: 'skip' }, 'ip'], rc('192.0.2.1')), undefined, 'one skipping part skips the request')
  t.match(keyOf('identity', rc('192.0.2.1', {}, { subject: 'v'.repeat(5000) })), /^id=%#[A-Za-z0-9_-]{43}$/, 'a long subject is hashed')
  t.match(keyOf({ by: 'header', name: 'x-a' }, rc('192.0.2.1', { 'x-a': 'v'.repeat(5000) })), /^h=[A-Za-z0-9_-]{22}$/, 'a long value is a digest like any other')
  t.equal(keyOf({ by: 'ip', trustedProxies: ['192.0.2.1'] }, rc('192.0.2.1', { 'x-forwarded-for': '198.51.100.4' })), 'ip=198.51.100.4', 'per-part trusted proxies')
  t.equal(keyOf('identity', rc('192.0.2.1', { 'x-forwarded-for': '198.51.100.4' }), { trustedProxies: ['192.0.2.0/24'] }), 'ip=198.51.100.4', 'the fallback uses the plugin-level trusted proxies')
})

t.test('header and claim values, often credentials, are never part of a key as they are', async (t) => {
  const secret = 'rk_3f9c2a7e6b1d4058a9e0c7b2d1f4e8a6'
  const byHeader = keyOf({ by: 'header', name: 'x-api-key' }, rc('192.0.2.1', { 'x-api-key': secret }))
  const byClaim = keyOf({ by: 'claim', claim: 'key' }, rc('192.0.2.1', {}, { subject: 's', claims: { key: secret } }))
  t.match(byHeader, /^h=[A-Za-z0-9_-]{22}$/)
  t.match(byClaim, /^c=[A-Za-z0-9_-]{22}$/)
  for (const key of [byHeader, byClaim]) t.notMatch(key, /rk_|3f9c/)
  t.not(byHeader, keyOf({ by: 'header', name: 'x-api-key' }, rc('192.0.2.1', { 'x-api-key': `${secret}x` })), 'other values, other keys')
})
