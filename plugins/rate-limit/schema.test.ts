import t from 'tap'
import { parseConfig } from '../../src/config/load.ts'
import { ConfigError } from '../../src/errors.ts'
import { schema, windowLabel } from './schema.ts'

function issues (input: unknown): Array<{ path: Array<string | number>, message: string }> {
  const r = schema.safeParse(input)
  if (r.success) return []
  return r.error.issues.map((i) => ({ path: i.path as Array<string | number>, message: i.message }))
}

function paths (input: unknown): Array<Array<string | number>> {
  return issues(input).map((i) => i.path)
}

const ONE = [{ points: 10, duration: 1 }]

t.test('the architecture example: points, duration in seconds, key ip', async (t) => {
  t.same(schema.parse({ points: 100, duration: 1, key: 'ip' }), {
    limits: [{ points: 100, duration: 1, name: 'default' }],
    key: [{ by: 'ip' }],
    trustedProxies: [],
    ipv6Subnet: 64,
    overrides: [],
    store: { type: 'memory', maxKeys: 100_000 },
    headersOnAllowed: false,
  })
  t.same(schema.parse({ points: 5, duration: '1m' }).limits, [{ points: 5, duration: 60, name: 'default' }], 'a duration string; key defaults to ip')
  t.same(schema.parse({ points: 5, duration: '1m' }).key, [{ by: 'ip' }])
})

t.test('windows: seconds as numbers, strings with units, whole seconds only', async (t) => {
  const d = (duration: unknown): unknown => schema.safeParse({ points: 1, duration }).data?.limits[0]?.duration
  t.equal(d(1), 1)
  t.equal(d(86_400), 86_400)
  t.equal(d('1s'), 1)
  t.equal(d('90s'), 90)
  t.equal(d('15m'), 900)
  t.equal(d('2h'), 7200)
  t.equal(d('1d'), 86_400)
  t.equal(d('2000ms'), 2)
  for (const bad of [0, 0.5, -1, '1500ms', '500ms', '0s', '1w', '1 s', 's', true, null, 367 * 86_400]) {
    t.same(paths({ points: 1, duration: bad }), [['duration']], JSON.stringify(bad))
  }
  t.match(issues({ points: 1, duration: '1500ms' })[0]?.message, /whole seconds/)
  t.equal(windowLabel(1), '1s')
  t.equal(windowLabel(90), '90s')
  t.equal(windowLabel(120), '2m')
  t.equal(windowLabel(3600), '1h')
  t.equal(windowLabel(172_800), '2d')
})

t.test('the memory store takes windows up to 24 days (its timers cannot wait longer); Redis up to a year', async (t) => {
  t.same(paths({ points: 1, duration: '24d' }), [])
  t.same(paths({ points: 1, duration: '30d' }), [['duration']])
  t.match(issues({ points: 1, duration: '30d' })[0]?.message, /at most 2147483 seconds \(24 days\) with the memory store.*redis/)
  t.same(paths({ limits: [{ points: 1, duration: '1d' }, { points: 5, duration: '30d' }] }), [['limits', 1, 'duration']])
  t.same(paths({ points: 1, duration: '1d', overrides: [{ match: { header: { name: 'x-plan', value: 'pro' } }, limits: [{ points: 9, duration: '30d' }] }] }), [['overrides', 0, 'limits', 0, 'duration']])
  t.same(paths({ points: 1, duration: '30d', store: { type: 'redis', url: 'redis://127.0.0.1:6379' } }), [], 'Redis ends windows itself')
})

t.test('several limits, named by their window unless named', async (t) => {
  const c = schema.parse({ limits: [{ points: 10, duration: '1s' }, { points: 1000, duration: '1d' }] })
  t.same(c.limits, [{ points: 10, duration: 1, name: '1s' }, { points: 1000, duration: 86_400, name: '1d' }])
  const n = schema.parse({ limits: [{ points: 10, duration: 1, name: 'burst' }, { points: 600, duration: '1h', name: 'hourly' }] })
  t.same(n.limits.map((l) => l.name), ['burst', 'hourly'])
  t.same(schema.parse({ limits: [{ points: 3, duration: 60 }] }).limits[0]?.name, 'default', 'a lone limit is "default"')
})

t.test('every key kind, the shorthands and composites', async (t) => {
  const k = (key: unknown): unknown => schema.parse({ limits: ONE, key }).key
  t.same(k('ip'), [{ by: 'ip' }])
  t.same(k('identity'), [{ by: 'identity', missing: 'ip' }])
  t.same(k('route'), [{ by: 'route' }])
  t.same(k({ by: 'ip', trustedProxies: ['10.0.0.0/8', '::1'], ipv6Subnet: 56 }), [{ by: 'ip', trustedProxies: ['10.0.0.0/8', '::1'], ipv6Subnet: 56 }])
  t.same(k({ by: 'header', name: 'X-Tenant' }), [{ by: 'header', name: 'x-tenant', missing: 'ip' }], 'header names lower-cased')
  t.same(k({ by: 'identity', missing: 'skip' }), [{ by: 'identity', missing: 'skip' }])
  t.same(k({ by: 'claim', claim: 'org', missing: 'shared' }), [{ by: 'claim', claim: 'org', missing: 'shared' }])
  t.same(k([{ by: 'identity' }, { by: 'route' }]), [{ by: 'identity', missing: 'ip' }, { by: 'route' }], 'a composite key')
  t.same(k(['ip', { by: 'header', name: 'x-app' }]), [{ by: 'ip' }, { by: 'header', name: 'x-app', missing: 'ip' }], 'shorthands in a list')
})

t.test('overrides, redis stores and the other options', async (t) => {
  const c = schema.parse({
    limits: ONE,
    trustedProxies: ['10.0.0.0/8', '192.168.1.1', 'fd00::/8', '::ffff:172.16.0.0/108'],
    ipv6Subnet: 128,
    scope: 'shared-users',
    overrides: [
      { match: { identity: 'svc-a' }, limits: [{ points: 100, duration: 1 }] },
      { match: { identity: ['svc-b', 'svc-c'] }, limits: [{ points: 50, duration: 1 }, { points: 10_000, duration: '1d' }] },
      { match: { header: { name: 'X-Plan', value: 'gold' } }, limits: [{ points: 30, duration: 1 }] },
    ],
    store: { type: 'redis', url: 'redis://:secret@redis:6379/2' },
    headersOnAllowed: true,
  })
  t.same(c.overrides[0]?.match, { identity: ['svc-a'] })
  t.same(c.overrides[1]?.limits.map((l) => l.name), ['1s', '1d'])
  t.same(c.overrides[2]?.match, { header: { name: 'x-plan', value: 'gold' } })
  t.same(c.store, {
    type: 'redis',
    url: 'redis://:secret@redis:6379/2',
    tls: false,
    keyPrefix: 'outrider:rl',
    connectTimeout: 1000,
    commandTimeout: 250,
    onStoreError: 'local',
    expectedInstances: 1,
  })
  const cluster = schema.parse({ limits: ONE, store: { type: 'redis', cluster: [{ host: 'r1', port: 7000 }, { host: 'r2', port: 7001 }], password: 'p', tls: true, onStoreError: 'deny', expectedInstances: 3, commandTimeout: '50ms' } })
  t.same(cluster.store.type === 'redis' && [cluster.store.cluster, cluster.store.onStoreError, cluster.store.expectedInstances, cluster.store.commandTimeout], [[{ host: 'r1', port: 7000 }, { host: 'r2', port: 7001 }], 'deny', 3, 50])
})

t.test('refuses missing, doubled or half-given limits', async (t) => {
  t.same(paths({}), [['limits']])
  t.same(paths({ points: 10 }), [['duration']])
  t.same(paths({ duration: 1 }), [['points']])
  t.same(paths({ points: 10, duration: 1, limits: ONE }), [['points'], ['duration']])
  t.same(paths({ points: 0, duration: 1 }), [['points']])
  t.same(paths({ points: 1.5, duration: 1 }), [['points']])
  t.same(paths({ points: '10', duration: 1 }), [['points']])
  t.same(paths({ limits: [] }), [['limits']])
  t.same(paths({ limits: [{ points: 10 }] }), [['limits', 0, 'duration']])
  t.same(paths({ limits: [{ points: 10, duration: 1, window: 1 }] }), [['limits', 0]])
  t.same(paths({ limits: [{ points: 10, duration: 1 }, { points: 20, duration: '1s' }] }), [['limits', 1, 'duration']], 'two limits of one window')
  t.same(paths({ limits: [{ points: 10, duration: 1, name: 'a' }, { points: 20, duration: 2, name: 'a' }] }), [['limits', 1, 'name']])
  t.same(paths({ limits: [{ points: 10, duration: 1, name: 'a"b' }] }), [['limits', 0, 'name']], 'a name that would need sf-string escapes')
  t.same(paths({ limits: [{ points: 10, duration: 60 }, { points: 20, duration: '1m' }] }), [['limits', 1, 'duration']])
})

t.test('refuses bad keys at their exact path', async (t) => {
  t.same(paths({ limits: ONE, key: 'nope' }), [['key']])
  t.same(paths({ limits: ONE, key: 'header' }), [['key']], 'header needs a name: no string shorthand')
  t.same(paths({ limits: ONE, key: { by: 'header' } }), [['key', 'name']])
  t.same(paths({ limits: ONE, key: { by: 'header', name: 'Connection' } }), [['key', 'name']])
  t.same(paths({ limits: ONE, key: { by: 'header', name: 'x tenant' } }), [['key', 'name']])
  t.same(paths({ limits: ONE, key: { by: 'cookie' } }), [['key', 'by']])
  t.same(paths({ limits: ONE, key: [{ by: 'ip' }, { by: 'cookie' }] }), [['key', 1, 'by']])
  t.same(paths({ limits: ONE, key: [{ by: 'ip' }, { by: 'claim' }] }), [['key', 1, 'claim']])
  t.same(paths({ limits: ONE, key: [] }), [['key']])
  t.same(paths({ limits: ONE, key: ['ip', 'cookie'] }), [['key', 1]])
  t.same(paths({ limits: ONE, key: { by: 'ip', trustedProxies: ['10.0.0.0/33'] } }), [['key', 'trustedProxies', 0]])
  t.same(paths({ limits: ONE, key: { by: 'ip', extra: true } }), [['key']])
  t.same(paths({ limits: ONE, key: { by: 'identity', missing: 'deny' } }), [['key', 'missing']])
  t.same(paths({ limits: ONE, key: 5 }), [['key']])
})

t.test('refuses bad proxies, overrides and stores', async (t) => {
  for (const bad of ['nope', '10.0.0.0/33', '10.0.0.1/', '300.1.1.1', 'fd00::/129', '[::1]', '10.0.0.0/8/8']) {
    t.same(paths({ limits: ONE, trustedProxies: [bad] }), [['trustedProxies', 0]], bad)
  }
  t.same(paths({ limits: ONE, ipv6Subnet: 0 }), [['ipv6Subnet']])
  t.same(paths({ limits: ONE, scope: 'a b' }), [['scope']])
  t.same(paths({ limits: ONE, overrides: [{ match: {}, limits: ONE }] }), [['overrides', 0, 'match']])
  t.same(paths({ limits: ONE, overrides: [{ match: { identity: 'a', header: { name: 'x', value: 'y' } }, limits: ONE }] }), [['overrides', 0, 'match']])
  t.same(paths({ limits: ONE, overrides: [{ match: { identity: 'a' } }] }), [['overrides', 0, 'limits']])
  t.same(paths({ limits: ONE, overrides: [{ match: { identity: [] }, limits: ONE }] }), [['overrides', 0, 'match', 'identity']])
  t.same(paths({ limits: ONE, overrides: [{ match: { header: { name: 'x' } }, limits: ONE }] }), [['overrides', 0, 'match', 'header', 'value']])
  t.same(paths({ limits: ONE, overrides: [{ match: { identity: 'a' }, limits: [{ points: 1, duration: 1 }, { points: 2, duration: 1 }] }] }), [['overrides', 0, 'limits', 1, 'duration']])
  t.same(paths({ limits: ONE, store: { type: 'mongo' } }), [['store', 'type']])
  t.same(paths({ limits: ONE, store: { type: 'redis' } }), [['store', 'url']], 'neither url nor cluster')
  t.same(paths({ limits: ONE, store: { type: 'redis', url: 'redis://a', cluster: [{ host: 'b', port: 1 }] } }), [['store', 'url']], 'both')
  t.same(paths({ limits: ONE, store: { type: 'redis', url: 'http://redis:6379' } }), [['store', 'url']])
  t.same(paths({ limits: ONE, store: { type: 'redis', cluster: [] } }), [['store', 'cluster']])
  t.same(paths({ limits: ONE, store: { type: 'redis', cluster: [{ host: 'a', port: 0 }] } }), [['store', 'cluster', 0, 'port']])
  t.same(paths({ limits: ONE, store: { type: 'redis', url: 'redis://a', onStoreError: 'maybe' } }), [['store', 'onStoreError']])
  t.same(paths({ limits: ONE, store: { type: 'redis', url: 'redis://a', expectedInstances: 0 } }), [['store', 'expectedInstances']])
  t.same(paths({ limits: ONE, store: { type: 'memory', url: 'redis://a' } }), [['store']])
  t.same(paths({ limits: ONE, store: { type: 'memory', maxKeys: 0 } }), [['store', 'maxKeys']])
  t.same(paths({ limits: ONE, headersOnAllowed: 'yes' }), [['headersOnAllowed']])
  t.same(paths({ limits: ONE, point: 1 }), [[]], 'a typo is an unknown key')
})

t.test('errors name the path inside the whole config document', async (t) => {
  const doc = (config: string): string => `clusters:
  - name: users
    endpoints: [{ url: "http://127.0.0.1:9001" }]
routes:
  - name: users-api
    match: { pathPrefix: /users }
    cluster: users
    plugins:
      - name: rate-limit
        config: ${config}
`
  const ok = parseConfig(doc('{ points: 100, duration: 1, key: ip }'), 'outrider.yaml')
  t.same(ok.routes[0]?.plugins[0]?.config, schema.parse({ points: 100, duration: 1, key: 'ip' }), 'the architecture example is valid as written')
  const cases: Array<[string, string]> = [
    ['{ points: 0, duration: 1 }', 'routes[0].plugins[0].config.points'],
    ['{ points: 10 }', 'routes[0].plugins[0].config.duration'],
    ['{ }', 'routes[0].plugins[0].config.limits'],
    ['{ limits: [{ points: 1, duration: 1 }, { points: 2, duration: 1s }] }', 'routes[0].plugins[0].config.limits[1].duration'],
    ['{ points: 1, duration: 1, key: [ip, { by: header }] }', 'routes[0].plugins[0].config.key[1].name'],
    ['{ points: 1, duration: 1, store: { type: redis, url: "redis://r", onStoreError: fail } }', 'routes[0].plugins[0].config.store.onStoreError'],
  ]
  for (const [config, path] of cases) {
    try {
      parseConfig(doc(config), 'outrider.yaml')
      t.fail(`accepted ${config}`)
    } catch (err) {
      t.ok(err instanceof ConfigError, config)
      t.equal((err as ConfigError).path, path, config)
    }
  }
})
