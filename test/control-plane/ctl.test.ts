import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { runCtl } from '../../control-plane/ctl.ts'
import { CP_CLI, TOKENS, baseDocument, runScript, startTestControlPlane, tempDir } from './helpers.ts'

interface Run { code: number, out: string, err: string }

/** Runs `outrider-cp ctl` in this process against `server` with `role`'s token. */
function ctl (server: string, role: keyof typeof TOKENS = 'operator') {
  return async (...args: string[]): Promise<Run> => {
    let out = ''
    let err = ''
    const code = await runCtl(['--server', server, '--token', TOKENS[role], ...args], { out: (s) => { out += `${s}\n` }, err: (s) => { err += `${s}\n` }, env: {} })
    return { code, out, err }
  }
}

t.test('outrider-cp ctl: routes, clusters, apply, history, rollback, audit, fleet, overlays, weight hints, rules, analytics, forecast', async (t) => {
  let now = 1_800_000_000_000
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json`, now: () => now, ruleIntervalMs: 0 })
  const dir = await tempDir(t)
  const admin = ctl(cp.address, 'admin')
  const op = ctl(cp.address, 'operator')
  const viewer = ctl(cp.address, 'viewer')

  await writeFile(`${dir}/base.json`, JSON.stringify(baseDocument([['a', 'http://127.0.0.1:9']])))
  t.match(await admin('config', 'put', `${dir}/base.json`, '--message', 'seed'), { code: 0, out: /now v1: clusters: added a/ })
  await writeFile(`${dir}/app.yaml`, [
    'clusters:',
    '  - { name: b, endpoints: [{ url: "http://127.0.0.2:9" }, { url: "http://127.0.0.3:9" }], loadBalancer: { policy: peak_ewma } }',
    'routes:',
    '  - { name: api, match: { pathPrefix: /api }, cluster: b, plugins: [{ name: rate-limit, config: { points: 100, duration: 1 } }] }',
    'overlays:',
    '  - { name: eu, selector: { zone: eu }, patch: { routes: [{ name: api, cluster: a }] } }',
    'rules:',
    '  - { name: shed, route: api, when: "p99 > 500ms for 2m", then: [{ type: scale-rate-limit, factor: 0.5 }] }',
    '',
  ].join('\n'))
  t.match(await op('apply', `${dir}/app.yaml`, '--dry-run'), { code: 0, out: /dry run: valid on v1 with 1 cluster\(s\) and 1 route\(s\)/ })
  const applied = await op('apply', `${dir}/app.yaml`)
  t.equal(applied.code, 0, applied.err)
  t.match(applied.out, /cluster b: now v2[\s\S]*route api: now v3[\s\S]*overlay eu: now v4[\s\S]*rule shed: stored/)

  t.match(await viewer('routes', 'list'), { code: 0, out: /^api\t→ b/m })
  t.match(await viewer('clusters', 'get', 'b'), { code: 0, out: /"name": "b"/ })
  t.match(await viewer('overlays', 'list'), { out: /^eu\t\{"zone":"eu"\} priority 0/m })
  t.match(await viewer('config', 'get', '--labels', 'zone=eu'), { out: /with overlays eu[\s\S]*"cluster": "a"/ })
  t.match(await viewer('history', '--limit', '2'), { out: /^v4\t.*\tolga\tput_overlay\toverlays: added eu\nv3\t/ })
  const rollback = await op('rollback', '1', '--message', 'undo')
  t.match(rollback, { code: 0, out: /now v5: rollback to v1/ })
  t.match(await viewer('audit', '--limit', '1'), { out: /olga\trollback\tv1\tv4→v5/ })
  t.match(await viewer('fleet'), { out: /^current v5/ })
  await op('config', 'put', `${dir}/base.json`).then((r) => t.match(r, { code: 1, err: /PERMISSION_DENIED/ }, 'an operator cannot replace the document'))
  await op('rollback', '4')

  t.match(await op('weight-hints', 'set', 'b', 'http://127.0.0.2:9=3', 'http://127.0.0.3:9=1'), { code: 0, out: 'set: http://127.0.0.2:9=3, http://127.0.0.3:9=1\n' })
  t.match(await viewer('weight-hints', 'list'), { out: 'b\thttp://127.0.0.2:9\t3\nb\thttp://127.0.0.3:9\t1\n' })

  await writeFile(`${dir}/bad-route.json`, JSON.stringify({ name: 'x', cluster: 'nope' }))
  const bad = await op('routes', 'put', `${dir}/bad-route.json`)
  t.equal(bad.code, 1)
  t.match(bad.err, /refused \(INVALID_ARGUMENT\)[\s\S]*routes\[1\]\.cluster: the name of a declared cluster/)
  t.match(await viewer('nonsense'), { code: 2, err: /unknown command "nonsense"/ })
  t.match(await viewer('rollback', 'x'), { code: 2, err: /VERSION: a whole number/ })

  // Traffic for analytics, forecast and the rule.
  for (let i = 0; i < 30; i++) cp.analytics.record('n1', [{ route: 'api', requests: 600, errors: 6, bounds: [0.1, 0.5, 1], buckets: [0, 0, 600, 0] }], now / 1000 - 1800 + i * 60)
  t.match(await viewer('analytics', '--window', '1h'), { out: /^api\t5\t1%\t\d+(\.\d+)?\t\d+(\.\d+)?\t\d+(\.\d+)?\t1$/m })
  t.match(await viewer('forecast', 'api', '--horizon', '15m'), { code: 0, out: /^api: \S+ over \d+ × 300s/ })
  t.match(await viewer('series', 'api', '--step', '300', '--limit', '2'), { code: 0, out: /\t3000\t30\t/ })
  t.match(await viewer('rules', 'backtest', 'shed', '--range', '1h', '--step', '300'), { code: 0, out: /^would have fired 5 time\(s\) in 6 intervals of 300s\n.*p99 > 500ms for 2m \(995\)\t\/routes\/api\/plugins\/rate-limit\/config\/points: 100 → 50\n/ })
  now += 1000
  t.match(await viewer('rules', 'list'), { out: /^shed\tidle\tfired 0×/ })
  t.match(await op('rules', 'delete', 'shed'), { code: 0, out: 'deleted\n' })
  t.match(await viewer('--json', 'rules', 'list'), { out: '{\n  "rules": []\n}\n' })
})

t.test('outrider-cp ctl runs from the command line, with the token from the environment', async (t) => {
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json` })
  const list = runScript(CP_CLI, ['ctl', '--server', cp.address, 'fleet'], { env: { OUTRIDER_CP_TOKEN: TOKENS.viewer } })
  t.equal((await list.exited).code, 0, list.logs())
  t.match(list.logs(), /^current v0/)
  const denied = runScript(CP_CLI, ['ctl', 'routes', 'list'], { env: { OUTRIDER_CP_TOKEN: 'wrong-token-0123456789', OUTRIDER_CP_ADDRESS: cp.address } })
  t.equal((await denied.exited).code, 1)
  t.match(denied.logs(), /refused \(UNAUTHENTICATED\)/)
  const help = runScript(CP_CLI, ['ctl', '--help'])
  t.equal((await help.exited).code, 0)
  t.match(help.logs(), /rules list \| put FILE \| delete NAME \| backtest/)
})

t.test('outrider-cp ctl warns when its token would cross the network in plaintext', async (t) => {
  const run = async (...args: string[]): Promise<string> => {
    let err = ''
    await runCtl(args, { out: () => {}, err: (s) => { err += `${s}\n` }, env: {} })
    return err
  }
  t.match(await run('--server', '10.255.255.1:50051', '--token', 't', 'nonsense'), /warning: the token goes to 10\.255\.255\.1:50051 in plaintext/)
  t.notMatch(await run('--server', '127.0.0.1:50051', '--token', 't', 'nonsense'), /plaintext/, 'not on loopback')
  t.notMatch(await run('--server', '10.255.255.1:50051', 'nonsense'), /plaintext/, 'nor without a token')
})
