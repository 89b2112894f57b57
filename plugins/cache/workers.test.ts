import t from 'tap'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { request } from 'undici'
import { freePort, runCli } from '../../test/helpers/cli.ts'
import { ScriptedOrigin } from './test-origin.ts'

t.test('workers: 2: a purge reaches every worker’s L1', async (t) => {
  const origin = await ScriptedOrigin.start()
  t.teardown(() => origin.close())
  origin.on('/w', () => ({ headers: { 'cache-control': 'max-age=100' } }))
  const [port, admin] = [await freePort(), await freePort()]
  const dir = await mkdtemp(path.join(tmpdir(), 'outrider-cache-workers-'))
  const file = path.join(dir, 'outrider.yaml')
  await writeFile(file, `listen: { host: 127.0.0.1, port: ${port} }
admin: { host: 127.0.0.1, port: ${admin} }
workers: 2
clusters: [{ name: up, endpoints: [{ url: ${origin.upstream.url} }] }]
routes: [{ name: all, match: { pathPrefix: / }, cluster: up, plugins: [{ name: cache }] }]
`)
  const proc = runCli(['--config', file])
  t.teardown(() => { proc.child.kill('SIGKILL') })
  await proc.waitForLog('proxy listening', 2)
  // New connections each time: the kernel spreads them, so both workers fill their L1.
  const fetch = async (): Promise<string | undefined> => {
    const r = await request(`http://127.0.0.1:${port}/w`, { reset: true } as never)
    await r.body.dump()
    return r.headers['x-cache'] as string | undefined
  }
  for (let i = 0; i < 20; i++) await fetch()
  const before = origin.hits('/w')
  t.ok(before >= 1 && before <= 2, 'at most one miss per worker')
  const purge = await request(`http://127.0.0.1:${admin}/cache/purge`, { method: 'POST', body: JSON.stringify({ url: `127.0.0.1:${port}/w` }) })
  const body = await purge.body.json() as { purged: number }
  t.equal(body.purged, before, 'each worker purged its copy')
  for (let i = 0; i < 20; i++) await fetch()
  t.equal(origin.hits('/w'), before * 2, 'every worker went upstream again, once')
  proc.child.kill('SIGTERM')
  await proc.exited
})
