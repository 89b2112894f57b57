import t from 'tap'
import { CLI, freePort } from '../helpers/cli.ts'
import { runScript, type NodeProcess } from './helpers.ts'

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
