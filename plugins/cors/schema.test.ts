import t from 'tap'
import { schema } from './schema.ts'

function issues (input: unknown): Array<{ path: Array<string | number>, code: string }> {
  const r = schema.safeParse(input)
  if (r.success) return []
  return r.error.issues.map((i) => ({ path: i.path as Array<string | number>, code: i.code }))
}

function paths (input: unknown): Array<Array<string | number>> {
  return issues(input).map((i) => i.path)
}

t.test('accepts an empty config and fills every default', async (t) => {
  t.same(schema.parse({}), {
    allowOrigins: ['*'],
    allowMethods: ['GET', 'HEAD', 'POST'],
    allowHeaders: [],
    exposeHeaders: [],
    allowCredentials: false,
    allowPrivateNetwork: false,
  })
})

t.test('normalizes origins to what browsers send', async (t) => {
  const c = schema.parse({
    allowOrigins: ['HTTPS://App.Example.com:443', 'http://localhost:3000', 'https://*.Example.org', 'https://*.example.net:8443', 'https://b\u00fccher.example'],
    allowHeaders: ['Authorization', 'X-Api-Key'],
    exposeHeaders: ['X-Request-Id'],
    allowMethods: ['PUT', 'patch'],
    allowCredentials: true,
    maxAge: 600,
  })
  t.same(c.allowOrigins, ['https://app.example.com', 'http://localhost:3000', 'https://*.example.org', 'https://*.example.net:8443', 'https://xn--bcher-kva.example'])
  t.same(c.allowHeaders, ['authorization', 'x-api-key'], 'header names lower-cased')
  t.same(c.exposeHeaders, ['x-request-id'])
  t.same(c.allowMethods, ['PUT', 'patch'], 'methods are case-sensitive and kept as written')
  t.equal(c.maxAge, 600)
})

t.test('accepts * alone in each list', async (t) => {
  t.ok(schema.safeParse({ allowOrigins: ['*'], allowMethods: ['*'], allowHeaders: ['*'], exposeHeaders: ['*'] }).success)
  t.ok(schema.safeParse({ allowOrigins: ['https://a.example'], allowCredentials: true, allowHeaders: ['*'], allowMethods: ['*'] }).success,
    'allowHeaders/allowMethods * are echoed, so they work with credentials')
})

t.test('rejects unknown keys', async (t) => {
  t.same(issues({ allowOrigin: ['*'] }), [{ path: [], code: 'unrecognized_keys' }])
  t.same(issues({ credentials: true }), [{ path: [], code: 'unrecognized_keys' }])
})

t.test('rejects origins that are not origins', async (t) => {
  t.same(paths({ allowOrigins: ['https://a.example/'] }), [['allowOrigins', 0]], 'trailing slash')
  t.same(paths({ allowOrigins: ['https://a.example', 'https://a.example/app'] }), [['allowOrigins', 1]], 'path')
  t.same(paths({ allowOrigins: ['a.example'] }), [['allowOrigins', 0]], 'no scheme')
  t.same(paths({ allowOrigins: ['https://u:p@a.example'] }), [['allowOrigins', 0]], 'userinfo')
  t.same(paths({ allowOrigins: ['null'] }), [['allowOrigins', 0]], 'the opaque origin')
  t.same(paths({ allowOrigins: [] }), [['allowOrigins']], 'empty list')
  t.same(paths({ allowOrigins: 'https://a.example' }), [['allowOrigins']], 'not a list')
})

t.test('rejects wildcards anywhere but the whole leftmost label', async (t) => {
  t.same(paths({ allowOrigins: ['https://a.*.example'] }), [['allowOrigins', 0]])
  t.same(paths({ allowOrigins: ['https://*example.com'] }), [['allowOrigins', 0]])
  t.same(paths({ allowOrigins: ['https://*.*.example.com'] }), [['allowOrigins', 0]])
  t.same(paths({ allowOrigins: ['*://a.example.com'] }), [['allowOrigins', 0]])
  t.same(paths({ allowOrigins: ['https://*.com'] }), [['allowOrigins', 0]], 'a whole TLD')
})

t.test('rejects * mixed with other entries', async (t) => {
  t.same(paths({ allowOrigins: ['https://a.example', '*'] }), [['allowOrigins', 1]])
  t.same(paths({ allowHeaders: ['x-a', '*'] }), [['allowHeaders', 1]])
  t.same(paths({ allowMethods: ['*', 'GET'] }), [['allowMethods', 0]])
  t.same(paths({ exposeHeaders: ['*', 'x-b'] }), [['exposeHeaders', 0]])
})

t.test('rejects bad header names and methods', async (t) => {
  t.same(paths({ allowHeaders: ['x-ok', 'x bad'] }), [['allowHeaders', 1]])
  t.same(paths({ exposeHeaders: ['x:y'] }), [['exposeHeaders', 0]])
  t.same(paths({ allowMethods: ['GET', 'BAD METHOD'] }), [['allowMethods', 1]])
  t.same(paths({ allowMethods: [] }), [['allowMethods']])
})

t.test('rejects a bad maxAge', async (t) => {
  t.same(paths({ maxAge: -1 }), [['maxAge']])
  t.same(paths({ maxAge: 1.5 }), [['maxAge']])
  t.same(paths({ maxAge: 86401 }), [['maxAge']])
  t.same(paths({ maxAge: '10s' }), [['maxAge']])
})

t.test('rejects credentials with a * origin, with a message that says why', async (t) => {
  const r = schema.safeParse({ allowCredentials: true, allowOrigins: ['*'] })
  t.notOk(r.success)
  const issue = r.success ? undefined : r.error.issues[0]
  t.same(issue?.path, ['allowCredentials'])
  t.match(issue?.message, /Access-Control-Allow-Origin: \*/)
  t.same(paths({ allowCredentials: true }), [['allowCredentials']], 'the default origins are *')
})

t.test('rejects credentials with * exposed headers', async (t) => {
  t.same(paths({ allowCredentials: true, allowOrigins: ['https://a.example'], exposeHeaders: ['*'] }), [['exposeHeaders']])
})
