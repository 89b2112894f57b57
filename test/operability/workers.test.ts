import { execFileSync } from 'node:child_process'
import t from 'tap'
import type { Test } from 'tap'
import { mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import net from 'node:net'
import path from 'node:path'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.ts'
import { freePort, runCli, type CliProcess } from '../helpers/cli.ts'

/** Multi-worker mode (src/workers.ts): a primary and its workers, as real processes. */

async function tempDir (t: Test): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'outrider-workers-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

function yaml (port: number, admin: number, upstream: string, extra = ''): string {
  return `listen: { host: 127.0.0.1, port: ${port} }
admin: { host: 127.0.0.1, port: ${admin} }
workers: 2
shutdown: { drainTimeout: 2s }
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

interface Running { proc: CliProcess, url: string, adminUrl: string, file: string, dir: string }

/** A 2-worker proxy on `yaml(...)`, once both workers listen. Killed in teardown. */
async function startWorkers (t: Test, extra = '', upstream?: string): Promise<Running> {
  if (upstream === undefined) {
    const up = await startUpstream((_req, res) => { res.end('ok') })
    t.teardown(up.close)
    upstream = up.url
  }
  const dir = await tempDir(t)
  const [port, admin] = [await freePort(), await freePort()]
  const file = path.join(dir, 'outrider.yaml')
  await writeFile(file, yaml(port, admin, upstream, extra.replaceAll('$DIR', dir)))
  const proc = runCli(['--config', file])
  t.teardown(() => { proc.child.kill('SIGKILL') })
  await proc.waitForLog('proxy listening', 2)
  return { proc, url: `http://127.0.0.1:${port}`, adminUrl: `http://127.0.0.1:${admin}`, file, dir }
}

async function get (url: string): Promise<{ status: number, body: string }> {
  const res = await request(url, { reset: true } as never)
  return { status: res.statusCode, body: await res.body.text() }
}

/** Polls `check` until it holds (the test's own timeout bounds it); fails at once if `proc` exits. */
async function until (check: () => Promise<boolean>, proc?: CliProcess): Promise<void> {
  while (!(await check())) {
    if (proc?.child.exitCode !== null && proc?.child.exitCode !== undefined) throw new Error(`exited (${proc.child.exitCode}):\n${proc.logs()}`)
    if (proc?.child.signalCode !== null && proc?.child.signalCode !== undefined) throw new Error(`killed by ${proc.child.signalCode}:\n${proc.logs()}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

t.test('SIGUSR2 to the primary reopens every worker\'s access log and ends nothing', async (t) => {
  const p = await startWorkers(t, 'accessLog: { destination: $DIR/access.log }')
  const log = path.join(p.dir, 'access.log')
  const exists = (f: string) => async (): Promise<boolean> => (await stat(f).catch(() => undefined)) !== undefined
  t.equal((await get(`${p.url}/before`)).status, 200)
  await until(exists(log))
  await rename(log, `${log}.1`)
  p.proc.child.kill('SIGUSR2')
  // Reopening creates the file again (lines are buffered, so it may still be empty).
  await until(exists(log), p.proc)
  t.equal((await get(`${p.url}/after`)).status, 200, 'still serving')
  t.equal(p.proc.child.exitCode, null, 'the primary is alive')
  t.notMatch(p.proc.logs(), 'worker exited', 'no worker died')
  p.proc.child.kill('SIGTERM')
  t.same(await p.proc.exited, { code: 0, signal: null })
})

t.test('a worker started after a refused edit serves the last good config, not the file', async (t) => {
  const p = await startWorkers(t)
  const good = await readFile(p.file, 'utf8')
  await writeFile(p.file, good.replace('cluster: up', 'cluster: nope'))
  await p.proc.waitForLog('config reload failed')
  const { worker } = await (await request(`${p.adminUrl}/clusters`)).body.json() as { worker: number }
  process.kill(worker, 'SIGKILL')
  await p.proc.waitForLog('worker exited; restarting')
  await p.proc.waitForLog('proxy listening', 3)
  await until(async () => (await get(`${p.adminUrl}/ready`)).status === 200, p.proc)
  for (let i = 0; i < 4; i++) t.same(await get(p.url), { status: 200, body: 'ok' }, 'every worker serves')
  p.proc.child.kill('SIGTERM')
  t.same(await p.proc.exited, { code: 0, signal: null })
})

t.test('a worker that cannot start exits non-zero, so the primary restarts it with back-off', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  // The proxy port is taken by a socket without SO_REUSEPORT: the workers' listen fails.
  const squatter = net.createServer()
  await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { squatter.close() })
  const dir = await tempDir(t)
  const file = path.join(dir, 'outrider.yaml')
  await writeFile(file, yaml((squatter.address() as net.AddressInfo).port, await freePort(), up.url))
  const proc = runCli(['--config', file])
  t.teardown(() => { proc.child.kill('SIGKILL') })
  await proc.waitForLog('worker exited; restarting')
  t.match(proc.logs(), 'worker failed to start')
  t.match(proc.logs(), /"msg":"worker exited; restarting","worker":\d+,"code":1/)
  proc.child.kill('SIGTERM')
  t.same(await proc.exited, { code: 0, signal: null })
})

/** Prometheus text exposition: comments, or `name{labels} value`. */
const SAMPLE = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? [-+0-9.eEInfNa]+$/

/** Statuses of `n` requests, each on a new connection. */
async function serve (url: string, n: number): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) out.push((await get(url)).status)
  return out
}

/** One sample of a /metrics body, by its `name{labels}`. */
function sample (body: string, series: string): number | undefined {
  const line = body.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}
const REQUESTS = 'outrider_requests_total{route="all",method="GET",status_class="2xx"}'

t.test('/metrics with a worker that does not answer: 200 with its last answer, counters do not go down, not a 500', async (t) => {
  const p = await startWorkers(t)
  // Enough new connections that both workers served some (the kernel spreads them).
  t.same(await serve(p.url, 20), Array(20).fill(200))
  t.equal(sample((await get(`${p.adminUrl}/metrics`)).body, REQUESTS), 20)
  const { worker } = await (await request(`${p.adminUrl}/clusters`)).body.json() as { worker: number }
  process.kill(worker, 'SIGSTOP')
  t.teardown(() => { try { process.kill(worker, 'SIGCONT') } catch {} })
  const res = await request(`${p.adminUrl}/metrics`)
  const body = await res.body.text()
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], 'text/plain')
  t.equal(sample(body, REQUESTS), 20, 'the stopped worker\'s counts are still in the sum')
  t.equal(sample(body, 'outrider_workers_late'), 1)
  const bad = body.split('\n').filter((l) => l !== '' && !l.startsWith('#') && !SAMPLE.test(l))
  t.same(bad, [], 'valid exposition text')
  t.match(p.proc.logs(), 'metrics: workers that did not answer in time are in this scrape with their last answer')
  // None answers: a failed scrape, not an empty 200 that reads as up.
  const all = execFileSync('pgrep', ['-P', String(p.proc.child.pid)], { encoding: 'utf8' }).split('\n').filter((l) => l !== '').map(Number)
  t.teardown(() => { for (const pid of all) { try { process.kill(pid, 'SIGCONT') } catch {} } })
  for (const pid of all) process.kill(pid, 'SIGSTOP')
  const none = await request(`${p.adminUrl}/metrics`)
  await none.body.dump()
  t.equal(none.statusCode, 500)
  for (const pid of all) process.kill(pid, 'SIGCONT')
  process.kill(worker, 'SIGCONT')
  p.proc.child.kill('SIGTERM')
  t.same(await p.proc.exited, { code: 0, signal: null })
})

t.test('/metrics across worker restarts and reloads: counters keep what exited workers counted, a reload counts once', async (t) => {
  const p = await startWorkers(t)
  t.same(await serve(p.url, 20), Array(20).fill(200))
  let body = (await get(`${p.adminUrl}/metrics`)).body
  t.equal(sample(body, REQUESTS), 20)
  t.equal(sample(body, 'outrider_config_reloads_total{result="success"}'), 1, 'one load, not one per worker')
  t.equal(sample(body, 'outrider_workers_late'), 0)

  p.proc.child.kill('SIGHUP')
  await until(async () => sample((await get(`${p.adminUrl}/metrics`)).body, 'outrider_config_reloads_total{result="success"}') !== 1, p.proc)
  t.equal(sample((await get(`${p.adminUrl}/metrics`)).body, 'outrider_config_reloads_total{result="success"}'), 2, 'one reload, counted once')

  // A worker dies: its 20-odd requests must not vanish from the sum.
  const { worker } = await (await request(`${p.adminUrl}/clusters`)).body.json() as { worker: number }
  process.kill(worker, 'SIGKILL')
  await p.proc.waitForLog('worker exited; restarting')
  body = (await get(`${p.adminUrl}/metrics`)).body
  t.equal(sample(body, REQUESTS), 20, 'with one worker gone')
  await p.proc.waitForLog('proxy listening', 3)
  await until(async () => (await get(`${p.adminUrl}/ready`)).status === 200, p.proc)
  t.equal((await get(p.url)).status, 200)
  body = (await get(`${p.adminUrl}/metrics`)).body
  t.equal(sample(body, REQUESTS), 21, 'and with its replacement')
  t.equal(sample(body, 'outrider_config_reloads_total{result="success"}'), 2, 'a restart is no reload')

  await writeFile(p.file, 'listen: [')
  await until(async () => sample((await get(`${p.adminUrl}/metrics`)).body, 'outrider_config_reloads_total{result="failure"}') !== undefined, p.proc)
  t.equal(sample((await get(`${p.adminUrl}/metrics`)).body, 'outrider_config_reloads_total{result="failure"}'), 1)
  p.proc.child.kill('SIGTERM')
  t.same(await p.proc.exited, { code: 0, signal: null })
})

t.test('/metrics merges gauges by their meaning: a flag or a state is not summed over workers', async (t) => {
  const p = await startWorkers(t)
  for (let i = 0; i < 4; i++) t.equal((await get(p.url)).status, 200)
  const body = (await get(`${p.adminUrl}/metrics`)).body
  t.match(body, /^outrider_endpoint_healthy\{cluster="up",endpoint="[^"]+"\} 1$/m, 'healthy in both workers: 1, not 2')
  t.match(body, /^outrider_config_info\{version="[0-9a-f]+"\} 1$/m, 'one version: 1, not 2')
  t.match(body, /^outrider_requests_total\{route="all",method="GET",status_class="2xx"\} 4$/m, 'counters still add up')
  p.proc.child.kill('SIGTERM')
  t.same(await p.proc.exited, { code: 0, signal: null })
})

t.test('SIGTERM while the workers are still starting: each stops once up, it does not serve on into the drain', async (t) => {
  const up = await startUpstream((_req, res) => { res.end('ok') })
  t.teardown(up.close)
  // A Redis that takes connections and never answers holds the first snapshot for connectTimeout.
  let connected = 0
  const silent = net.createServer(() => { connected++ })
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { silent.close() })
  const redis = `redis://127.0.0.1:${(silent.address() as net.AddressInfo).port}`
  const dir = await tempDir(t)
  const file = path.join(dir, 'outrider.yaml')
  await writeFile(file, yaml(await freePort(), await freePort(), up.url).replace('    cluster: up\n', `    cluster: up\n    plugins: [{ name: rate-limit, config: { points: 10, duration: 1, store: { type: redis, url: "${redis}", connectTimeout: 2s } } }]\n`))
  const proc = runCli(['--config', file])
  t.teardown(() => { proc.child.kill('SIGKILL') })
  // Both workers are inside their start-up once each has connected to Redis.
  await until(async () => connected >= 2, proc)
  proc.child.kill('SIGTERM')
  t.same(await proc.exited, { code: 0, signal: null })
  const logs = proc.logs()
  t.equal(logs.split('"msg":"proxy stopped"').length - 1, 2, 'both workers stopped themselves')
  t.notMatch(logs, /SIGKILL/)
})

t.test('a reload while no worker is ready is refused, not committed unbuilt: the replacements start on the running config', async (t) => {
  const p = await startWorkers(t)
  const version = async (): Promise<string> => ((await (await request(`${p.adminUrl}/config`)).body.json()) as { version: string }).version
  const first = await version()
  const good = await readFile(p.file, 'utf8')
  // Both workers die (out of memory, say); until their replacements are up none is ready.
  const pids = execFileSync('pgrep', ['-P', String(p.proc.child.pid)], { encoding: 'utf8' }).split('\n').filter((l) => l !== '').map(Number)
  for (const pid of pids) process.kill(pid, 'SIGKILL')
  await until(async () => (await request(`${p.adminUrl}/clusters`)).statusCode !== 200, p.proc)
  // Valid for the schema, but no worker could build it (the CA file is missing).
  await writeFile(p.file, good.replace('endpoints: [{ url: ', `tls: { ca: ${p.dir}/missing-ca.pem }\n    endpoints: [{ url: `))
  p.proc.child.kill('SIGHUP')
  await p.proc.waitForLog('no worker is ready to build it')
  t.equal(await version(), first, 'the running version stays committed')
  await until(async () => (await request(`${p.adminUrl}/ready`)).statusCode === 200, p.proc)
  t.equal((await get(p.url)).status, 200, 'the replacements serve the running config')
  t.notMatch(p.proc.logs(), /worker failed to start/)
  p.proc.child.kill('SIGTERM')
  t.same(await p.proc.exited, { code: 0, signal: null })
})

t.test('a reload the workers refuse is not committed: the primary reports the version they serve', async (t) => {
  const p = await startWorkers(t)
  const versions = async (): Promise<{ ready: string, config: string, worker: string }> => {
    const ready = await (await request(`${p.adminUrl}/ready`)).body.json() as { version: string }
    const config = await (await request(`${p.adminUrl}/config`)).body.json() as { version: string }
    const worker = await (await request(`${p.adminUrl}/clusters`)).body.json() as { version: string }
    return { ready: ready.version, config: config.version, worker: worker.version }
  }
  const first = await versions()
  t.equal(first.ready, first.worker)
  const good = await readFile(p.file, 'utf8')
  // Valid, but cannot build: the CA file is read when the workers build their snapshot.
  await writeFile(p.file, good.replace('endpoints: [{ url: ', `tls: { ca: ${p.dir}/missing-ca.pem }\n    endpoints: [{ url: `))
  await p.proc.waitForLog('worker failed to apply config', 2)
  t.same(await versions(), first, 'still the version the workers serve')
  await p.proc.waitForLog('config reload failed to build; keeping the running config')
  t.match(p.proc.logs(), /"msg":"config reload failed to build; keeping the running config".*could not apply it.*missing-ca\.pem/)

  await writeFile(p.file, good.replace('name: all', 'name: renamed'))
  await p.proc.waitForLog('config applied', 2)
  await until(async () => (await versions()).ready !== first.ready, p.proc)
  const next = await versions()
  t.equal(next.config, next.ready)
  t.equal(next.worker, next.ready, 'committed once the workers applied it')
  p.proc.child.kill('SIGTERM')
  t.same(await p.proc.exited, { code: 0, signal: null })
})
