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
 *   client ns (10.200.0.1,   ── veth ──  pod ns (10.200.0.2, fd00:200::2)
 *              fd00:200::1)
 *   external server :80                  service :8080 (uid 65534, knows nothing of Outrider)
 *   plain HTTP client                    inbound Outrider [::]:15006 → 127.0.0.1:8080 (uid 1337)
 *                                        outbound Outrider [::]:15001, by Host (uid 1337)
 *
 * Both families are intercepted: iptables and ip6tables get the same rules.
 * The listeners are dual-stack (`::`) because REDIRECT sends IPv6 to `::1`
 * and the pod's IPv6 addresses. The IPv6 addresses are ULAs added with
 * `nodad`, so they are usable at once. Where the kernel has no IPv6 nat
 * table, the IPv6 part is skipped with the reason and the rules are applied
 * with --no-ipv6.
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
const CLIENT_IP6 = 'fd00:200::1'
const POD_IP6 = 'fd00:200::2'

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
  const nat6 = await sh('ip', ['netns', 'exec', probe, 'ip6tables', '-t', 'nat', '-S'])
  await sh('ip', ['netns', 'del', probe])
  if (nat.code !== 0) return `no iptables nat table in a network namespace: ${nat.stderr.trim()}`
  noIpv6 = nat6.code === 0 ? false : `no ip6tables nat table in a network namespace (kernel without IPv6 NAT?): ${nat6.stderr.trim()}`
  return undefined
}

/** Why the IPv6 part cannot run here, once unavailable() has looked; false when it can. */
let noIpv6: string | false = 'not probed'

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

/** An Outrider config: `listen` as `host:port` (`[::]:15006` for dual-stack), one route per [cluster, endpoint, match]. */
function outriderConfig (listen: string, admin: number, routes: Array<[cluster: string, endpoint: string, match: string]>): string {
  const colon = listen.lastIndexOf(':')
  const host = listen.slice(0, colon).replace(/^\[(.*)\]$/, '$1')
  return `listen: { host: '${host}', port: ${listen.slice(colon + 1)} }
admin: { host: 127.0.0.1, port: ${admin} }
shutdown: { drainTimeout: 1s }
clusters:
${routes.map(([cluster, endpoint]) => `  - name: ${cluster}\n    endpoints: [{ url: '${endpoint}' }]`).join('\n')}
routes:
${routes.map(([cluster, , match]) => `  - name: ${cluster}\n    match: ${match}\n    cluster: ${cluster}`).join('\n')}
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

/** The JSON a fixture answered with (a service's reply, or the upstream body inside it). */
type Seen = { from: string, url: string, peer: string, headers: Record<string, string> }
type CallOut = { upstreamStatus: number, upstreamHeaders: Record<string, string>, upstreamBody: string }

t.test('iptables and ip6tables interception in a pod namespace: inbound through Outrider, outbound routed by Host, cleanup restores direct traffic', { skip }, async (t) => {
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
  for (const [ns, dev, addr, addr6] of [[CLIENT, VETH_CLIENT, CLIENT_IP, CLIENT_IP6], [POD, VETH_POD, POD_IP, POD_IP6]] as const) {
    await ip('-n', ns, 'addr', 'add', `${addr}/24`, 'dev', dev)
    // nodad: no duplicate address detection, so the address works at once.
    if (noIpv6 === false) await ip('-n', ns, 'addr', 'add', `${addr6}/64`, 'dev', dev, 'nodad')
    await ip('-n', ns, 'link', 'set', dev, 'up')
    await ip('-n', ns, 'link', 'set', 'lo', 'up')
  }

  await writeFile(path.join(dir, 'inbound.yaml'), outriderConfig('[::]:15006', 9901, [['inbound', 'http://127.0.0.1:8080', '{ pathPrefix: / }']]))
  await writeFile(path.join(dir, 'outbound.yaml'), outriderConfig('[::]:15001', 9902, [
    ['ext', `http://${CLIENT_IP}:80`, '{ host: ext.test }'],
    ['ext6', `http://[${CLIENT_IP6}]:80`, '{ host: ext6.test }'],
  ]))
  const external = start('external', CLIENT, [path.join(FIXTURES, 'external.ts'), noIpv6 === false ? '::' : CLIENT_IP, '80'])
  const service = start('service', POD, [path.join(FIXTURES, 'service.ts'), '8080', `http://${CLIENT_IP}/ext`], APP_UID)
  const inbound = start('inbound outrider', POD, [CLI, '--config', path.join(dir, 'inbound.yaml')], PROXY_UID)
  const outbound = start('outbound outrider', POD, [CLI, '--config', path.join(dir, 'outbound.yaml')], PROXY_UID)
  procs.push(external, service, inbound, outbound)
  await Promise.all([external.waitFor('external listening'), service.waitFor('service listening'), inbound.waitFor('proxy listening'), outbound.waitFor('proxy listening')])

  const SERVICE = `http://${POD_IP}:8080`
  const SERVICE6 = `http://[${POD_IP6}]:8080`
  /** The service's own outbound call, to the IPv6 external server when `v6`. */
  const callOut = async (service: string, query = '', v6 = false): Promise<CallOut> => {
    const to = v6 ? `url=${encodeURIComponent(`http://[${CLIENT_IP6}]/ext`)}&host=ext6.test` : ''
    const sep = query === '' || to === '' ? '' : '&'
    return JSON.parse((await get(CLIENT, `${service}/call-out?${query}${sep}${to}`)).body) as CallOut
  }
  const saved = async (cmd: 'iptables-save' | 'ip6tables-save'): Promise<string> => (await sh('ip', ['netns', 'exec', POD, cmd, '-t', 'nat'])).stdout

  const before = await get(CLIENT, `${SERVICE}/`)
  t.equal(before.status, 200)
  t.equal(before.headers.via, undefined, 'without rules the client reaches the service directly')
  t.equal((JSON.parse((await callOut(SERVICE)).upstreamBody) as Seen).headers.via, undefined, 'without rules the service reaches the external server directly')
  if (noIpv6 === false) {
    t.equal((await get(CLIENT, `${SERVICE6}/`)).headers.via, undefined, 'over IPv6 too')
    t.equal((JSON.parse((await callOut(SERVICE6, '', true)).upstreamBody) as Seen).headers.via, undefined, 'and its IPv6 call too')
  }

  const noIpv6Flag = noIpv6 === false ? [] : ['--no-ipv6']
  const applied = await intercept(['--apply', '--inbound-port', '15006', '--outbound-port', '15001', '--proxy-uid', String(PROXY_UID), '--service-ports', '8080', '--outbound-ports', '80', ...noIpv6Flag])
  t.equal(applied.code, 0, `--apply succeeds ${applied.stderr}`.trim())
  const v4Rules = await saved('iptables-save')
  t.match(v4Rules, '-A PREROUTING -p tcp -j OUTRIDER_INBOUND', 'the rules are in the pod namespace')
  t.match(v4Rules, '-A OUTRIDER_OUTBOUND -m owner --uid-owner 1337 -j RETURN', 'the proxy uid is excluded')

  await t.test('IPv4: the client goes through the inbound Outrider, the service\'s call through the outbound one', async (t) => {
    // Inbound: same client, same address, now through the inbound Outrider.
    const through = await get(CLIENT, `${SERVICE}/hello`)
    t.equal(through.status, 200)
    t.match(through.headers.via, /outrider/, 'the response came through Outrider')
    t.match(through.headers['x-request-id'], /\S/, 'Outrider assigned a request id')
    const seen = JSON.parse(through.body) as Seen
    t.equal(seen.from, 'service')
    t.match(seen.headers.via, /outrider/, 'the service saw Outrider\'s Via')
    // The inbound listener is dual-stack, where an IPv4 peer reads as ::ffff:a.b.c.d.
    t.match(seen.headers['x-forwarded-for'], new RegExp(`^(::ffff:)?${CLIENT_IP.replaceAll('.', '\\.')}$`), 'REDIRECT keeps the client\'s address')
    const metrics = await get(POD, 'http://127.0.0.1:9901/metrics')
    t.match(metrics.body, /outrider_requests_total\{route="inbound",method="GET",status_class="2xx"\} [1-9]/, 'the inbound Outrider counted the request')

    // Outbound: the service's own call to 10.200.0.1:80 is routed by the outbound Outrider.
    const call = await callOut(SERVICE)
    t.equal(call.upstreamStatus, 200, 'the outbound call succeeded')
    t.match(call.upstreamHeaders.via, /outrider/, 'its response came back through Outrider')
    const ext = JSON.parse(call.upstreamBody) as Seen
    t.equal(ext.from, 'external')
    t.equal(ext.url, '/ext')
    t.equal(ext.headers.host, 'ext.test')
    t.match(ext.headers.via, /outrider/, 'the external server saw Outrider\'s Via')
    const outMetrics = await get(POD, 'http://127.0.0.1:9902/metrics')
    t.match(outMetrics.body, /outrider_requests_total\{route="ext",method="GET",status_class="2xx"\} [1-9]/, 'the outbound Outrider counted it')

    // Host is all the outbound listener knows (no SO_ORIGINAL_DST from Node): an unknown host gets no route.
    const unknown = await callOut(SERVICE, 'host=unknown.test')
    t.equal(unknown.upstreamStatus, 404, 'a Host the outbound Outrider has no route for is answered 404 by it')
    t.match(unknown.upstreamHeaders['content-type'], /problem\+json/)
  })

  await t.test('IPv6: the same paths over ULA addresses, through ip6tables', { skip: noIpv6 }, async (t) => {
    const v6Rules = await saved('ip6tables-save')
    t.match(v6Rules, '-A PREROUTING -p tcp -j OUTRIDER_INBOUND', 'ip6tables got the same rules')
    t.match(v6Rules, '-A OUTRIDER_OUTBOUND -m owner --uid-owner 1337 -j RETURN')

    const through = await get(CLIENT, `${SERVICE6}/hello6`)
    t.equal(through.status, 200)
    t.match(through.headers.via, /outrider/, 'the IPv6 client\'s request went through the inbound Outrider')
    const seen = JSON.parse(through.body) as Seen
    t.equal(seen.url, '/hello6')
    t.equal(seen.headers['x-forwarded-for'], CLIENT_IP6, 'the IPv6 client\'s address is kept')
    t.match(seen.peer, /^(::ffff:)?127\.0\.0\.1$/, 'the service was reached on loopback, by Outrider')

    const call = await callOut(SERVICE6, '', true)
    t.equal(call.upstreamStatus, 200, 'the service\'s IPv6 call succeeded')
    t.match(call.upstreamHeaders.via, /outrider/, 'it was redirected to the outbound Outrider (on ::1)')
    const ext = JSON.parse(call.upstreamBody) as Seen
    t.equal(ext.headers.host, 'ext6.test')
    t.match(ext.headers.via, /outrider/)
    t.equal(ext.peer, POD_IP6, 'Outrider reached the external server over IPv6, from the pod\'s address')
    const outMetrics = await get(POD, 'http://127.0.0.1:9902/metrics')
    t.match(outMetrics.body, /outrider_requests_total\{route="ext6",method="GET",status_class="2xx"\} [1-9]/, 'the outbound Outrider counted it')
  })

  const again = await intercept(['--apply', '--service-ports', '8080', ...(noIpv6 === false ? ['--exclude-inbound-cidrs', `${CLIENT_IP6}/128`] : noIpv6Flag)])
  t.equal(again.code, 0, `applying again replaces the rules ${again.stderr}`.trim())
  t.equal((await saved('iptables-save')).split('-j OUTRIDER_INBOUND').length - 1, 1, 'one jump into our chain, not two')
  if (noIpv6 === false) {
    t.equal((await saved('ip6tables-save')).split('-j OUTRIDER_INBOUND').length - 1, 1, 'in ip6tables too')
    t.match(await saved('ip6tables-save'), `-A OUTRIDER_INBOUND -s ${CLIENT_IP6}/128 -j RETURN`, 'the IPv6 CIDR went to ip6tables')
    t.notMatch(await saved('iptables-save'), 'fd00', 'and not to iptables')
    t.equal((await get(CLIENT, `${SERVICE6}/`)).headers.via, undefined, 'the excluded IPv6 client reaches the service directly')
    t.match((await get(CLIENT, `${SERVICE}/`)).headers.via, /outrider/, 'while its IPv4 traffic is still intercepted')
  }

  const cleaned = await intercept(['--cleanup', ...noIpv6Flag])
  t.equal(cleaned.code, 0, `--cleanup succeeds ${cleaned.stderr}`.trim())
  t.notMatch(await saved('iptables-save'), 'OUTRIDER_', 'no chain or jump of ours is left')
  if (noIpv6 === false) t.notMatch(await saved('ip6tables-save'), 'OUTRIDER_', 'in ip6tables either')
  const direct = await get(CLIENT, `${SERVICE}/`)
  t.equal(direct.status, 200)
  t.equal(direct.headers.via, undefined, 'after cleanup the client reaches the service directly')
  t.equal((JSON.parse((await callOut(SERVICE)).upstreamBody) as Seen).headers.via, undefined, 'after cleanup the service reaches the external server directly')
  if (noIpv6 === false) {
    t.equal((await get(CLIENT, `${SERVICE6}/`)).headers.via, undefined, 'over IPv6 too')
    t.equal((JSON.parse((await callOut(SERVICE6, '', true)).upstreamBody) as Seen).headers.via, undefined, 'and its IPv6 call too')
  }
  t.equal((await intercept(['--cleanup', ...noIpv6Flag])).code, 0, 'cleanup is idempotent')
})
