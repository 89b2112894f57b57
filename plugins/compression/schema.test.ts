import t from 'tap'
import { schema, DEFAULT_CONTENT_TYPES } from './schema.ts'
import { configSchema } from '../../src/config/schema.ts'

function paths (input: unknown): Array<Array<string | number>> {
  const r = schema.safeParse(input)
  return r.success ? [] : r.error.issues.map((i) => i.path as Array<string | number>)
}

t.test('accepts an empty config and fills every default', async (t) => {
  t.same(schema.parse({}), {
    algorithms: ['br', 'zstd', 'gzip'],
    levels: { gzip: 6, br: 4, zstd: 3 },
    minSize: 1024,
    contentTypes: DEFAULT_CONTENT_TYPES,
    eventStreams: 'skip',
  })
  t.same(schema.parse({ levels: { br: 5 } }).levels, { gzip: 6, br: 5, zstd: 3 }, 'one level set, the others default')
})

t.test('accepts every documented shape', async (t) => {
  const c = schema.parse({
    algorithms: ['gzip'],
    levels: { gzip: 9, br: 11, zstd: 19 },
    minSize: '2kib',
    contentTypes: ['Text/HTML', 'application/*', 'application/*+json', '*/*+xml', '*/*', ' image/svg+xml '],
    eventStreams: 'flush',
  })
  t.equal(c.minSize, 2048)
  t.same(c.contentTypes, ['text/html', 'application/*', 'application/*+json', '*/*+xml', '*/*', 'image/svg+xml'], 'trimmed and lower-cased')
  t.equal(schema.parse({ minSize: 0 }).minSize, 0)
})

t.test('refuses what would not work, with exact paths', async (t) => {
  t.same(paths({ algorithms: [] }), [['algorithms']])
  t.same(paths({ algorithms: ['deflate'] }), [['algorithms', 0]])
  t.same(paths({ algorithms: ['gzip', 'br', 'gzip'] }), [['algorithms']], 'each once')
  t.same(paths({ algorithms: ['identity'] }), [['algorithms', 0]], 'identity is implicit')
  t.same(paths({ levels: { gzip: 0 } }), [['levels', 'gzip']])
  t.same(paths({ levels: { gzip: 10 } }), [['levels', 'gzip']])
  t.same(paths({ levels: { br: 12 } }), [['levels', 'br']])
  t.same(paths({ levels: { zstd: 20 } }), [['levels', 'zstd']], 'the ultra levels are for offline use')
  t.same(paths({ levels: { zstd: 2.5 } }), [['levels', 'zstd']])
  t.same(paths({ levels: { deflate: 6 } }), [['levels']], 'unknown key')
  t.same(paths({ minSize: -1 }), [['minSize']])
  t.same(paths({ minSize: '1 parsec' }), [['minSize']])
  t.same(paths({ contentTypes: [] }), [['contentTypes']])
  for (const bad of ['text', 'text/html; charset=utf-8', '*/json', '*', 'text/', '/json', 'text/ht ml', '*/*+']) {
    t.same(paths({ contentTypes: ['text/*', bad] }), [['contentTypes', 1]], JSON.stringify(bad))
  }
  t.same(paths({ eventStreams: 'compress' }), [['eventStreams']])
  t.same(paths({ algorithm: ['br'] }), [[]], 'a typo is an error')
})

t.test('errors name the route and plugin in a full config', async (t) => {
  const r = configSchema.safeParse({
    clusters: [{ name: 'c', endpoints: [{ url: 'http://127.0.0.1:1' }] }],
    routes: [{ name: 'r', cluster: 'c', plugins: [{ name: 'compression', config: { levels: { br: 99 } } }] }],
  })
  t.notOk(r.success)
  t.same(r.error?.issues.map((i) => i.path), [['routes', 0, 'plugins', 0, 'config', 'levels', 'br']])
})
