import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdtemp, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { runIptablesCommand, type Io } from '../../src/interception/cli.ts'

const INTERCEPT = fileURLToPath(new URL('../../src/interception/cli.ts', import.meta.url))

async function run (argv: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  let stdout = ''
  let stderr = ''
  const io: Io = { stdout: { write: (s: string) => { stdout += s } }, stderr: { write: (s: string) => { stderr += s } } }
  const code = await runIptablesCommand(argv, io)
  return { code, stdout, stderr }
}

/** The CLI as its own process; `prefix` runs it through another command (setpriv). */
function spawnCli (args: string[], env: NodeJS.ProcessEnv = process.env, prefix: string[] = []): Promise<{ code: number, out: string }> {
  const [file = process.execPath, ...rest] = [...prefix, process.execPath, INTERCEPT, ...args]
  return new Promise((resolve) => {
    execFile(file, rest, { env, encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : Number((err as { code?: unknown }).code ?? 1), out: `${stdout}${stderr}` })
    })
  })
}

function onPath (cmd: string, args: string[]): Promise<boolean> {
  return new Promise((resolve) => { execFile(cmd, args, (err) => { resolve(err === null) }) })
}

t.test('--print (the default) writes a shell script without touching iptables', async (t) => {
  const r = await run(['--service-ports', '8080,9090', '--exclude-inbound-ports', '15090', '--exclude-cidrs', '169.254.169.254', '--proxy-uid', '1000'])
  t.equal(r.code, 0)
  t.equal(r.stderr, '')
  t.match(r.stdout, /^#!\/bin\/sh\n/)
  t.match(r.stdout, 'iptables -t nat -A OUTRIDER_INBOUND -p tcp --dport 9090 -j OUTRIDER_IN_REDIRECT\n')
  t.match(r.stdout, 'iptables -t nat -A OUTRIDER_OUTBOUND -m owner --uid-owner 1000 -j RETURN\n')
  t.match(r.stdout, 'iptables -t nat -A OUTRIDER_OUTBOUND -d 169.254.169.254 -j RETURN\n')
  t.match(r.stdout, '\nip6tables -t nat -A OUTRIDER_INBOUND -p tcp --dport 9090 -j OUTRIDER_IN_REDIRECT\n', 'the same rules for IPv6')
  t.notMatch(r.stdout, 'ip6tables -t nat -A OUTRIDER_OUTBOUND -d 169.254.169.254', 'an IPv4 CIDR stays out of ip6tables')
  t.same(await run(['iptables', '--print', '--service-ports', '8080', '--proxy-uid', '1000', '--exclude-inbound-ports', '15090', '--exclude-cidrs', '169.254.169.254']),
    await run(['--service-ports', '8080', '--proxy-uid', '1000', '--exclude-inbound-ports', '15090', '--exclude-cidrs', '169.254.169.254']),
    'a leading "iptables" is the subcommand\'s own name')
})

t.test('--format restore and --cleanup --print', async (t) => {
  const restore = await run(['--format', 'restore', '--outbound-ports', 'none', '--inbound-port', '15007'])
  t.equal(restore.code, 0)
  t.equal(restore.stdout, [
    '*nat',
    ':OUTRIDER_INBOUND - [0:0]',
    ':OUTRIDER_IN_REDIRECT - [0:0]',
    '-A OUTRIDER_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15007',
    '-A OUTRIDER_INBOUND -p tcp -j OUTRIDER_IN_REDIRECT',
    '-A PREROUTING -p tcp -j OUTRIDER_INBOUND',
    'COMMIT',
    '',
  ].join('\n'))
  const cleanup = await run(['--cleanup', '--print', '--iptables', 'iptables-legacy'])
  t.equal(cleanup.code, 0)
  t.match(cleanup.stdout, '\niptables-legacy -t nat -D OUTPUT -p tcp -j OUTRIDER_OUTBOUND 2>/dev/null || true\n')
  t.match(cleanup.stdout, '\nip6tables-legacy -t nat -D OUTPUT -p tcp -j OUTRIDER_OUTBOUND 2>/dev/null || true\n')
})

t.test('IPv6: --format restore6, CIDRs by family, --no-ipv6', async (t) => {
  const args = ['--outbound-ports', 'none', '--exclude-inbound-cidrs', '10.9.0.0/16,fd00:9::/64']
  const v6 = await run(['--format', 'restore6', ...args])
  t.equal(v6.code, 0)
  t.equal(v6.stdout, [
    '*nat',
    ':OUTRIDER_INBOUND - [0:0]',
    ':OUTRIDER_IN_REDIRECT - [0:0]',
    '-A OUTRIDER_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006',
    '-A OUTRIDER_INBOUND -s fd00:9::/64 -j RETURN',
    '-A OUTRIDER_INBOUND -p tcp -j OUTRIDER_IN_REDIRECT',
    '-A PREROUTING -p tcp -j OUTRIDER_INBOUND',
    'COMMIT',
    '',
  ].join('\n'), 'ip6tables-restore input with the IPv6 CIDR only')
  t.match((await run(['--format', 'restore', ...args])).stdout, '-A OUTRIDER_INBOUND -s 10.9.0.0/16 -j RETURN\n-A OUTRIDER_INBOUND -p tcp')
  const v4only = await run(['--no-ipv6', '--exclude-cidrs', '169.254.169.254'])
  t.equal(v4only.code, 0)
  t.notMatch(v4only.stdout, 'ip6tables')
  t.notMatch((await run(['--cleanup', '--print', '--no-ipv6'])).stdout, 'ip6tables')
})

t.test('usage errors exit 2 with the reason and the usage', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['--apply', '--cleanup'], /--apply cannot be combined/],
    [['--dry-run'], /--dry-run goes with --apply or --cleanup/],
    [['--print', '--dry-run', '--cleanup'], /--dry-run goes with/],
    [['--service-ports', '80,x'], /"x" is not a port/],
    [['--inbound-port', '15006,15007'], /--inbound-port takes one port/],
    [['--proxy-uid', 'outrider'], /--proxy-uid takes a numeric id/],
    [['--exclude-cidrs', 'fd00::/8', '--no-ipv6'], /"fd00::\/8" is an IPv6 CIDR, but IPv6 interception is off/],
    [['--exclude-cidrs', 'fd00::/200'], /is not a CIDR/],
    [['--format', 'restore6', '--no-ipv6'], /--no-ipv6 turns off/],
    [['--format', 'json'], /--format must be sh, restore or restore6/],
    [['--iptables', '/bin/sh'], /--iptables must be one of/],
    [['--bogus'], /Unknown option '--bogus'/],
    [['apply'], /unexpected argument "apply"/],
  ]
  for (const [argv, reason] of cases) {
    const r = await run(argv)
    t.equal(r.code, 2, argv.join(' '))
    t.match(r.stderr, reason, argv.join(' '))
    t.match(r.stderr, 'Usage:')
    t.equal(r.stdout, '')
  }
  const help = await run(['--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, 'Exit codes')
})

t.test('runs on its own: node src/interception/cli.ts', async (t) => {
  const r = await spawnCli(['--format', 'restore'])
  t.equal(r.code, 0)
  t.match(r.out, /^\*nat\n/)
  t.equal((await spawnCli(['--bogus'])).code, 2)
})

// Both cases only read (--dry-run): even a wrong turn could not change the machine's rules.
t.test('a clear error, exit 1, when iptables is missing', async (t) => {
  const r = await spawnCli(['--apply', '--dry-run'], { ...process.env, PATH: '/nonexistent' })
  t.equal(r.code, 1)
  t.match(r.out, 'iptables-save not found on PATH: install iptables (Debian/Ubuntu: apt-get install iptables)')
})

const isRoot = process.getuid?.() === 0
const hasIptables = await onPath('iptables-save', ['--version'])
const hasSetpriv = await onPath('setpriv', ['--version'])
// Dropping to uid 65534 needs a checkout that user can read (not a mode-700 temp dir).
const readableByNobody = !isRoot || !hasSetpriv ||
  await onPath('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sh', '-c', 'test -x "$0" && test -r "$1"', process.execPath, INTERCEPT])
const noUnprivileged = !hasIptables
  ? 'iptables is not installed (Debian: apt-get install iptables)'
  : isRoot && !hasSetpriv
    ? 'running as root and setpriv (util-linux) is missing to drop privileges'
    : !readableByNobody ? `uid 65534 cannot read this checkout (${INTERCEPT}): clone it where other users can read it` : false

t.test('a clear error, exit 1, when not root', { skip: noUnprivileged }, async (t) => {
  const prefix = isRoot ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] : []
  const r = await spawnCli(['--cleanup', '--dry-run'], process.env, prefix)
  t.equal(r.code, 1)
  t.match(r.out, /iptables-save was refused \(running as uid \d+\): run as root, or with CAP_NET_ADMIN/)
})

const iptablesSave = await new Promise<string | undefined>((resolve) => {
  execFile('sh', ['-c', 'command -v iptables-save'], (err, stdout) => { resolve(err === null ? stdout.trim() : undefined) })
})

// Reads the host's nat table (--dry-run), changes nothing; root only, so iptables-save can read it.
t.test('without ip6tables: exit 1 before anything changes, naming --no-ipv6; --no-ipv6 goes ahead', { skip: !isRoot || iptablesSave === undefined ? 'needs root and iptables-save' : false }, async (t) => {
  const bin = await mkdtemp(path.join(tmpdir(), 'outrider-no-ip6tables-'))
  t.teardown(() => rm(bin, { recursive: true, force: true }))
  // The real iptables-save, alone on PATH: a host with iptables but no ip6tables.
  await symlink(iptablesSave as string, path.join(bin, 'iptables-save'))
  const env = { ...process.env, PATH: bin }
  const both = await spawnCli(['--apply', '--dry-run'], env)
  t.equal(both.code, 1)
  t.match(both.out, 'ip6tables-save not found on PATH')
  t.match(both.out, 'pass --no-ipv6 where there is no IPv6')
  t.notMatch(both.out, '*nat', 'nothing was planned, let alone applied')
  const v4 = await spawnCli(['--apply', '--dry-run', '--no-ipv6'], env)
  t.equal(v4.code, 0, v4.out)
  t.match(v4.out, /^# iptables-restore --noflush\n\*nat\n/)
  t.notMatch(v4.out, 'ip6tables')
})
