import t from 'tap'
import type { Test } from 'tap'
import { fileURLToPath } from 'node:url'
import { ConfigError } from '../../src/errors.ts'
import { loadConfigFile, parseConfig } from '../../src/config/load.ts'

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url))

const CLUSTER = 'clusters:\n  - name: users\n    endpoints:\n'

function configError (t: Test, fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (err) {
    t.ok(err instanceof ConfigError, 'throws a ConfigError')
    return err as ConfigError
  }
  t.fail('expected a ConfigError')
  throw new Error('unreachable')
}

t.test('a YAML file loads with defaults filled in', async (t) => {
  const config = await loadConfigFile(fixture('valid.yaml'))
  t.same(config.listen, { host: '0.0.0.0', port: 8080, h2c: false })
  t.same(config.admin, { enabled: true, host: '127.0.0.1', port: 9901 })
  t.equal(config.workers, 1)
  t.equal(config.limits.headersTimeout, 10_000)
  t.equal(config.shutdown.drainTimeout, 30_000)
  const [cluster] = config.clusters
  t.same(cluster?.endpoints, [{ url: 'http://127.0.0.1:9001', weight: 1 }, { url: 'http://127.0.0.1:9002', weight: 2 }])
  t.same(cluster?.loadBalancer, { policy: 'weighted' })
  t.same(cluster?.timeouts, { connect: 2_000, request: 30_000, idle: 60_000, keepAlive: 60_000 })
  const [route] = config.routes
  t.same(route?.match, { pathPrefix: '/users', methods: ['GET', 'POST'] })
  t.same(route?.plugins.map((p) => p.name), ['headers', 'cors'])
  t.same(route?.plugins[0]?.config, { request: { set: { 'x-gateway': 'outrider' }, add: {}, remove: [] }, response: { set: {}, add: {}, remove: [] } })
})

t.test('a JSON file loads with units converted', async (t) => {
  const config = await loadConfigFile(fixture('valid.json'))
  t.same(config.listen, { host: '0.0.0.0', port: 8081, h2c: false })
  t.equal(config.limits.maxBodySize, 1024 * 1024)
  t.equal(config.limits.headersTimeout, 5_000)
  t.same(config.clusters[0]?.loadBalancer, { policy: 'consistent_hash', hashOn: { by: 'header', header: 'x-user' } })
  t.same(config.routes[0]?.match, {})
  t.same(config.routes[0]?.plugins, [])
})

t.test('an empty map is all defaults', async (t) => {
  const config = parseConfig('{}\n', 'inline.yaml')
  t.same(config.clusters, [])
  t.same(config.routes, [])
  t.equal(config.listen.port, 8080)
})

t.test('YAML anchors and aliases resolve', async (t) => {
  const config = parseConfig([
    'clusters:',
    '  - name: a',
    '    endpoints: &eps',
    '      - url: http://10.0.0.1',
    '  - name: b',
    '    endpoints: *eps',
  ].join('\n'), 'inline.yaml')
  t.same(config.clusters.map((c) => c.endpoints[0]?.url), ['http://10.0.0.1', 'http://10.0.0.1'])
})

t.test('the result is deep-frozen', async (t) => {
  const config = parseConfig(`${CLUSTER}      - url: http://127.0.0.1:9001\nroutes:\n  - { name: r, cluster: users }\n`, 'inline.yaml')
  t.ok(Object.isFrozen(config))
  t.ok(Object.isFrozen(config.listen))
  t.ok(Object.isFrozen(config.clusters))
  t.ok(Object.isFrozen(config.clusters[0]?.endpoints[0]))
  t.ok(Object.isFrozen(config.routes[0]?.match))
  t.throws(() => { (config.listen as { port: number }).port = 1 }, TypeError)
  t.throws(() => { (config.clusters as unknown[]).push({}) }, TypeError)
})

t.test('${ENV} substitution', async (t) => {
  const env = { UPSTREAM: 'http://10.1.2.3:9000', EMPTY: '', PORT: '8443', TOKEN: 'a: {b}, "c"' }

  t.test('a set variable, inside a longer string too', async (t) => {
    const config = parseConfig(`listen: { host: "\${HOST:-127.0.0.1}" }\n${CLUSTER}      - url: \${UPSTREAM}\n      - url: http://\${HOST:-localhost}:81\n`, 'inline.yaml', env)
    t.equal(config.listen.host, '127.0.0.1')
    t.same(config.clusters[0]?.endpoints.map((e) => e.url), ['http://10.1.2.3:9000', 'http://localhost:81'])
  })

  t.test('the default applies when unset or empty', async (t) => {
    const config = parseConfig(`${CLUSTER}      - url: \${NOT_SET:-http://a.example}\n      - url: \${EMPTY:-http://b.example}\n`, 'inline.yaml', env)
    t.same(config.clusters[0]?.endpoints.map((e) => e.url), ['http://a.example', 'http://b.example'])
  })

  t.test('an unquoted reference alone is typed like the literal; a quoted one stays a string', async (t) => {
    t.equal(parseConfig('listen:\n  port: ${PORT}\n', 'inline.yaml', env).listen.port, 8443)
    t.equal(parseConfig('listen:\n  port: ${NOT_SET:-9000}\n', 'inline.yaml', env).listen.port, 9000)
    t.equal(parseConfig('admin:\n  enabled: ${NOT_SET:-false}\n', 'inline.yaml', env).admin.enabled, false)
    const err = configError(t, () => parseConfig('listen:\n  port: "${PORT}"\n', 'inline.yaml', env))
    t.equal(err.path, 'listen.port')
    t.match(err.expected, 'a number')
    t.notMatch(err.expected, '8443', 'substituted values are not echoed: they may be secrets')
  })

  t.test('an unquoted reference inside { } is a YAML error with a hint', async (t) => {
    const err = configError(t, () => parseConfig('listen: { port: 1 }\nadmin: { port: ${PORT} }\n', 'inline.yaml', env))
    t.equal(err.path, '')
    t.equal(err.issues[0]?.line, 2)
    t.match(err.expected, /^valid YAML: .*quote/)
  })

  t.test('a value cannot change the document structure', async (t) => {
    const config = parseConfig('admin:\n  host: ${TOKEN}\n', 'inline.yaml', env)
    t.equal(config.admin.host, 'a: {b}, "c"')
  })

  t.test('$${ is a literal ${', async (t) => {
    const text = `${CLUSTER}      - url: http://a.example\nroutes:\n  - name: r\n    cluster: users\n    plugins:\n      - name: headers\n        config: { request: { set: { x-id: "$\${request_id}" } } }\n`
    const config = parseConfig(text, 'inline.yaml', env)
    t.same(config.routes[0]?.plugins[0]?.config, { request: { set: { 'x-id': '${request_id}' }, add: {}, remove: [] }, response: { set: {}, add: {}, remove: [] } })
  })

  t.test('JSON strings are substituted too', async (t) => {
    const config = parseConfig('{ "clusters": [{ "name": "u", "endpoints": [{ "url": "${UPSTREAM}" }] }] }', 'inline.json', env)
    t.equal(config.clusters[0]?.endpoints[0]?.url, 'http://10.1.2.3:9000')
  })

  t.test('an unset variable without a default names the variable, the path and the line', async (t) => {
    const err = configError(t, () => parseConfig(`${CLUSTER}      - url: http://a.example\n      - url: \${UPSTREAM_2}\n`, 'inline.yaml', env))
    t.equal(err.code, 'CONFIG_INVALID')
    t.equal(err.file, 'inline.yaml')
    t.same(err.issues, [{ path: 'clusters[0].endpoints[1].url', expected: err.expected, line: 5 }])
    t.match(err.expected, 'environment variable UPSTREAM_2 to be set')
    t.match(err.message, 'inline.yaml:5: clusters[0].endpoints[1].url: the environment variable UPSTREAM_2')
  })

  t.test('an unset variable in JSON', async (t) => {
    const err = configError(t, () => parseConfig('{\n  "admin": {\n    "host": "${NOPE}"\n  }\n}\n', 'inline.json', env))
    t.same(err.issues[0], { path: 'admin.host', expected: err.expected, line: 3 })
    t.match(err.expected, 'NOPE')
  })

  t.test('a malformed reference is an error, not text', async (t) => {
    const err = configError(t, () => parseConfig('admin:\n  host: "${not a name}"\n', 'inline.yaml', env))
    t.equal(err.path, 'admin.host')
    t.match(err.expected, '${NAME:-default}')
    t.equal(err.issues[0]?.line, 2)
  })

  t.test('keys are never substituted', async (t) => {
    const err = configError(t, () => parseConfig('${PORT}: 1\n', 'inline.yaml', env))
    t.equal(err.path, '["${PORT}"]')
  })
})

t.test('loadConfigFile: an unreadable file names the file and the reason', async (t) => {
  const missing = fixture('does-not-exist.yaml')
  const err = await loadConfigFile(missing).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof ConfigError)
  const e = err as ConfigError
  t.equal(e.code, 'CONFIG_INVALID')
  t.equal(e.file, missing)
  t.equal(e.path, '')
  t.match(e.expected, 'ENOENT: no such file or directory')
  t.match(e.message, missing)

  const dir = await loadConfigFile(fixture('')).then(() => undefined, (e: unknown) => e)
  t.ok(dir instanceof ConfigError)
  t.match((dir as ConfigError).expected, 'EISDIR')
})
