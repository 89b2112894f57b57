import t from 'tap'
import { readdirSync, readFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadConfigFile, parseConfig } from '../../src/config/load.ts'
import { loadConfigOffThread, parseConfigOffThread, validateOffThread } from '../../src/config/off-thread.ts'
import { envPaths } from '../../src/config/path.ts'
import { redactConfig } from '../../src/config/redact.ts'
import { ConfigError } from '../../src/errors.ts'

/**
 * The proxy validates config in a child process (src/config/off-thread.ts).
 * What comes back must be exactly what parseConfig gives in-process: the same
 * values, frozen, with the same environment-sourced paths; and the same
 * ConfigError when it is invalid.
 */

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url))
const examples = fileURLToPath(new URL('../../examples/', import.meta.url))
const env = { ...process.env, UP_URL: 'http://127.0.0.1:9', JWT_SECRET: 'an-hs256-secret-of-32-bytes-or-more!', ORIGIN_URL: 'http://127.0.0.1:9001' }

const files = [
  ...readdirSync(fixtures).map((f) => join(fixtures, f)),
  ...readdirSync(examples, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => join(examples, d.name, 'outrider.yaml')).filter((f) => existsSync(f)),
]

function isDeepFrozen (v: unknown): boolean {
  if (typeof v !== 'object' || v === null) return true
  return Object.isFrozen(v) && Object.values(v).every(isDeepFrozen)
}

for (const file of files) {
  t.test(`${file.slice(file.lastIndexOf('/', file.lastIndexOf('/') - 1) + 1)}: the same outcome off-thread as in-process`, async (t) => {
    const here = await loadConfigFile(file, env).catch((err: unknown) => err)
    const there = await loadConfigOffThread(file, env).catch((err: unknown) => err)
    if (here instanceof ConfigError) {
      t.type(there, ConfigError, 'a ConfigError too')
      t.equal((there as ConfigError).message, here.message, 'the same message')
      t.strictSame((there as ConfigError).issues, here.issues, 'the same issues (file, path, expectation, line)')
      return
    }
    t.notOk(here instanceof Error, 'valid in-process')
    t.strictSame(there, here, 'the same config, value for value and type for type')
    t.ok(isDeepFrozen(there), 'deep-frozen')
    t.strictSame([...envPaths(there as never)], [...envPaths(here as never)], 'the same paths from the environment')
  })
}

t.test('secrets from the environment stay redacted on /config', async (t) => {
  const config = await loadConfigOffThread(join(fixtures, 'all-plugins.yaml'), env)
  const shown = JSON.stringify(redactConfig(config))
  t.notMatch(shown, env.JWT_SECRET, 'the secret is not shown')
  t.match(envPaths(config), new Set(['clusters[0].endpoints[0].url', 'routes[0].plugins[2].config.keys[0].secret']))
})

t.test('a document in hand, as the control plane sends it', async (t) => {
  const text = JSON.stringify({ clusters: [{ name: 'up', endpoints: [{ url: 'http://127.0.0.1:9' }] }], routes: [{ name: 'r', cluster: 'up' }] })
  t.strictSame(await parseConfigOffThread(text, 'cp.json', env), parseConfig(text, 'cp.json', env))
  const bad = await parseConfigOffThread('{"routes": [{"name": "r", "cluster": "nope"}]}', 'cp.json', env).catch((err: unknown) => err)
  t.type(bad, ConfigError)
  t.match((bad as ConfigError).message, /cp\.json.*routes\[0\]\.cluster/s, 'names the file and the path')
})

t.test('an unreadable file is a ConfigError naming it', async (t) => {
  const err = await loadConfigOffThread('/nonexistent/outrider.yaml').catch((e: unknown) => e)
  t.type(err, ConfigError)
  t.match((err as ConfigError).message, /\/nonexistent\/outrider\.yaml.*a readable config file/s)
})

t.test('a document too big for the validation process\'s heap is a ConfigError; the process goes on', async (t) => {
  // 120,000 routes (33 MiB of JSON) take 128–192 MiB to validate: twice the limit or more.
  const routes = Array.from({ length: 120_000 }, (_, i) => ({ name: `r${i}`, match: { path: `/p/${i}`, headers: { 'x-a': { exact: 'x'.repeat(200) } } }, cluster: 'up' }))
  const text = JSON.stringify({ clusters: [{ name: 'up', endpoints: [{ url: 'http://127.0.0.1:9' }] }], routes })
  const err = await validateOffThread({ file: 'huge.json', text, env: {} }, { heapLimitMb: 64, deadlineMs: 60_000 }).catch((e: unknown) => e)
  t.type(err, ConfigError)
  t.match((err as ConfigError).message, /huge\.json: \(document\): a document that validates within 64 MiB of memory/)
  t.strictSame(await validateOffThread({ file: 'small.json', text: '{}', env: {} }, { heapLimitMb: 64, deadlineMs: 60_000 }), parseConfig('{}', 'small.json', {}),
    'a small document fits the same bounds: the size was the problem, and the process goes on')
})

t.test('a validation that does not answer by the deadline is stopped and refused', async (t) => {
  const err = await validateOffThread({ file: 'slow.yaml', text: 'clusters: []\nroutes: []\n', env: {} }, { heapLimitMb: 512, deadlineMs: 1 }).catch((e: unknown) => e)
  t.type(err, Error)
  t.match((err as Error).message, /slow\.yaml: config validation did not finish within 0\.001s/)
})

/** Our children that are validation processes, from /proc. */
function validationChildren (): number[] {
  const out: number[] = []
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === process.pid && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('validation-process.js')) out.push(Number(pid))
    } catch { /* gone meanwhile */ }
  }
  return out
}

t.test('each validation process exits once it has answered, also after an invalid document', { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  await parseConfigOffThread('{}', 'a.json', {})
  await parseConfigOffThread('{"routes": 1}', 'b.json', {}).catch(() => {})
  await loadConfigOffThread(join(fixtures, 'all-plugins.yaml'), env)
  for (let i = 0; i < 100 && validationChildren().length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 50))
  t.strictSame(validationChildren(), [], 'none left running')
})
