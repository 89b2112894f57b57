import t from 'tap'
import { schema } from './schema.ts'

function paths (input: unknown): Array<Array<string | number>> {
  const r = schema.safeParse(input)
  if (r.success) return []
  return r.error.issues.map((i) => i.path as Array<string | number>)
}

t.test('accepts an empty config and fills every default', async (t) => {
  t.same(schema.parse({}), {
    request: { set: {}, add: {}, remove: [] },
    response: { set: {}, add: {}, remove: [] },
  })
  t.same(schema.parse({ request: { set: { 'x-a': '1' } } }).response, { set: {}, add: {}, remove: [] })
})

t.test('lower-cases names and keeps values as written', async (t) => {
  const c = schema.parse({
    request: { set: { 'X-Route': '${route}', Host: 'internal.example' }, add: { 'X-Tag': 'a' }, remove: ['Cookie', 'cookie', 'X-Debug'] },
    response: { set: { 'Strict-Transport-Security': 'max-age=63072000' }, remove: ['Server'] },
  })
  t.same(c.request, { set: { 'x-route': '${route}', host: 'internal.example' }, add: { 'x-tag': 'a' }, remove: ['cookie', 'x-debug'] })
  t.same(c.response.set, { 'strict-transport-security': 'max-age=63072000' })
  t.same(c.response.remove, ['server'])
})

t.test('accepts every variable, empty values and obs-text', async (t) => {
  t.ok(schema.safeParse({ request: { set: { 'x-v': '${request_id} ${client_ip} ${route} ${method} ${scheme} $5 {x}' } } }).success)
  t.ok(schema.safeParse({ response: { set: { 'x-empty': '' } } }).success)
  t.ok(schema.safeParse({ response: { set: { 'x-latin1': 'caf\u00e9' } } }).success)
})

t.test('rejects unknown keys with their paths', async (t) => {
  t.same(paths({ requests: {} }), [[]])
  t.same(paths({ request: { sets: {} } }), [['request']])
  t.same(paths({ response: { replace: {} } }), [['response']])
  const r = schema.safeParse({ request: { sets: {} } })
  t.equal(r.success ? '' : r.error.issues[0]?.code, 'unrecognized_keys')
})

t.test('rejects header names that are not RFC 9110 tokens', async (t) => {
  t.same(paths({ request: { set: { 'x a': '1' } } }), [['request', 'set', 'x a']])
  t.same(paths({ response: { add: { 'x:a': '1' } } }), [['response', 'add', 'x:a']])
  t.same(paths({ request: { set: { '': '1' } } }), [['request', 'set', '']])
  t.same(paths({ response: { remove: ['ok', 'x(y)'] } }), [['response', 'remove', 1]])
  t.same(paths({ request: { remove: 'x-a' } }), [['request', 'remove']])
})

t.test('rejects the same header spelt twice', async (t) => {
  t.same(paths({ request: { set: { 'X-A': '1', 'x-a': '2' } } }), [['request', 'set', 'x-a']])
})

t.test('rejects values with CR, LF, NUL or other controls', async (t) => {
  t.same(paths({ request: { set: { 'x-a': 'a\r\nx-injected: 1' } } }), [['request', 'set', 'x-a']])
  t.same(paths({ response: { add: { 'x-a': 'a\nb' } } }), [['response', 'add', 'x-a']])
  t.same(paths({ response: { set: { 'x-a': 'a\u0000b' } } }), [['response', 'set', 'x-a']])
  t.same(paths({ response: { set: { 'x-a': 'a\u007fb' } } }), [['response', 'set', 'x-a']])
  t.same(paths({ response: { set: { 'x-a': '\u20ac' } } }), [['response', 'set', 'x-a']])
  t.same(paths({ response: { set: { 'x-a': 1 } } }), [['response', 'set', 'x-a']])
  t.same(paths({ response: { set: { 'x-a': 'x'.repeat(8193) } } }), [['response', 'set', 'x-a']])
})

t.test('rejects unknown variables and unclosed references', async (t) => {
  t.same(paths({ request: { set: { 'x-a': '${requestid}' } } }), [['request', 'set', 'x-a']])
  t.same(paths({ request: { add: { 'x-a': 'id=${request_id' } } }), [['request', 'add', 'x-a']])
  t.same(paths({ response: { set: { 'x-a': '${}' } } }), [['response', 'set', 'x-a']])
})

t.test('refuses hop-by-hop and framing headers in every operation', async (t) => {
  for (const name of ['connection', 'Transfer-Encoding', 'content-length', 'keep-alive', 'upgrade', 'te', 'trailer', 'proxy-authorization']) {
    t.same(paths({ request: { set: { [name]: 'x' } } }), [['request', 'set', name]], `request.set ${name}`)
    t.same(paths({ response: { add: { [name]: 'x' } } }), [['response', 'add', name]], `response.add ${name}`)
    t.same(paths({ response: { remove: [name] } }), [['response', 'remove', 0]], `response.remove ${name}`)
  }
})

t.test('expect may not be set or added on requests (the proxy answers it; undici refuses to send it)', async (t) => {
  t.same(paths({ request: { set: { Expect: '100-continue' } } }), [['request', 'set', 'Expect']])
  t.same(paths({ request: { add: { expect: 'x' } } }), [['request', 'add', 'expect']])
  t.ok(schema.safeParse({ request: { remove: ['expect'] } }).success)
  t.ok(schema.safeParse({ response: { set: { expect: 'x' } } }).success, 'a response field of that name is only odd')
})

t.test('host may be set on requests, never added, removed or touched on responses', async (t) => {
  t.ok(schema.safeParse({ request: { set: { Host: 'internal.example' } } }).success)
  t.same(paths({ request: { add: { host: 'x' } } }), [['request', 'add', 'host']])
  t.same(paths({ request: { remove: ['host'] } }), [['request', 'remove', 0]])
  t.same(paths({ response: { set: { host: 'x' } } }), [['response', 'set', 'host']])
})
