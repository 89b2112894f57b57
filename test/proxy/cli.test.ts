import t from 'tap'
import { mkdtemp, writeFile, rename } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.ts'
import { freePort, runCli } from '../helpers/cli.ts'

async function configFile (body: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'outrider-cli-'))
  const file = path.join(dir, 'outrider.yaml')
  await writeFile(file, body)
  return file
}

function yaml (port: number, admin: number, upstream: string, extra = ''): string {
  return `listen: { host: 127.0.0.1, port: ${port} }
admin: { host: 127.0.0.1, port: ${admin} }
shutdown: { drainTimeout: 5s }
${extra}
clusters:
  - name: up
    endpoints: [{ url: ${upstream} }]
routes:
  - name: all
    match: { pathPrefix: / }
    cluster: up
`
}

t.test('validate: 0 for a valid file, 2 with file:line: path: expected for an invalid one', async (t) => {
  const good = await configFile(yaml(8080, 9901, 'http://127.0.0.1:1'))
  const ok = runCli(['validate', good])
  t.equal((await ok.exited).code, 0)
  t.match(ok.logs(), 'valid')
  const bad = await configFile(yaml(8080, 9901, 'http://127.0.0.1:1').replace('pathPrefix: /', 'pathPrefx: /'))
  const no = runCli(['validate', bad])
  t.equal((await no.exited).code, 2)
  t.match(no.logs(), `${bad}:10: routes[0].match.pathPrefx: no key "pathPrefx" here`)
  const missing = runCli(['--config', '/nonexistent/outrider.yaml'])
  t.equal((await missing.exited).code, 2, 'running on a missing file also exits 2')
  t.match(missing.logs(), '/nonexistent/outrider.yaml')
})

t.test('runs, reloads on file change and SIGHUP, keeps serving on a bad edit, drains on SIGTERM', async (t) => {
  const a = await startUpstream((_req, res) => { res.end('a') })
  let release: (() => void) | undefined
  const b = await startUpstream((req, res) => {
    if (req.url === '/slow') { release = () => { res.end('slow-b') }; return }
    res.end('b')
  })
  t.teardown(a.close)
  t.teardown(b.close)
  const [port, admin] = [await freePort(), await freePort()]
  const file = await configFile(yaml(port, admin, a.url))
  const proc = runCli(['--config', file])
  t.teardown(() => { proc.child.kill('SIGKILL') })
  await proc.waitForLog('proxy listening')
  const url = `http://127.0.0.1:${port}`
  t.equal(await (await request(url)).body.text(), 'a')

  // Atomic replace (write + rename), as editors and ConfigMaps do.
  await writeFile(`${file}.tmp`, yaml(port, admin, b.url))
  await rename(`${file}.tmp`, file)
  await proc.waitForLog('config applied')
  t.equal(await (await request(url)).body.text(), 'b', 'file change reloaded')

  await writeFile(file, 'listen: [this is not valid')
  await proc.waitForLog('config reload failed')
  t.equal(await (await request(url)).body.text(), 'b', 'a broken edit leaves the running config')
  const metrics = await (await request(`http://127.0.0.1:${admin}/metrics`)).body.text()
  t.match(metrics, /outrider_config_reloads_total\{result="failure"\} 1/)

  await writeFile(file, yaml(port, admin, a.url, 'limits: { keepAliveTimeout: 5s }'))
  await proc.waitForLog('config applied', 2)
  await writeFile(file, yaml(port, admin, b.url))
  proc.child.kill('SIGHUP')
  await proc.waitForLog('config applied', 3)
  t.equal(await (await request(url)).body.text(), 'b')

  const slow = request(`${url}/slow`)
  while (release === undefined) await new Promise((resolve) => setTimeout(resolve, 10))
  proc.child.kill('SIGTERM')
  await proc.waitForLog('SIGTERM: draining')
  release()
  t.equal(await (await slow).body.text(), 'slow-b', 'the in-flight request completed during the drain')
  t.same(await proc.exited, { code: 0, signal: null }, 'exit 0 after draining')
})

t.test('workers: 2 share the port, one /metrics, a crashed worker is replaced', async (t) => {
  const up = await startUpstream((_req, res) => { res.end('ok') })
  t.teardown(up.close)
  const [port, admin] = [await freePort(), await freePort()]
  const file = await configFile(yaml(port, admin, up.url, 'workers: 2'))
  const proc = runCli(['--config', file])
  t.teardown(() => { proc.child.kill('SIGKILL') })
  await proc.waitForLog('proxy listening', 2)
  const url = `http://127.0.0.1:${port}`
  for (let i = 0; i < 20; i++) await (await request(url, { reset: true } as never)).body.dump()
  const adminUrl = `http://127.0.0.1:${admin}`
  const metrics = await (await request(`${adminUrl}/metrics`)).body.text()
  t.match(metrics, /outrider_requests_total\{route="all",method="GET",status_class="2xx"\} 20/, 'counts summed over workers')
  const clusters = await (await request(`${adminUrl}/clusters`)).body.json() as { clusters: unknown[] }
  t.equal(clusters.clusters.length, 1)

  const states = await (await request(`${adminUrl}/ready`)).body.json() as { status: string }
  t.equal(states.status, 'ready')
  const pid = (clusters as unknown as { worker: number }).worker
  process.kill(pid, 'SIGKILL')
  await proc.waitForLog('worker exited; restarting')
  await proc.waitForLog('proxy listening', 3)
  t.equal((await request(url)).statusCode, 200, 'still serving after the crash')

  proc.child.kill('SIGTERM')
  t.same(await proc.exited, { code: 0, signal: null })
})

t.test('its log reader going away (EPIPE on stderr and stdout) loses log lines, not the proxy: no write loop, still serving', async (t) => {
  const io = (pid: number): number | undefined => {
    try { return Number(/^syscw: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1]) } catch { return undefined }
  }
  if (io(process.pid) === undefined) { t.plan(0, 'no /proc/<pid>/io here to count write calls with'); return }
  const up = await startUpstream()
  t.teardown(up.close)
  const port = await freePort()
  const admin = await freePort()
  const file = await configFile(yaml(port, admin, up.url, 'accessLog: { destination: stdout }'))
  const cli = runCli(['--config', file])
  t.teardown(() => { cli.child.kill('SIGKILL') })
  await cli.waitForLog('proxy listening')
  cli.child.stderr?.destroy()
  cli.child.stdout?.destroy()
  // A reload logs to the closed stderr, a request to the closed stdout.
  cli.child.kill('SIGHUP')
  const res = await request(`http://127.0.0.1:${port}/x`)
  await res.body.text()
  t.equal(res.statusCode, 200)
  await new Promise((resolve) => setTimeout(resolve, 300))
  const pid = cli.child.pid as number
  const before = io(pid) as number
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const writes = (io(pid) as number) - before
  // Idle, a proxy writes nothing; the failing-write loop made ~27,000 calls a second.
  t.ok(writes < 100, `${writes} write calls in a second of idling after its log pipes broke`)
  const live = await request(`http://127.0.0.1:${admin}/live`)
  await live.body.text()
  t.equal(live.statusCode, 200, 'still alive')
  const again = await request(`http://127.0.0.1:${port}/y`)
  await again.body.text()
  t.equal(again.statusCode, 200, 'still serving')
})
