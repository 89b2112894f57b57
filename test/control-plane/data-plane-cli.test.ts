import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { CLI, freePort } from '../helpers/cli.ts'
import { runScript, tempDir, type NodeProcess } from './helpers.ts'

function stopped (p: NodeProcess, t: { teardown (fn: () => unknown): void }): NodeProcess {
  t.teardown(() => { if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL') })
  return p
}

t.test('with the control plane down and no cache or bootstrap config, the data plane keeps retrying until SIGTERM', async (t) => {
  const port = await freePort()
  const dp = stopped(runScript(CLI, ['--control-plane', `127.0.0.1:${port}`, '--node-id', 'lonely']), t)
  // waitForLog fails if the process exits first.
  await dp.waitForLog('control plane unreachable', 4)
  t.equal(dp.child.exitCode, null, 'still running after four failed attempts')
  dp.child.kill('SIGTERM')
  t.same(await dp.exited, { code: 0, signal: null }, 'SIGTERM ends it with 0')
})

t.test('managed-mode usage and config errors exit 2 with a message, not 1 with a stack', async (t) => {
  const dir = await tempDir(t)
  const port = await freePort()
  await writeFile(`${dir}/valid.yaml`, 'listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\n')
  await writeFile(`${dir}/bootstrap.yaml`, [
    'listen: { host: 127.0.0.1, port: 0 }',
    'admin: { host: 127.0.0.1, port: 0 }',
    'clusters:',
    `  - { name: s, endpoints: [{ url: "https://127.0.0.1:9" }], tls: { ca: ${dir}/gone-ca.pem } }`,
    'routes: []',
    '',
  ].join('\n'))
  const cases: Array<[string, string[], RegExp]> = [
    ['an empty --control-plane', ['--control-plane', ''], /--control-plane needs the control plane's HOST:PORT/],
    ['an unknown --log-level', ['--control-plane', `127.0.0.1:${port}`, '--log-level', 'nope'], /must be one of debug, info, warn, error, got "nope"/],
    ['an unknown --log-level in file mode', ['--config', `${dir}/valid.yaml`, '--log-level', 'nope'], /must be one of debug, info, warn, error/],
    ['a bootstrap config whose TLS file is missing', ['--control-plane', `127.0.0.1:${port}`, '--config', `${dir}/bootstrap.yaml`], /clusters\[0\]\.tls\.ca: a readable PEM file/],
  ]
  for (const [what, args, message] of cases) {
    const p = stopped(runScript(CLI, args), t)
    t.same(await p.exited, { code: 2, signal: null }, `${what}: exit 2`)
    t.match(p.logs(), message, `${what}: says why`)
    t.notMatch(p.logs(), /\n\s+at /, `${what}: no stack`)
  }
})
