import t from 'tap'
import {
  CHAINS, DEFAULTS, buildAllRules, buildRules, cleanupInput, cleanupScript, commandFor, familiesOf, installScript, parseCidrs,
  parsePortSelection, parsePorts, parseSaved, restoreInput, shellJoin, type Family, type InterceptionOptions,
} from '../../src/interception/rules.ts'

const opts = (o: Partial<InterceptionOptions> = {}): InterceptionOptions => ({ ...DEFAULTS, ...o })
const lines = (chain: string, o: InterceptionOptions, family: Family = 4): string[] =>
  buildRules(o, family).rules.filter((r) => r.chain === chain).map((r) => r.spec.join(' '))

t.test('inbound: exclusions before redirects, listed ports or all, entry jump last', async (t) => {
  const o = opts({ servicePorts: { by: 'list', ports: [8080, 9090] }, excludeInboundPorts: [15090], excludeInboundCidrs: ['10.1.0.0/16'] })
  t.same(lines(CHAINS.inbound, o), [
    '-s 10.1.0.0/16 -j RETURN',
    '-p tcp --dport 15090 -j RETURN',
    '-p tcp --dport 8080 -j OUTRIDER_IN_REDIRECT',
    '-p tcp --dport 9090 -j OUTRIDER_IN_REDIRECT',
  ])
  t.same(lines(CHAINS.inboundRedirect, o), ['-p tcp -j REDIRECT --to-ports 15006'])
  t.same(lines('PREROUTING', o), ['-p tcp -j OUTRIDER_INBOUND'])
  const rules = buildRules(o).rules
  t.equal(rules.findIndex((r) => r.chain === 'PREROUTING'), rules.findLastIndex((r) => r.chain.startsWith('OUTRIDER_IN')) + 1,
    'the PREROUTING jump comes after the chain it enters is complete')
  t.same(lines(CHAINS.inbound, opts({ servicePorts: { by: 'all' }, excludeInboundPorts: [22] })), [
    '-p tcp --dport 22 -j RETURN',
    '-p tcp -j OUTRIDER_IN_REDIRECT',
  ])
})

t.test('outbound: the proxy uid (and gid) first, then lo, CIDRs and ports, then the redirect', async (t) => {
  const o = opts({ proxyUid: 1337, proxyGid: 1338, excludeCidrs: ['169.254.169.254', '10.0.0.0/8'], excludeOutboundPorts: [5432], outboundPorts: { by: 'list', ports: [80, 8080] }, outboundPort: 15002 })
  t.same(lines(CHAINS.outbound, o), [
    '-m owner --uid-owner 1337 -j RETURN',
    '-m owner --gid-owner 1338 -j RETURN',
    '-o lo -j RETURN',
    '-d 169.254.169.254 -j RETURN',
    '-d 10.0.0.0/8 -j RETURN',
    '-p tcp --dport 5432 -j RETURN',
    '-p tcp --dport 80 -j OUTRIDER_REDIRECT',
    '-p tcp --dport 8080 -j OUTRIDER_REDIRECT',
  ])
  t.same(lines(CHAINS.outboundRedirect, o), ['-p tcp -j REDIRECT --to-ports 15002'])
  t.same(lines('OUTPUT', o), ['-p tcp -j OUTRIDER_OUTBOUND'])
  t.same(lines(CHAINS.outbound, opts({ outboundPorts: { by: 'all' } })).at(-1), '-p tcp -j OUTRIDER_REDIRECT')
})

t.test('an empty port list turns a direction off entirely', async (t) => {
  const inboundOnly = buildRules(opts({ outboundPorts: { by: 'list', ports: [] } }))
  t.same(inboundOnly.chains, [CHAINS.inbound, CHAINS.inboundRedirect])
  t.notOk(inboundOnly.rules.some((r) => r.chain === 'OUTPUT'))
  const outboundOnly = buildRules(opts({ servicePorts: { by: 'list', ports: [] } }))
  t.same(outboundOnly.chains, [CHAINS.outbound, CHAINS.outboundRedirect])
  t.same(buildRules(opts({ servicePorts: { by: 'list', ports: [] }, outboundPorts: { by: 'list', ports: [] } })), { chains: [], rules: [] })
})

t.test('invalid options are refused before any rule is written', async (t) => {
  t.throws(() => buildRules(opts({ inboundPort: 0 })), RangeError)
  t.throws(() => buildRules(opts({ outboundPort: 70000 })), RangeError)
  t.throws(() => buildRules(opts({ proxyUid: -1 })), RangeError)
  t.throws(() => buildRules(opts({ proxyGid: 1.5 })), RangeError)
  t.throws(() => buildRules(opts({ servicePorts: { by: 'list', ports: [0] } })), RangeError)
  t.throws(() => buildRules(opts({ excludeCidrs: ['10.0.0.0/8 -j ACCEPT'] })), RangeError, 'nothing can smuggle extra arguments')
  t.throws(() => buildRules(opts({ excludeCidrs: ['fd00::/8 -j ACCEPT'] }), 6), RangeError, 'nor through an IPv6 CIDR')
  t.throws(() => buildRules(opts({ ipv6: false, excludeInboundCidrs: ['fd00::/8'] })), /IPv6 interception is off/,
    'an IPv6 CIDR with IPv6 off is refused, not silently ignored')
})

t.test('parsers: ports, port selections, CIDRs', async (t) => {
  t.same(parsePorts(' 80, 8080 ,'), [80, 8080])
  t.same(parsePorts(''), [])
  t.throws(() => parsePorts('80,http'), RangeError)
  t.throws(() => parsePorts('65536'), RangeError)
  t.throws(() => parsePorts('1e3'), RangeError)
  t.same(parsePortSelection('*'), { by: 'all' })
  t.same(parsePortSelection('all'), { by: 'all' })
  t.same(parsePortSelection('none'), { by: 'list', ports: [] })
  t.same(parsePortSelection('8080'), { by: 'list', ports: [8080] })
  t.same(parseCidrs('169.254.169.254,10.0.0.0/8'), ['169.254.169.254', '10.0.0.0/8'])
  t.same(parseCidrs('fd00:ec2::254, 2001:db8::/32,::/0'), ['fd00:ec2::254', '2001:db8::/32', '::/0'])
  const bad = ['10.0.0.0/33', '10.0.0/8', '10.0.0.0/8/1', '10.0.0.0/', 'example.com', 'fd00::/129', 'fd00::/-1', 'fd00:::1/64', 'fe80::1%eth0', 'fd00::/0064']
  for (const b of bad) t.throws(() => parseCidrs(b), RangeError, b)
})

t.test('IPv6: the same chains and rules as IPv4, each CIDR in its own family only', async (t) => {
  const o = opts({
    servicePorts: { by: 'list', ports: [8080] },
    excludeInboundCidrs: ['10.1.0.0/16', 'fd00:1::/64'],
    excludeCidrs: ['169.254.169.254', 'fd00:ec2::254', '10.0.0.0/8', '2001:db8::/32'],
    excludeInboundPorts: [15090],
    excludeOutboundPorts: [5432],
    proxyGid: 1338,
  })
  t.same(lines(CHAINS.inbound, o, 6), [
    '-s fd00:1::/64 -j RETURN',
    '-p tcp --dport 15090 -j RETURN',
    '-p tcp --dport 8080 -j OUTRIDER_IN_REDIRECT',
  ])
  t.same(lines(CHAINS.inbound, o, 4)[0], '-s 10.1.0.0/16 -j RETURN')
  t.equal(lines(CHAINS.inbound, o, 4).length, 3, 'no IPv6 CIDR in the IPv4 rules')
  t.same(lines(CHAINS.outbound, o, 6), [
    '-m owner --uid-owner 1337 -j RETURN',
    '-m owner --gid-owner 1338 -j RETURN',
    '-o lo -j RETURN',
    '-d fd00:ec2::254 -j RETURN',
    '-d 2001:db8::/32 -j RETURN',
    '-p tcp --dport 5432 -j RETURN',
    '-p tcp --dport 80 -j OUTRIDER_REDIRECT',
  ])
  t.same(lines(CHAINS.outbound, o, 4).filter((l) => l.startsWith('-d ')), ['-d 169.254.169.254 -j RETURN', '-d 10.0.0.0/8 -j RETURN'])
  const v4 = buildRules(o, 4)
  const v6 = buildRules(o, 6)
  t.same(v6.chains, v4.chains, 'the same chains')
  const withoutCidrs = (rules: typeof v4.rules): string[] => rules.filter((r) => !r.spec.includes('-s') && !r.spec.includes('-d')).map((r) => `${r.chain} ${r.spec.join(' ')}`)
  t.same(withoutCidrs(v6.rules), withoutCidrs(v4.rules), 'the same rules, in the same order, apart from the CIDRs')
  t.same(lines('PREROUTING', o, 6), ['-p tcp -j OUTRIDER_INBOUND'])
  t.same(lines('OUTPUT', o, 6), ['-p tcp -j OUTRIDER_OUTBOUND'])
})

t.test('IPv6 is on by default and can be turned off', async (t) => {
  t.same(familiesOf(DEFAULTS), [4, 6])
  t.same(familiesOf(opts({ ipv6: false })), [4])
  t.same(buildAllRules(opts()).map(([f]) => f), [4, 6])
  t.same(buildAllRules(opts({ ipv6: false })).map(([f]) => f), [4])
  t.equal(commandFor('iptables', 6), 'ip6tables')
  t.equal(commandFor('iptables-legacy', 6), 'ip6tables-legacy')
  t.equal(commandFor('iptables-nft', 6), 'ip6tables-nft')
  t.equal(commandFor('iptables-nft', 4), 'iptables-nft')
})

// As printed by iptables-nft 1.8.9 after an install plus someone else's rules.
const SAVED = `# Generated by iptables-save v1.8.9 (nf_tables)
*filter
:INPUT ACCEPT [0:0]
-A INPUT -j OUTRIDER_NOT_NAT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:OUTRIDER_INBOUND - [0:0]
:OUTRIDER_IN_REDIRECT - [0:0]
:OUTRIDER_OLD - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A PREROUTING -p tcp -j OUTRIDER_INBOUND
-A OUTPUT -p tcp -m tcp --dport 80 -j OUTRIDER_OLD
-A OUTRIDER_INBOUND -p tcp -m tcp --dport 8080 -j OUTRIDER_IN_REDIRECT
-A OUTRIDER_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
COMMIT
`

t.test('parseSaved finds our chains and the jumps into them, in the nat table only', async (t) => {
  t.same(parseSaved(SAVED), {
    chains: ['OUTRIDER_INBOUND', 'OUTRIDER_IN_REDIRECT', 'OUTRIDER_OLD'],
    jumps: [
      { chain: 'PREROUTING', spec: ['-p', 'tcp', '-j', 'OUTRIDER_INBOUND'] },
      { chain: 'OUTPUT', spec: ['-p', 'tcp', '-m', 'tcp', '--dport', '80', '-j', 'OUTRIDER_OLD'] },
    ],
  })
  t.same(parseSaved(''), { chains: [], jumps: [] })
})

t.test('restoreInput replaces an earlier install in one transaction; cleanupInput removes it', async (t) => {
  const installed = parseSaved(SAVED)
  const input = restoreInput(buildRules(opts({ servicePorts: { by: 'list', ports: [8080] } })), installed).split('\n')
  t.same(input.slice(0, 6), [
    '*nat',
    '-D PREROUTING -p tcp -j OUTRIDER_INBOUND',
    '-D OUTPUT -p tcp -m tcp --dport 80 -j OUTRIDER_OLD',
    '-F OUTRIDER_OLD',
    '-X OUTRIDER_OLD',
    ':OUTRIDER_INBOUND - [0:0]',
  ], 'old jumps go first, chains we no longer use are removed, ours are (re)declared')
  t.notOk(input.includes('-X OUTRIDER_INBOUND'), 'a chain still in use is flushed by its declaration, not deleted')
  t.equal(input.at(-2), 'COMMIT')
  t.notOk(input.some((l) => l.includes('KUBE-SERVICES')), 'other rules are left alone (--noflush)')

  t.same(cleanupInput(installed).split('\n'), [
    '*nat',
    '-D PREROUTING -p tcp -j OUTRIDER_INBOUND',
    '-D OUTPUT -p tcp -m tcp --dport 80 -j OUTRIDER_OLD',
    '-F OUTRIDER_INBOUND', '-F OUTRIDER_IN_REDIRECT', '-F OUTRIDER_OLD',
    '-X OUTRIDER_INBOUND', '-X OUTRIDER_IN_REDIRECT', '-X OUTRIDER_OLD',
    'COMMIT', '',
  ])
  t.equal(cleanupInput(parseSaved('*nat\nCOMMIT\n')), '*nat\nCOMMIT\n', 'nothing installed: an empty transaction')
})

t.test('shell scripts: re-runnable install, tolerant cleanup, quoted words', async (t) => {
  const script = installScript(buildAllRules(opts({ servicePorts: { by: 'list', ports: [8080] }, excludeCidrs: ['10.0.0.0/8', 'fd00::/8'] })), 'iptables-legacy')
  t.match(script, /^#!\/bin\/sh\n/)
  for (const cmd of ['iptables-legacy', 'ip6tables-legacy']) {
    t.match(script, `\n${cmd} -t nat -D PREROUTING -p tcp -j OUTRIDER_INBOUND 2>/dev/null || true\n`)
    t.match(script, `\n${cmd} -t nat -N OUTRIDER_INBOUND\n`)
    t.match(script, `\n${cmd} -t nat -A OUTRIDER_OUTBOUND -m owner --uid-owner 1337 -j RETURN\n`)
  }
  t.match(script, '\niptables-legacy -t nat -A OUTRIDER_OUTBOUND -d 10.0.0.0/8 -j RETURN\n')
  t.match(script, '\nip6tables-legacy -t nat -A OUTRIDER_OUTBOUND -d fd00::/8 -j RETURN\n')
  t.notMatch(script, /iptables-legacy -t nat -A \S+ -d fd00/, 'no IPv6 CIDR for iptables')
  t.notMatch(script, /ip6tables-legacy -t nat -A \S+ -d 10\./, 'no IPv4 CIDR for ip6tables')
  t.ok(script.lastIndexOf('-X OUTRIDER_REDIRECT') < script.indexOf('-N OUTRIDER_INBOUND'), 'both old installs are removed before either new one')
  t.notMatch(installScript(buildAllRules(opts({ ipv6: false }))), 'ip6tables', '--no-ipv6: IPv4 only')
  const cleanup = cleanupScript()
  for (const c of Object.values(CHAINS)) {
    t.match(cleanup, `\niptables -t nat -X ${c} 2>/dev/null || true`)
    t.match(cleanup, `\nip6tables -t nat -X ${c} 2>/dev/null || true`)
  }
  t.notMatch(cleanupScript([4]), 'ip6tables')
  t.equal(shellJoin(['iptables', '-d', '10.0.0.0/8']), 'iptables -d 10.0.0.0/8')
  t.equal(shellJoin(['echo', 'a b', 'it\'s', '$(x)']), 'echo \'a b\' \'it\'\\\'\'s\' \'$(x)\'')
})
