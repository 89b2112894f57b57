import t from 'tap'
import type { Test } from 'tap'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { freePort, runCli } from '../helpers/cli.ts'

/** Files a config names (certificates, keys files) are part of the config: unreadable, it is invalid (exit 2). */

async function configFile (t: Test, body: (dir: string) => string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'outrider-files-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'outrider.yaml')
  await writeFile(file, body(dir))
  return file
}

async function doc (extra: { cluster?: string, route?: string, top?: string } = {}): Promise<(dir: string) => string> {
  const [port, admin] = [await freePort(), await freePort()]
  return (dir) => `listen: { host: 127.0.0.1, port: ${port} }
admin: { host: 127.0.0.1, port: ${admin} }
${(extra.top ?? '').replaceAll('$DIR', dir)}
clusters:
  - name: up
    endpoints: [{ url: "http://127.0.0.1:1" }]
    ${(extra.cluster ?? '').replaceAll('$DIR', dir)}
routes:
  - name: all
    cluster: up
    ${(extra.route ?? '').replaceAll('$DIR', dir)}
`
}

const MISSING_CA = { cluster: 'tls: { ca: $DIR/missing-ca.pem }' }

t.test('validate reads the TLS files: an unreadable one is exit 2 with file: path: expected', async (t) => {
  const file = await configFile(t, await doc(MISSING_CA))
  const cli = runCli(['validate', file])
  t.equal((await cli.exited).code, 2)
  t.match(cli.logs(), `${file}: clusters[0].tls.ca: a readable PEM file (ENOENT: `)
  t.notMatch(cli.logs(), 'valid (')
})

for (const workers of [1, 2]) {
  t.test(`starting (workers: ${workers}) on an unreadable TLS file: exit 2 with file: path: expected, no stack`, async (t) => {
    const file = await configFile(t, await doc({ top: `workers: ${workers}`, ...MISSING_CA }))
    const cli = runCli(['--config', file])
    t.teardown(() => { cli.child.kill('SIGKILL') })
    t.same(await cli.exited, { code: 2, signal: null })
    t.match(cli.logs(), `${file}: clusters[0].tls.ca: a readable PEM file`)
    t.notMatch(cli.logs(), /^\s+at /m, 'no stack trace')
  })
}

t.test('a config error found while building the first snapshot (a plugin\'s file) is exit 2 too, not a crash', async (t) => {
  const file = await configFile(t, await doc({ route: 'plugins: [{ name: api-key, config: { keysFile: $DIR/missing-keys.yaml } }]' }))
  const cli = runCli(['--config', file])
  t.teardown(() => { cli.child.kill('SIGKILL') })
  t.same(await cli.exited, { code: 2, signal: null })
  t.match(cli.logs(), /missing-keys\.yaml: \(document\): a readable API key file/)
  t.notMatch(cli.logs(), /^\s+at /m, 'no stack trace')
})
