import t from 'tap'
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { CLI } from '../helpers/cli.ts'

/**
 * Transparent interception end to end, in network namespaces made here:
 *
 *   client ns (10.200.0.1)  ── veth ──  pod ns (10.200.0.2)
 *   external server :80                 service :8080 (uid 65534, knows nothing of Outrider)
 *   plain HTTP client                   inbound Outrider :15006 → 127.0.0.1:8080 (uid 1337)
 *                                       outbound Outrider 127.0.0.1:15001, by Host (uid 1337)
 *
 * The rules are applied in the pod namespace with `src/interception/cli.ts`.
 * Nothing here touches the machine's own namespace: the veth ends are created
 * directly inside the two namespaces and vanish with them, and every command
 * that changes iptables runs under `ip netns exec`. The proxies run as uid 1337
 * with `setpriv` (util-linux), so the rules exclude them by uid as in the
 * Dockerfile. If this test dies early, `--pdeathsig` kills every process it
 * started, and the exit and signal hooks below still delete the namespaces.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const INTERCEPT = path.join(ROOT, 'src/interception/cli.ts')
const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url))
const NODE = process.execPath

const PROXY_UID = 1337
const APP_UID = 65534
const POD = `outrider-pod-${process.pid}`
const CLIENT = `outrider-client-${process.pid}`
// IFNAMSIZ: interface names stay under 16 bytes (pids have at most 7 digits).
const VETH_CLIENT = `orc${process.pid}`
const VETH_POD = `orp${process.pid}`
const CLIENT_IP = '10.200.0.1'
const POD_IP = '10.200.0.2'

interface Result { code: number, stdout: string, stderr: string }

/** Runs a command to completion (argv, no shell); never throws on a non-zero exit. */
function sh (file: string, args: string[], timeout = 30_000): Promise<Result> {
  return new Promise((resolve) => {
    execFile(file, args, { encoding: 'utf8', timeout }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1
      resolve({ code, stdout, stderr: err !== null && stderr === '' ? err.message : stderr })
    })
  })
}

/** `ip netns exec NS setpriv … node ARGS`: node in `ns`, as `uid` when given, killed if we die. */
function inNs (ns: string, args: string[], uid?: number): string[] {
  const ids = uid === undefined ? [] : [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups']
  return ['netns', 'exec', ns, 'setpriv', '--pdeathsig', 'SIGKILL', ...ids, NODE, ...args]
}

async function unavailable (): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root for network namespaces and iptables (CI runs it as root)'
  const tools: Array<[string, string[], string]> = [
    ['ip', ['netns', 'list'], 'iproute2'],
    ['iptables', ['--version'], 'iptables'],
    ['iptables-restore', ['--version'], 'iptables'],
    ['setpriv', ['--version'], 'util-linux'],
  ]
  for (const [cmd, args, pkg] of tools) {
    const r = await sh(cmd, args)
    if (r.code !== 0) return `\`${cmd} ${args.join(' ')}\` failed (Debian: apt-get install ${pkg}): ${r.stderr.trim()}`
  }
  // The proxies run as uid 1337 and the service as 65534: they must be able to
  // read this checkout (a clone under a mode-700 temp dir is not readable).
  for (const uid of ['1337', '65534']) {
    const r = await sh('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'sh', '-c', 'test -x "$0" && test -r "$1"', NODE, INTERCEPT])
    if (r.code !== 0) return `uid ${uid} cannot read this checkout (${ROOT}): clone it where other users can read it`
  }
  // A namespace with a nat table proves the kernel side (netns, nf_tables or ip_tables, nat).
  const probe = `outrider-probe-${process.pid}`
  const added = await sh('ip', ['netns', 'add', probe])
  if (added.code !== 0) return `\`ip netns add\` is not permitted here: ${added.stderr.trim()}`
  const nat = await sh('ip', ['netns', 'exec', probe, 'iptables', '-t', 'nat', '-S'])
  await sh('ip', ['netns', 'del', probe])
  if (nat.code !== 0) return `no iptables nat table in a network namespace: ${nat.stderr.trim()}`
  return undefined
}

interface NsProcess {
  readonly name: string
  readonly child: ChildProcess
  readonly output: () => string
  readonly exited: Promise<void>
  waitFor (text: string, timeoutMs?: number): Promise<void>
}

function start (name: string, ns: string, args: string[], uid?: number): NsProcess {
  const child = spawn('ip', inNs(ns, args, uid), { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const waiters = new Set<() => void>()
  const onData = (c: Buffer): void => { out += c.toString(); for (const w of waiters) w() }
  child.stdout?.on('data', onData)
  child.stderr?.on('data', onData)
  const exited = new Promise<void>((resolve) => { child.once('exit', () => { resolve(); for (const w of waiters) w() }) })
  return {
    name,
    child,
    output: () => out,
    exited,
    waitFor (text, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (out.includes(text)) { done(); resolve() } else if (child.exitCode !== null || child.signalCode !== null) { done(); reject(new Error(`${name} exited before "${text}":\n${out}`)) }
        }
        const timer = setTimeout(() => { done(); reject(new Error(`${name}: timed out waiting for "${text}":\n${out}`)) }, timeoutMs)
        const done = (): void => { clearTimeout(timer); waiters.delete(check) }
        waiters.add(check)
        check()
      })
    },
  }
}

interface Reply { status: number, headers: Record<string, string | string[] | undefined>, body: string }

/** A plain GET made from inside `ns` by a fresh process (so a fresh connection). */
async function get (ns: string, url: string): Promise<Reply> {
  const r = await sh('ip', inNs(ns, [path.join(FIXTURES, 'get.ts'), url]))
  if (r.code !== 0) throw new Error(`GET ${url} in ${ns} failed (${r.code}): ${r.stderr}`)
  return JSON.parse(r.stdout) as Reply
}

/** The interception CLI, run as root inside the pod namespace. */
function intercept (args: string[]): Promise<Result> {
  return sh('ip', inNs(POD, [INTERCEPT, ...args]))
}

function outriderConfig (listen: string, admin: number, cluster: string, endpoint: string, match: string): string {
  return `listen: { host: ${listen.split(':')[0]}, port: ${listen.split(':')[1]} }
admin: { host: 127.0.0.1, port: ${admin} }
shutdown: { drainTimeout: 1s }
clusters:
  - name: ${cluster}
    endpoints: [{ url: '${endpoint}' }]
routes:
  - name: ${cluster}
    match: ${match}
    cluster: ${cluster}
`
}

/** Best effort, synchronous: also runs from the 'exit' event if the test dies before teardown. */
function removeNamespaces (): void {
  for (const ns of [POD, CLIENT]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' })
  // Only if creation failed halfway and left our uniquely named end behind.
  spawnSync('ip', ['link', 'del', VETH_CLIENT], { stdio: 'ignore' })
}

const FATAL_SIGNALS = ['SIGALRM', 'SIGTERM', 'SIGINT', 'SIGHUP'] as const

/**
 * Removes the namespaces if the test process is ended early (tap's timeout
 * sends SIGALRM), then lets the signal do what it would have done: re-sent with
 * our listener gone, tap's own handler (or the default action) takes it.
 */
function onFatalSignal (sig: NodeJS.Signals): void {
  removeNamespaces()
  disarm()
  process.kill(process.pid, sig)
}

function arm (): void {
  process.once('exit', removeNamespaces)
  for (const sig of FATAL_SIGNALS) process.on(sig, onFatalSignal)
}

function disarm (): void {
  process.removeListener('exit', removeNamespaces)
  for (const sig of FATAL_SIGNALS) process.removeListener(sig, onFatalSignal)
}

const skip = await unavailable()

t.test('iptables interception in a pod namespace: inbound through Outrider, outbound routed by Host, cleanup restores direct traffic', { skip }, async (t) => {
  const procs: NsProcess[] = []
  const dir = await mkdtemp(path.join(tmpdir(), 'outrider-netns-'))
  // The proxies run as uid 1337 and must read their configs.
  await chmod(dir, 0o755)
  arm()
  t.teardown(async () => {
    if (!t.passing()) for (const p of procs) t.comment(`--- ${p.name} ---\n${p.output()}`)
    for (const p of procs) p.child.kill('SIGKILL')
    await Promise.race([Promise.all(procs.map((p) => p.exited)), new Promise((resolve) => setTimeout(resolve, 5_000))])
    removeNamespaces()
    disarm()
    await rm(dir, { recursive: true, force: true })
  })

  const ip = async (...args: string[]): Promise<void> => {
    const r = await sh('ip', args)
    if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`)
  }
  await ip('netns', 'add', POD)
  await ip('netns', 'add', CLIENT)
  await ip('link', 'add', VETH_CLIENT, 'netns', CLIENT, 'type', 'veth', 'peer', 'name', VETH_POD, 'netns', POD)
  for (const [ns, dev, addr] of [[CLIENT, VETH_CLIENT, CLIENT_IP], [POD, VETH_POD, POD_IP]] as const) {
    await ip('-n', ns, 'addr', 'add', `${addr}/24`, 'dev', dev)
    await ip('-n', ns, 'link', 'set', dev, 'up')
    await ip('-n', ns, 'link', 'set', 'lo', 'up')
  }

  await writeFile(path.join(dir, 'inbound.yaml'), outriderConfig('0.0.0.0:15006', 9901, 'inbound', 'http://127.0.0.1:8080', '{ pathPrefix: / }'))
  await writeFile(path.join(dir, 'outbound.yaml'), outriderConfig('127.0.0.1:15001', 9902, 'ext', `http://${CLIENT_IP}:80`, '{ host: ext.test }'))
  const external = start('external', CLIENT, [path.join(FIXTURES, 'external.ts'), CLIENT_IP, '80'])
  const service = start('service', POD, [path.join(FIXTURES, 'service.ts'), '8080', `http://${CLIENT_IP}/ext`], APP_UID)
  const inbound = start('inbound outrider', POD, [CLI, '--config', path.join(dir, 'inbound.yaml')], PROXY_UID)
  const outbound = start('outbound outrider', POD, [CLI, '--config', path.join(dir, 'outbound.yaml')], PROXY_UID)
  procs.push(external, service, inbound, outbound)
  await Promise.all([external.waitFor('external listening'), service.waitFor('service listening'), inbound.waitFor('proxy listening'), outbound.waitFor('proxy listening')])

  const SERVICE = `http://${POD_IP}:8080`
  const before = await get(CLIENT, `${SERVICE}/`)
  t.equal(before.status, 200)
  t.equal(before.headers.via, undefined, 'without rules the client reaches the service directly')
  const beforeOut = JSON.parse((JSON.parse((await get(CLIENT, `${SERVICE}/call-out`)).body) as { upstreamBody: string }).upstreamBody) as { headers: Record<string, string> }
  t.equal(beforeOut.headers.via, undefined, 'without rules the service reaches the external server directly')

  const applied = await intercept(['--apply', '--inbound-port', '15006', '--outbound-port', '15001', '--proxy-uid', String(PROXY_UID), '--service-ports', '8080', '--outbound-ports', '80'])
  t.equal(applied.code, 0, `--apply succeeds ${applied.stderr}`.trim())
  const saved = await sh('ip', ['netns', 'exec', POD, 'iptables-save', '-t', 'nat'])
  t.match(saved.stdout, '-A PREROUTING -p tcp -j OUTRIDER_INBOUND', 'the rules are in the pod namespace')
  t.match(saved.stdout, '-A OUTRIDER_OUTBOUND -m owner --uid-owner 1337 -j RETURN', 'the proxy uid is excluded')

  // Inbound: same client, same address, now through the inbound Outrider.
  const through = await get(CLIENT, `${SERVICE}/hello`)
  t.equal(through.status, 200)
  t.match(through.headers.via, /outrider/, 'the response came through Outrider')
  t.match(through.headers['x-request-id'], /\S/, 'Outrider assigned a request id')
  const seen = JSON.parse(through.body) as { from: string, headers: Record<string, string> }
  t.equal(seen.from, 'service')
  t.match(seen.headers.via, /outrider/, 'the service saw Outrider\'s Via')
  t.equal(seen.headers['x-forwarded-for'], CLIENT_IP, 'REDIRECT keeps the client\'s address')
  const metrics = await get(POD, 'http://127.0.0.1:9901/metrics')
  t.match(metrics.body, /outrider_requests_total\{route="inbound",method="GET",status_class="2xx"\} [1-9]/, 'the inbound Outrider counted the request')

  // Outbound: the service's own call to 10.200.0.1:80 is routed by the outbound Outrider.
  const call = await get(CLIENT, `${SERVICE}/call-out`)
  t.equal(call.status, 200)
  const callBody = JSON.parse(call.body) as { upstreamStatus: number, upstreamHeaders: Record<string, string>, upstreamBody: string }
  t.equal(callBody.upstreamStatus, 200, 'the outbound call succeeded')
  t.match(callBody.upstreamHeaders.via, /outrider/, 'its response came back through Outrider')
  const ext = JSON.parse(callBody.upstreamBody) as { from: string, url: string, headers: Record<string, string> }
  t.equal(ext.from, 'external')
  t.equal(ext.url, '/ext')
  t.equal(ext.headers.host, 'ext.test')
  t.match(ext.headers.via, /outrider/, 'the external server saw Outrider\'s Via')
  const outMetrics = await get(POD, 'http://127.0.0.1:9902/metrics')
  t.match(outMetrics.body, /outrider_requests_total\{route="ext",method="GET",status_class="2xx"\} [1-9]/, 'the outbound Outrider counted it')

  // Host is all the outbound listener knows (no SO_ORIGINAL_DST from Node): an unknown host gets no route.
  const unknown = JSON.parse((await get(CLIENT, `${SERVICE}/call-out?host=unknown.test`)).body) as { upstreamStatus: number, upstreamHeaders: Record<string, string> }
  t.equal(unknown.upstreamStatus, 404, 'a Host the outbound Outrider has no route for is answered 404 by it')
  t.match(unknown.upstreamHeaders['content-type'], /problem\+json/)

  const again = await intercept(['--apply', '--service-ports', '8080'])
  t.equal(again.code, 0, `applying again replaces the rules ${again.stderr}`.trim())
  t.equal((await sh('ip', ['netns', 'exec', POD, 'iptables-save', '-t', 'nat'])).stdout.split('-j OUTRIDER_INBOUND').length - 1, 1, 'one jump into our chain, not two')

  const cleaned = await intercept(['--cleanup'])
  t.equal(cleaned.code, 0, `--cleanup succeeds ${cleaned.stderr}`.trim())
  t.notMatch((await sh('ip', ['netns', 'exec', POD, 'iptables-save', '-t', 'nat'])).stdout, 'OUTRIDER_', 'no chain or jump of ours is left')
  const direct = await get(CLIENT, `${SERVICE}/`)
  t.equal(direct.status, 200)
  t.equal(direct.headers.via, undefined, 'after cleanup the client reaches the service directly')
  const directOut = JSON.parse((JSON.parse((await get(CLIENT, `${SERVICE}/call-out`)).body) as { upstreamBody: string }).upstreamBody) as { headers: Record<string, string> }
  t.equal(directOut.headers.via, undefined, 'after cleanup the service reaches the external server directly')
  t.equal((await intercept(['--cleanup'])).code, 0, 'cleanup is idempotent')
})
