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
