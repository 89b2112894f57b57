import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { CLI, freePort } from '../helpers/cli.ts'
import { startUpstream } from '../helpers/upstream.ts'
import { hashToken } from '../../control-plane/auth.ts'
import { CP_CLI, TOKENS, get, operatorClient, runScript, tempDir, waitFor, type NodeProcess } from './helpers.ts'

function stopped (p: NodeProcess, t: { teardown (fn: () => unknown): void }): NodeProcess {
  t.teardown(() => { if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL') })
  return p
}

t.test('outrider-cp refuses to start without tokens, and hashes tokens for token files', async (t) => {
  const noAuth = runScript(CP_CLI, ['--listen', '127.0.0.1:0', '--store', `${await tempDir(t)}/s.json`])
  t.equal((await noAuth.exited).code, 2)
  t.match(noAuth.logs(), /--token-file is required/)
  const hashed = runScript(CP_CLI, ['hash-token', 'a-long-random-token!'])
  t.equal((await hashed.exited).code, 0)
  t.equal(hashed.logs().trim(), hashToken('a-long-random-token!'))
  const dir = await tempDir(t)
  await writeFile(`${dir}/tokens.yaml`, 'tokens:\n  - { name: x, role: root, token: short }\n')
  const bad = runScript(CP_CLI, ['--token-file', `${dir}/tokens.yaml`])
  t.equal((await bad.exited).code, 2)
  t.match(bad.logs(), /tokens\.0\.role/)
  t.match(bad.logs(), /at least 16 characters/)
})

t.test('outrider --control-plane: serves pushed config, survives a killed control plane, restarts from its cache, resyncs', async (t) => {
  const up = await startUpstream((req, res) => { res.writeHead(200); res.end(`up ${req.url ?? ''}`) })
  t.teardown(() => up.close())
  const dir = await tempDir(t)
  const [cpPort, proxyPort, adminPort] = [await freePort(), await freePort(), await freePort()]
  await writeFile(`${dir}/tokens.yaml`, [
    'tokens:',
    `  - { name: olga, role: operator, hash: "${hashToken(TOKENS.operator)}" }`,
    `  - { name: fleet, role: data-plane, token: ${TOKENS.dataPlane} }`,
    '',
  ].join('\n'))
  await writeFile(`${dir}/seed.yaml`, [
    `listen: { host: 127.0.0.1, port: ${proxyPort} }`,
    `admin: { host: 127.0.0.1, port: ${adminPort} }`,
    'clusters:',
    `  - { name: up, endpoints: [{ url: "${up.url}" }] }`,
    'routes:',
    '  - { name: a, match: { pathPrefix: /a }, cluster: up }',
    '',
  ].join('\n'))
  const cpArgs = ['--listen', `127.0.0.1:${cpPort}`, '--store', `${dir}/store.json`, '--token-file', `${dir}/tokens.yaml`]
  const cp1 = stopped(runScript(CP_CLI, [...cpArgs, '--seed', `${dir}/seed.yaml`]), t)
  await cp1.waitForLog('store seeded')

  const dpArgs = ['--control-plane', `127.0.0.1:${cpPort}`, '--node-id', 'cli-1', '--labels', 'zone=eu-1,tier=edge', '--cache-dir', `${dir}/cache`]
  const dpEnv = { OUTRIDER_CP_TOKEN: TOKENS.dataPlane }
  const dp1 = stopped(runScript(CLI, dpArgs, { env: dpEnv }), t)
  await dp1.waitForLog('config from the control plane applied')
  await cp1.waitForLog('data plane applied config (ACK)')
  t.same(await get(`http://127.0.0.1:${proxyPort}/a/1`), { status: 200, body: 'up /a/1' })
  t.equal((await get(`http://127.0.0.1:${adminPort}/ready`)).status, 200)

  cp1.child.kill('SIGKILL')
  await cp1.exited
  await dp1.waitForLog('control plane unreachable')
  t.same(await get(`http://127.0.0.1:${proxyPort}/a/2`), { status: 200, body: 'up /a/2' }, 'serves with the control plane dead')

  dp1.child.kill('SIGTERM')
  t.equal((await dp1.exited).code, 0, 'drains and exits 0')

  const dp2 = stopped(runScript(CLI, dpArgs, { env: dpEnv }), t)
  await dp2.waitForLog('starting on the cached config')
  await dp2.waitForLog('proxy listening')
  t.same(await get(`http://127.0.0.1:${proxyPort}/a/3`), { status: 200, body: 'up /a/3' }, 'restarted while the control plane is down: serves the cached config')
  t.equal((await get(`http://127.0.0.1:${adminPort}/ready`)).status, 200)

  const cp2 = stopped(runScript(CP_CLI, cpArgs), t)
  await dp2.waitForLog('control plane confirmed the running config', 1, 20_000)
  const op = operatorClient(t, `127.0.0.1:${cpPort}`, 'operator')
  const fleet = await op.getFleet({})
  t.match(fleet.nodes, [{ nodeId: 'cli-1', labels: { zone: 'eu-1', tier: 'edge' }, connected: true, ackedVersion: '1' }])

  await op.putRoute({ routeJson: JSON.stringify({ name: 'b', match: { pathPrefix: '/b' }, cluster: 'up' }) })
  await waitFor('/b served', async () => (await get(`http://127.0.0.1:${proxyPort}/b/1`)).status === 200)
  t.pass('a change after the restart reaches the CLI data plane')

  cp2.child.kill('SIGTERM')
  t.equal((await cp2.exited).code, 0, 'outrider-cp exits 0 on SIGTERM')
  dp2.child.kill('SIGTERM')
  t.equal((await dp2.exited).code, 0)
})
