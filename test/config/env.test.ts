import t from 'tap'
import { expandEnv, isWholeReference } from '../../src/config/env.ts'

const env = { HOST: 'db.internal', PORT: '5432', EMPTY: '' }

t.test('references are replaced', async (t) => {
  t.same(expandEnv('postgres://${HOST}:${PORT}/app', env), { value: 'postgres://db.internal:5432/app' })
  t.same(expandEnv('no references here', env), { value: 'no references here' })
  t.same(expandEnv('$HOST and $ alone stay', env), { value: '$HOST and $ alone stay' })
})

t.test('defaults apply when unset or empty, like the shell\'s :-', async (t) => {
  t.same(expandEnv('${NOPE:-http://127.0.0.1:3000}', env), { value: 'http://127.0.0.1:3000' })
  t.same(expandEnv('${EMPTY:-fallback}', env), { value: 'fallback' })
  t.same(expandEnv('${HOST:-fallback}', env), { value: 'db.internal' })
  t.same(expandEnv('${NOPE:-}', env), { value: '' })
  t.same(expandEnv('${EMPTY}', env), { value: '' }, 'set but empty, without a default, is the empty string')
})

t.test('$${ is a literal ${', async (t) => {
  t.same(expandEnv('$${HOST}', env), { value: '${HOST}' })
  t.same(expandEnv('$${HOST} is ${HOST}', env), { value: '${HOST} is db.internal' })
  t.same(expandEnv('$${', env), { value: '${' })
})

t.test('an unset variable without a default is an error naming it', async (t) => {
  const r = expandEnv('a ${HOST} and a ${SECRET_TOKEN}', env)
  t.ok('error' in r)
  t.match((r as { error: string }).error, 'the environment variable SECRET_TOKEN to be set')
})

t.test('a malformed reference is an error', async (t) => {
  for (const s of ['${', '${HOST', '${1ABC}', '${A B}', '${HOST:default}']) {
    const r = expandEnv(s, env)
    t.ok('error' in r, s)
  }
})

t.test('isWholeReference', async (t) => {
  t.ok(isWholeReference('${PORT}'))
  t.ok(isWholeReference('${PORT:-8080}'))
  t.notOk(isWholeReference('${PORT}0'))
  t.notOk(isWholeReference('x${PORT}'))
  t.notOk(isWholeReference('$${PORT}'))
})

t.test('lower-case ${name} is left for plugins that expand per request', async (t) => {
  t.same(expandEnv('id=${request_id} ip=${client_ip} host=${HOST}', { HOST: 'h' }), { value: 'id=${request_id} ip=${client_ip} host=h' })
  t.ok('error' in expandEnv('${Mixed}', {}), 'mixed case is neither: an error, not silently kept')
})
