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
    mode: 'block',
    paranoiaLevel: 1,
    anomalyThreshold: 5,
    disabledRules: [],
    disabledFamilies: [],
    exclusions: [],
    maxBodySize: 65536,
    onOversizedBody: 'allow',
    maxDecodeRounds: 3,
    maxJsonDepth: 32,
    limits: { headerLength: 8192, headerCount: 100, args: 512 },
  })
})

t.test('accepts a full config; sizes as strings; header targets lower-cased', async (t) => {
  const c = schema.parse({
    mode: 'detect',
    paranoiaLevel: 3,
    anomalyThreshold: 10,
    disabledRules: [1509, 1207],
    disabledFamilies: ['scanner'],
    exclusions: [
      { target: 'query:q', ruleIds: [1602] },
      { target: 'body:comment', families: ['xss', 'sqli'] },
      { target: 'header:User-Agent', families: ['scanner'] },
      { target: 'cookie:session', ruleIds: [1604], families: ['code'] },
      { target: 'path', ruleIds: [1204] },
      { target: 'body:items.*', families: ['code'] },
    ],
    maxBodySize: '128kb',
    onOversizedBody: 'block',
    maxDecodeRounds: 2,
    maxJsonDepth: 10,
    limits: { headerLength: 4096 },
  })
  t.equal(c.maxBodySize, 128000)
  t.equal(c.exclusions[2]?.target, 'header:user-agent')
  t.equal(c.exclusions[0]?.target, 'query:q', 'parameter names keep their case')
  t.same(c.limits, { headerLength: 4096, headerCount: 100, args: 512 })
})

t.test('rejects unknown keys, at every level', async (t) => {
  t.same(issues({ paranoia: 2 }), [{ path: [], code: 'unrecognized_keys' }])
  t.same(issues({ limits: { headerSize: 1 } }), [{ path: ['limits'], code: 'unrecognized_keys' }])
  t.same(issues({ exclusions: [{ target: 'path', ruleIds: [1204], rules: [1] }] }), [{ path: ['exclusions', 0], code: 'unrecognized_keys' }])
})

t.test('rejects bad enums and numbers with their paths', async (t) => {
  t.same(paths({ mode: 'log' }), [['mode']])
  t.same(paths({ paranoiaLevel: 0 }), [['paranoiaLevel']])
  t.same(paths({ paranoiaLevel: 5 }), [['paranoiaLevel']])
  t.same(paths({ paranoiaLevel: 1.5 }), [['paranoiaLevel']])
  t.same(paths({ anomalyThreshold: 0 }), [['anomalyThreshold']])
  t.same(paths({ onOversizedBody: 'drop' }), [['onOversizedBody']])
  t.same(paths({ maxBodySize: '1 lightyear' }), [['maxBodySize']])
  t.same(paths({ maxBodySize: '17mib' }), [['maxBodySize']], 'the body is buffered: bounded')
  t.same(paths({ maxDecodeRounds: 0 }), [['maxDecodeRounds']])
  t.same(paths({ disabledFamilies: ['sql'] }), [['disabledFamilies', 0]])
})

t.test('rejects rule ids that do not exist', async (t) => {
  t.same(paths({ disabledRules: [1601, 9999] }), [['disabledRules', 1]])
  t.same(paths({ disabledRules: ['1601'] }), [['disabledRules', 0]])
  t.same(paths({ exclusions: [{ target: 'query:q', ruleIds: [42] }] }), [['exclusions', 0, 'ruleIds', 0]])
  const r = schema.safeParse({ disabledRules: [9999] })
  t.match(r.success ? '' : r.error.issues[0]?.message, /9999/)
})

t.test('rejects exclusions with a bad target or nothing to exclude', async (t) => {
  t.same(paths({ exclusions: [{ target: 'query', ruleIds: [1602] }] }), [['exclusions', 0, 'target']])
  t.same(paths({ exclusions: [{ target: 'param:q', ruleIds: [1602] }] }), [['exclusions', 0, 'target']])
  t.same(paths({ exclusions: [{ target: 'query:a b', ruleIds: [1602] }] }), [['exclusions', 0, 'target']])
  t.same(paths({ exclusions: [{ target: 'query:q' }] }), [['exclusions', 0, 'ruleIds']])
  t.same(paths({ exclusions: [{ target: 'query:q', ruleIds: [] }] }), [['exclusions', 0, 'ruleIds']])
  t.same(paths({ exclusions: [{ target: 'query:q', families: ['nope'] }] }), [['exclusions', 0, 'families', 0]])
})

t.test('every field is described', async (t) => {
  for (const [key, field] of Object.entries(schema.shape)) t.ok(field.description !== undefined && field.description.length > 10, key)
})
