import t from 'tap'
import { parseConfig } from '../../src/config/load.ts'
import { ConfigError } from '../../src/errors.ts'

/** setTimeout's ceiling (2^31-1 ms, 24.8 days). */
const MAX_DURATION_MS = 2147483647

function issue (yaml: string): { path: string, expected: string } | undefined {
  try {
    parseConfig(yaml, 'units.yaml')
    return undefined
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    return { path: err.path, expected: err.expected }
  }
}

t.test('a duration is at most 2^31-1 ms: a longer Node timer fires after 1 ms', async (t) => {
  t.equal(parseConfig(`shutdown: { drainTimeout: ${MAX_DURATION_MS} }\n`, 'units.yaml').shutdown.drainTimeout, MAX_DURATION_MS)
  t.equal(parseConfig('shutdown: { drainTimeout: 596h }\n', 'units.yaml').shutdown.drainTimeout, 596 * 3_600_000)
  for (const v of ['600h', '597h', String(MAX_DURATION_MS + 1), '2147483.648s']) {
    t.match(issue(`shutdown: { drainTimeout: ${v} }\n`), { path: 'shutdown.drainTimeout', expected: /^a duration of at most 2147483647 ms/ }, v)
  }
  t.match(issue('limits: { keepAliveTimeout: 900h }\n'), { path: 'limits.keepAliveTimeout', expected: /at most 2147483647 ms/ }, 'every duration field')
  t.match(issue('shutdown: { drainTimeout: 5 days }\n'), { path: 'shutdown.drainTimeout', expected: /^a duration: milliseconds as a number, or a string such as 250ms/ }, 'not a duration: the same message as before')
})

t.test('durations that are only compared against, never a timer, may be longer (a token\'s age, how long stale is kept)', async (t) => {
  const doc = (cache: string, jwt: string): string => `
clusters: [{ name: c, endpoints: [{ url: "http://127.0.0.1:9" }] }]
routes:
  - name: r
    cluster: c
    plugins:
      - { name: jwt-auth, config: { keys: [{ type: secret, secret: "0123456789abcdef0123456789abcdef" }], algorithms: [HS256], ${jwt} } }
      - { name: cache, config: { ${cache} } }
`
  const config = parseConfig(doc('keepStale: 720h, heuristicMax: 2400h', 'maxAge: 8760h'), 'units.yaml')
  const [jwt, cache] = config.routes[0]?.plugins ?? []
  t.same([(cache?.config as { keepStale: number }).keepStale, (jwt?.config as { maxAge: number }).maxAge], [720 * 3_600_000, 8760 * 3_600_000])
  t.match(issue(doc('keepStale: 200000h', 'maxAge: 1h')), { path: 'routes[0].plugins[1].config.keepStale', expected: /at most ten years/ })
})
