import t from 'tap'
import { fileURLToPath } from 'node:url'
import { ConfigError } from '../../src/errors.ts'
import { loadConfigFile, parseConfig } from '../../src/config/load.ts'

/**
 * Every malformed config names the path and what was expected there, and (for
 * a file the parser could read) the line. One row per mistake a person makes.
 */
interface Case {
  name: string
  /** Inline document, its lines joined; or a fixture file read through loadConfigFile. */
  lines?: string[]
  fixture?: string
  /** Decides the parser: `.json` or YAML. */
  file?: string
  path: string
  expected: string[]
  line: number | undefined
}

/** Lines 1-4: a valid cluster, so route cases fail only where they mean to. */
const CLUSTER = ['clusters:', '  - name: users', '    endpoints:', '      - url: http://127.0.0.1:9001']
/** Lines 5-7: the start of a route on that cluster. */
const ROUTE = [...CLUSTER, 'routes:', '  - name: r', '    cluster: users']

const cases: Case[] = [
  {
    name: 'unknown top-level key (a typo)',
    fixture: 'unknown-key.yaml',
    path: 'lisen',
    expected: ['no key "lisen" here', 'did you mean "listen"?', 'known keys: listen, admin, workers'],
    line: 2,
  },
  {
    name: 'unknown key in listen',
    lines: ['listen:', '  host: 0.0.0.0', '  prot: 8080'],
    path: 'listen.prot',
    expected: ['no key "prot" here', 'did you mean "port"?', 'known keys: host, port'],
    line: 3,
  },
  {
    name: 'port out of range',
    lines: ['listen:', '  port: 70000'],
    path: 'listen.port',
    expected: ['a number <= 65535', '(got 70000)'],
    line: 2,
  },
  {
    name: 'port as a string',
    lines: ['admin:', '  port: "9901"'],
    path: 'admin.port',
    expected: ['a number (got "9901")'],
    line: 2,
  },
  {
    name: 'a YAML 1.1 boolean is a string in YAML 1.2',
    lines: ['admin:', '  enabled: yes'],
    path: 'admin.enabled',
    expected: ['true or false (got "yes")'],
    line: 2,
  },
  {
    name: 'workers neither auto nor a number',
    lines: ['workers: many'],
    path: 'workers',
    expected: ['"auto" or a number (got "many")'],
    line: 1,
  },
  {
    name: 'cluster without endpoints: reported at the cluster',
    lines: ['clusters:', '  - name: users', 'routes: []'],
    path: 'clusters[0].endpoints',
    expected: ['a list (missing)'],
    line: 2,
  },
  {
    name: 'cluster with an empty endpoint list',
    lines: ['clusters:', '  - name: users', '    endpoints: []'],
    path: 'clusters[0].endpoints',
    expected: ['at least one endpoint'],
    line: 3,
  },
  {
    name: 'cluster name with a space',
    lines: ['clusters:', '  - name: user service', '    endpoints: [{ url: "http://a" }]'],
    path: 'clusters[0].name',
    expected: ['a name of letters, digits, _ . -'],
    line: 2,
  },
  {
    name: 'endpoint url that is not http(s)',
    lines: ['clusters:', '  - name: users', '    endpoints:', '      - url: ftp://files.example'],
    path: 'clusters[0].endpoints[0].url',
    expected: ['an http:// or https:// URL', '(got "ftp://files.example")'],
    line: 4,
  },
  {
    name: 'endpoint weight of 0',
    lines: [...CLUSTER, '        weight: 0'],
    path: 'clusters[0].endpoints[0].weight',
    expected: ['a number >= 1 (got 0)'],
    line: 5,
  },
  {
    name: 'unknown load-balancer policy',
    lines: [...CLUSTER, '    loadBalancer:', '      policy: fastest'],
    path: 'clusters[0].loadBalancer.policy',
    expected: ['one of "round_robin", "weighted", "least_request", "random", "consistent_hash"', '(got "fastest")'],
    line: 6,
  },
  {
    name: 'load balancer without a policy',
    lines: [...CLUSTER, '    loadBalancer: {}'],
    path: 'clusters[0].loadBalancer.policy',
    expected: ['one of "round_robin"', '(missing)'],
    line: 5,
  },
  {
    name: 'consistent_hash on an unknown source',
    lines: [...CLUSTER, '    loadBalancer:', '      policy: consistent_hash', '      hashOn: { by: moon }'],
    path: 'clusters[0].loadBalancer.hashOn.by',
    expected: ['one of "header", "cookie", "ip"', '(got "moon")'],
    line: 7,
  },
  {
    name: 'consistent_hash by header without the header',
    lines: [...CLUSTER, '    loadBalancer:', '      policy: consistent_hash', '      hashOn:', '        by: header'],
    path: 'clusters[0].loadBalancer.hashOn.header',
    expected: ['a string (missing)'],
    line: 7,
  },
  {
    name: 'duplicate cluster names',
    lines: [...CLUSTER, '  - name: users', '    endpoints: [{ url: "http://127.0.0.1:9002" }]'],
    path: 'clusters[1].name',
    expected: ['a unique cluster name ("users" is used twice)'],
    line: 5,
  },
  {
    name: 'route naming an undeclared cluster',
    lines: [...CLUSTER, 'routes:', '  - name: r', '    cluster: orders'],
    path: 'routes[0].cluster',
    expected: ['the name of a declared cluster ("orders" is not one of: users)'],
    line: 7,
  },
  {
    name: 'unknown plugin name',
    lines: [...ROUTE, '    plugins:', '      - name: headers', '      - name: no-such-plugin', '        config: {}'],
    path: 'routes[0].plugins[1].name',
    expected: ['one of "headers", "cors"', '(got "no-such-plugin")'],
    line: 10,
  },
  {
    name: 'plugin entry without a name',
    lines: [...ROUTE, '    plugins:', '      - config: {}'],
    path: 'routes[0].plugins[0].name',
    expected: ['one of "headers"', '(missing)'],
    line: 9,
  },
  {
    name: 'unknown key in a known plugin\'s config',
    lines: [...ROUTE, '    plugins:', '      - name: headers', '        config:', '          nope: 1'],
    path: 'routes[0].plugins[0].config.nope',
    expected: ['no key "nope" here', 'known keys: request, response'],
    line: 11,
  },
  {
    name: 'invalid pathRegex',
    lines: [...ROUTE, '    match:', '      pathRegex: "/users/(\\\\d+"'],
    path: 'routes[0].match.pathRegex',
    expected: ['a valid JavaScript regular expression'],
    line: 9,
  },
  {
    name: 'both path and pathPrefix',
    lines: [...ROUTE, '    match:', '      path: /users', '      pathPrefix: /users/'],
    path: 'routes[0].match',
    expected: ['at most one of path, pathPrefix, pathRegex'],
    line: 8,
  },
  {
    name: 'path not starting with /',
    lines: [...ROUTE, '    match: { pathPrefix: users }'],
    path: 'routes[0].match.pathPrefix',
    expected: ['a string starting with "/" (got "users")'],
    line: 8,
  },
  {
    name: 'methods with a bad verb',
    lines: [...ROUTE, '    match:', '      methods: [GET, FETCH]'],
    path: 'routes[0].match.methods[1]',
    expected: ['one of "GET", "HEAD", "POST"', '(got "FETCH")'],
    line: 9,
  },
  {
    name: 'headers match with two kinds',
    lines: [...ROUTE, '    match:', '      headers:', '        x-tenant: { exact: a, prefix: b }'],
    path: 'routes[0].match.headers["x-tenant"]',
    expected: ['exactly one of exact, prefix, regex, present'],
    line: 10,
  },
  {
    name: 'headers match with a misspelt kind',
    lines: [...ROUTE, '    match:', '      headers:', '        x-tenant:', '          exakt: a'],
    path: 'routes[0].match.headers["x-tenant"].exakt',
    expected: ['no key "exakt" here', 'did you mean "exact"?'],
    line: 11,
  },
  {
    name: 'rewrite without match.pathPrefix',
    lines: [...ROUTE, '    rewrite: { pathPrefix: /v2 }'],
    path: 'routes[0].rewrite',
    expected: ['match.pathPrefix to be set'],
    line: 8,
  },
  {
    name: 'cache before an auth plugin (it would serve stored responses to anyone)',
    lines: [...ROUTE, '    plugins:', '      - name: headers', '      - name: cache', '      - name: api-key', "        config: { keys: [{ id: a, hash: 'sha256:" + '0'.repeat(64) + "' }] }"],
    path: 'routes[0].plugins[1]',
    expected: ['cache after the route\'s authentication', 'cache at plugins[1]', 'before api-key at plugins[2]'],
    line: 10,
  },
  {
    name: 'bad duration string',
    lines: ['limits:', '  headersTimeout: 5 secs'],
    path: 'limits.headersTimeout',
    expected: ['a duration', '250ms, 5s', '(got "5 secs")'],
    line: 2,
  },
  {
    name: 'bad size string',
    lines: ['limits:', '  maxHeaderSize: 16k', '  maxBodySize: ten megs'],
    path: 'limits.maxHeaderSize',
    expected: ['a size in bytes', '64kb, 10mib', '(got "16k")'],
    line: 2,
  },
  {
    name: 'the document is a list',
    lines: ['- listen: {}'],
    path: '',
    expected: ['a map (got a list)'],
    line: 1,
  },
  {
    name: 'YAML syntax error',
    fixture: 'syntax.yaml',
    path: '',
    expected: ['valid YAML: '],
    line: 7,
  },
  {
    name: 'YAML duplicate key',
    lines: ['listen:', '  port: 1', 'admin: {}', 'listen: {}'],
    path: '',
    expected: ['valid YAML: Map keys must be unique'],
    line: 4,
  },
  {
    name: 'several YAML documents',
    lines: ['listen: {}', '---', 'admin: {}'],
    path: '',
    expected: ['one YAML document'],
    line: 2,
  },
  {
    name: 'empty file (comments only)',
    fixture: 'empty.yaml',
    path: '',
    expected: ['a config document (the file is empty'],
    line: 1,
  },
  {
    name: 'empty file',
    lines: [''],
    path: '',
    expected: ['the file is empty'],
    line: 1,
  },
  {
    name: 'missing file',
    fixture: 'missing.yaml',
    path: '',
    expected: ['a readable config file (ENOENT: no such file or directory)'],
    line: undefined,
  },
  {
    name: 'JSON syntax error (trailing comma)',
    fixture: 'syntax.json',
    path: '',
    expected: ['valid JSON: '],
    line: 4,
  },
  {
    name: 'JSON schema error, located by line',
    file: 'inline.json',
    lines: ['{', '  "listen": {', '    "port": -1', '  }', '}'],
    path: 'listen.port',
    expected: ['a number >= 0 (got -1)'],
    line: 3,
  },
  {
    name: 'JSON unknown key',
    file: 'inline.json',
    lines: ['{', '  "clusters": [', '    { "name": "a", "endpoints": [{ "url": "http://a" }], "lb": {} }', '  ]', '}'],
    path: 'clusters[0].lb',
    expected: ['no key "lb" here', 'known keys: name, endpoints, loadBalancer, timeouts, connectionsPerEndpoint'],
    line: 3,
  },
]

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url))

for (const c of cases) {
  t.test(c.name, async (t) => {
    const file = c.fixture === undefined ? (c.file ?? 'inline.yaml') : fixture(c.fixture)
    const err: unknown = c.fixture === undefined
      ? await Promise.resolve().then(() => parseConfig((c.lines ?? []).join('\n'), file)).then(() => undefined, (e: unknown) => e)
      : await loadConfigFile(file).then(() => undefined, (e: unknown) => e)
    if (!(err instanceof ConfigError)) {
      t.fail(`expected a ConfigError, got ${err === undefined ? 'a valid config' : String(err)}`)
      return
    }
    t.equal(err.code, 'CONFIG_INVALID')
    t.equal(err.file, file)
    const [issue] = err.issues
    t.equal(issue?.path, c.path, 'path')
    for (const e of c.expected) t.match(issue?.expected, e, `expected mentions ${e}`)
    t.equal(issue?.line, c.line, 'line')
    // The rendered message is what the CLI prints: file:line: path: expected.
    t.match(err.message, `${file}${c.line === undefined ? '' : `:${c.line}`}: ${c.path === '' ? '(document)' : c.path}: `)
  })
}

t.test('every mistake in a document is reported, in document order', async (t) => {
  const err = (() => {
    try {
      parseConfig(['listen:', '  port: -1', 'admin:', '  bogus: 1', '  other: 2'].join('\n'), 'inline.yaml')
    } catch (e) { return e }
  })()
  t.ok(err instanceof ConfigError)
  t.same((err as ConfigError).issues.map((i) => [i.path, i.line]), [['listen.port', 2], ['admin.bogus', 4], ['admin.other', 5]])
})

t.test('at least 20 malformed configs are covered', async (t) => {
  t.ok(cases.length >= 20, `${cases.length} cases`)
})
