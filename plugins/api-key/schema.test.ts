import t from 'tap'
import { schema } from './schema.ts'
import { hashApiKey } from './hash.ts'

function paths (input: unknown): Array<Array<string | number>> {
  const r = schema.safeParse(input)
  if (r.success) return []
  return r.error.issues.map((i) => i.path as Array<string | number>)
}

const H1 = hashApiKey('key-one')
const H2 = hashApiKey('key-two')

t.test('hashApiKey is sha256:<hex>', async (t) => {
  t.equal(hashApiKey('k'), 'sha256:8254c329a92850f6d539dd376f4816ee2764517da5e0235514af433164480d7a')
})

t.test('fills every default', async (t) => {
  t.same(schema.parse({ keys: [{ id: 'a', hash: H1 }] }), {
    keyFrom: { from: 'header', name: 'x-api-key' },
    keys: [{ id: 'a', hash: H1, scopes: [] }],
    requiredScopes: [],
    forwardKey: false,
    realm: 'outrider',
  })
  t.same(schema.parse({ keysFile: 'keys.yaml', keyFrom: { from: 'query' } }).keyFrom, { from: 'query', name: 'api_key' })
})

t.test('normalizes names and hashes', async (t) => {
  const c = schema.parse({ keys: [{ id: 'a', hash: H1.toUpperCase().replace('SHA256', 'sha256'), scopes: ['read'] }], keyFrom: { from: 'header', name: 'X-Key' }, forwardId: 'X-Consumer-Id' })
  t.equal(c.keys[0]?.hash, H1)
  t.equal(c.keyFrom.name, 'x-key')
  t.equal(c.forwardId, 'x-consumer-id')
  t.ok(schema.safeParse({ keys: [{ id: 'a', hash: H1 }, { id: 'a', hash: H2 }] }).success, 'one id, two keys (rotation)')
})

t.test('refuses configs without keys, with plaintext keys or repeated hashes', async (t) => {
  t.same(paths({}), [['keys']])
  t.same(paths({ keys: [] }), [['keys']])
  t.same(paths({ keys: [{ id: 'a', hash: 'key-one' }] }), [['keys', 0, 'hash']], 'a plaintext key')
  t.same(paths({ keys: [{ id: 'a', hash: 'sha256:abc' }] }), [['keys', 0, 'hash']])
  t.same(paths({ keys: [{ id: 'a', key: 'key-one' }] }), [['keys', 0, 'hash'], ['keys', 0]])
  t.same(paths({ keys: [{ id: '', hash: H1 }] }), [['keys', 0, 'id']])
  t.same(paths({ keys: [{ id: 'a', hash: H1 }, { id: 'b', hash: H1 }] }), [['keys', 1, 'hash']])
  t.same(paths({ keys: [{ id: 'a', hash: H1, scopes: ['a b'] }] }), [['keys', 0, 'scopes', 0]])
})

t.test('refuses bad sources and headers', async (t) => {
  const keys = [{ id: 'a', hash: H1 }]
  t.same(paths({ keys, keyFrom: { from: 'cookie', name: 'k' } }), [['keyFrom', 'from']])
  t.same(paths({ keys, keyFrom: { from: 'header', name: 'x key' } }), [['keyFrom', 'name']])
  t.same(paths({ keys, keyFrom: { from: 'header', name: 'Connection' } }), [['keyFrom', 'name']])
  t.same(paths({ keys, keyFrom: { from: 'query', name: 'a&b' } }), [['keyFrom', 'name']])
  t.same(paths({ keys, forwardId: 'x-api-key' }), [['forwardId']], 'the key header itself')
  t.same(paths({ keys, realm: 'a"b' }), [['realm']])
  t.same(paths({ keys, requiredScopes: [''] }), [['requiredScopes', 0]])
  t.same(paths({ keys, stripKey: true }), [[]])
})
