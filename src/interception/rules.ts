import net from 'node:net'

/**
 * The iptables rules of transparent interception (sidecar mode), as pure data:
 * nothing here runs a command, so every rule set is testable without root.
 *
 * Everything lives in the `nat` table, in chains of our own, entered by exactly
 * one jump from each built-in chain so that cleanup is exact:
 *
 * - `PREROUTING → OUTRIDER_INBOUND`: TCP arriving for the service's ports is
 *   sent to `OUTRIDER_IN_REDIRECT`, which REDIRECTs it to Outrider's inbound
 *   listener. The inbound Outrider forwards to the service on loopback.
 * - `OUTPUT → OUTRIDER_OUTBOUND`: TCP that processes of the pod open to the
 *   outbound ports is sent to `OUTRIDER_REDIRECT`, which REDIRECTs it to
 *   Outrider's outbound listener (127.0.0.1, since REDIRECT of locally made
 *   packets targets loopback). Outrider's own connections MUST be excluded
 *   (owner match on its uid, optionally its gid) or every upstream connection
 *   the outbound Outrider opens would be redirected back to itself.
 *
 * Only new connections are NATed (conntrack remembers the rest), so changing
 * or removing rules never breaks a connection already established.
 *
 * About the original destination: REDIRECT keeps it in conntrack, readable
 * with `getsockopt(SO_ORIGINAL_DST)`, which Node cannot call without a native
 * addon. The outbound Outrider therefore routes by the `Host` header only
 * (`match.host`), to clusters it is configured with; see README.md here.
 *
 * IPv4 and IPv6 get the same chains, one set per family (`iptables` and
 * `ip6tables` have separate tables). The only difference is the CIDRs: each
 * exclusion goes to the family of its address, since neither tool accepts
 * the other's. IPv6 can be turned off for hosts without it.
 */

export const TABLE = 'nat'

/** An address family: 4 is `iptables`, 6 is `ip6tables`. */
export type Family = 4 | 6

/** Our chains. The names are a contract: cleanup finds rules by them. */
export const CHAINS = {
  inbound: 'OUTRIDER_INBOUND',
  inboundRedirect: 'OUTRIDER_IN_REDIRECT',
  outbound: 'OUTRIDER_OUTBOUND',
  outboundRedirect: 'OUTRIDER_REDIRECT',
} as const

const PREFIX = 'OUTRIDER_'

/** Which destination ports are intercepted. */
export type PortSelection =
  | { by: 'all' }
  | { by: 'list', ports: readonly number[] }

export interface InterceptionOptions {
  /** Port of Outrider's inbound listener (must listen on 0.0.0.0 or the pod IP). */
  inboundPort: number
  /** Port of Outrider's outbound listener (must listen on 127.0.0.1 or 0.0.0.0). */
  outboundPort: number
  /** Uid Outrider runs as; its connections are never redirected. */
  proxyUid: number
  /** Gid Outrider runs as, excluded too when set (for a proxy that must keep uid 0). */
  proxyGid?: number | undefined
  /** Inbound ports redirected to the inbound listener; `{ by: 'list', ports: [] }` turns inbound off. */
  servicePorts: PortSelection
  /** Inbound ports never redirected (e.g. the admin port kubelet probes through the pod IP). */
  excludeInboundPorts: readonly number[]
  /** Client source ranges (IPv4 or IPv6) whose inbound traffic is never redirected. */
  excludeInboundCidrs: readonly string[]
  /** Outbound destination ports redirected to the outbound listener; `[]` turns outbound off. */
  outboundPorts: PortSelection
  /** Outbound destination ports never redirected. */
  excludeOutboundPorts: readonly number[]
  /** Outbound destination ranges (IPv4 or IPv6) never redirected (e.g. the cloud metadata service). */
  excludeCidrs: readonly string[]
  /** Install the same rules with ip6tables too; off for a host without IPv6 netfilter. */
  ipv6: boolean
}

/** The defaults of `outrider iptables`: Istio's ports, the Dockerfile's uid. */
const defaults: InterceptionOptions = {
  inboundPort: 15006,
  outboundPort: 15001,
  proxyUid: 1337,
  proxyGid: undefined,
  servicePorts: { by: 'all' },
  excludeInboundPorts: [],
  excludeInboundCidrs: [],
  outboundPorts: { by: 'list', ports: [80] },
  excludeOutboundPorts: [],
  excludeCidrs: [],
  ipv6: true,
}
export const DEFAULTS: Readonly<InterceptionOptions> = Object.freeze(defaults)

/** One rule: the chain it is appended to and the rest of its argv. */
export interface Rule {
  readonly chain: string
  readonly spec: readonly string[]
}

export interface RuleSet {
  /** Our chains, created (or flushed) before the rules are added. */
  readonly chains: readonly string[]
  /** In order: a chain's rules are matched top-down. */
  readonly rules: readonly Rule[]
}

/** The families `options` installs: IPv4 always, IPv6 unless turned off. */
export function familiesOf (options: Pick<InterceptionOptions, 'ipv6'>): Family[] {
  return options.ipv6 ? [4, 6] : [4]
}

/** The rule set of each family `options` installs, in order. */
export type FamilyRules = ReadonlyArray<readonly [Family, RuleSet]>

/** {@link buildRules} for every family of `options`. */
export function buildAllRules (options: InterceptionOptions): FamilyRules {
  return familiesOf(options).map((f) => [f, buildRules(options, f)] as const)
}

/**
 * The rule set of `family` for `options`. Exclusions come before redirects in
 * each chain because the first matching RETURN wins. Both families get the
 * same chains and rules; CIDRs go to their own family only.
 *
 * REDIRECT of a locally made IPv6 connection targets `::1`, so with IPv6 on
 * the outbound listener must accept on `::1` (listen on `::`), and the
 * inbound one on the pod's IPv6 addresses (`::` too).
 *
 * @example
 * buildRules({ ...DEFAULTS, servicePorts: { by: 'list', ports: [8080] } }, 4).rules
 * // [{ chain: 'OUTRIDER_IN_REDIRECT', spec: ['-p', 'tcp', '-j', 'REDIRECT', '--to-ports', '15006'] }, …,
 * //  { chain: 'OUTRIDER_INBOUND', spec: ['-p', 'tcp', '--dport', '8080', '-j', 'OUTRIDER_IN_REDIRECT'] }, …]
 */
export function buildRules (options: InterceptionOptions, family: Family = 4): RuleSet {
  validateOptions(options)
  const ofFamily = (cidrs: readonly string[]): string[] => cidrs.filter((c) => cidrFamily(c) === family)
  const chains: string[] = []
  const rules: Rule[] = []
  const add = (chain: string, ...spec: string[]): void => { rules.push({ chain, spec }) }

  if (!isEmpty(options.servicePorts)) {
    const { inbound, inboundRedirect } = CHAINS
    chains.push(inbound, inboundRedirect)
    add(inboundRedirect, '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', String(options.inboundPort))
    for (const cidr of ofFamily(options.excludeInboundCidrs)) add(inbound, '-s', cidr, '-j', 'RETURN')
    for (const port of options.excludeInboundPorts) add(inbound, '-p', 'tcp', '--dport', String(port), '-j', 'RETURN')
    if (options.servicePorts.by === 'all') add(inbound, '-p', 'tcp', '-j', inboundRedirect)
    else for (const port of options.servicePorts.ports) add(inbound, '-p', 'tcp', '--dport', String(port), '-j', inboundRedirect)
    // The entry jump last: run as single commands, no packet meets a half-built chain.
    add('PREROUTING', '-p', 'tcp', '-j', inbound)
  }

  if (!isEmpty(options.outboundPorts)) {
    const { outbound, outboundRedirect } = CHAINS
    chains.push(outbound, outboundRedirect)
    add(outboundRedirect, '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', String(options.outboundPort))
    // MUST come first: the outbound Outrider's own upstream connections would
    // otherwise be redirected back to itself.
    add(outbound, '-m', 'owner', '--uid-owner', String(options.proxyUid), '-j', 'RETURN')
    if (options.proxyGid !== undefined) add(outbound, '-m', 'owner', '--gid-owner', String(options.proxyGid), '-j', 'RETURN')
    // Anything routed over lo (127.0.0.0/8, ::1 and the pod's own IPs) stays local:
    // the inbound Outrider reaching the service, the service reaching its
    // sidecar's admin port, processes of the pod talking to each other.
    add(outbound, '-o', 'lo', '-j', 'RETURN')
    for (const cidr of ofFamily(options.excludeCidrs)) add(outbound, '-d', cidr, '-j', 'RETURN')
    for (const port of options.excludeOutboundPorts) add(outbound, '-p', 'tcp', '--dport', String(port), '-j', 'RETURN')
    if (options.outboundPorts.by === 'all') add(outbound, '-p', 'tcp', '-j', outboundRedirect)
    else for (const port of options.outboundPorts.ports) add(outbound, '-p', 'tcp', '--dport', String(port), '-j', outboundRedirect)
    add('OUTPUT', '-p', 'tcp', '-j', outbound)
  }
  return { chains, rules }
}

/** What of ours is installed now, read from `iptables-save -t nat` output. */
export interface InstalledState {
  /** Our chains that exist. */
  readonly chains: readonly string[]
  /** Rules in other chains (built-in ones) that jump into ours, as saved. */
  readonly jumps: readonly Rule[]
}

/**
 * Reads our chains and the jumps into them from `iptables-save` output. Only
 * the `*nat` section is read; rule specs are split on spaces, which is exact
 * for the rules we write (no quoted arguments).
 */
export function parseSaved (saved: string): InstalledState {
  const chains: string[] = []
  const jumps: Rule[] = []
  let inNat = false
  for (const raw of saved.split('\n')) {
    const line = raw.trim()
    if (line.startsWith('*')) { inNat = line === `*${TABLE}`; continue }
    if (!inNat) continue
    if (line.startsWith(':')) {
      const name = line.slice(1).split(/\s+/)[0] ?? ''
      if (name.startsWith(PREFIX)) chains.push(name)
      continue
    }
    if (!line.startsWith('-A ')) continue
    const [, chain = '', ...spec] = line.split(/\s+/)
    const j = spec.indexOf('-j')
    const target = j === -1 ? undefined : spec[j + 1]
    if (!chain.startsWith(PREFIX) && target !== undefined && target.startsWith(PREFIX)) jumps.push({ chain, spec })
  }
  return { chains, jumps }
}

/**
 * `iptables-restore --noflush` input that installs `ruleSet` in one
 * transaction, replacing whatever of ours `installed` holds: the old jumps are
 * deleted, chains we no longer use are removed, and declaring a chain that
 * exists flushes it. Applying twice leaves the same rules as applying once.
 *
 * @example
 * restoreInput(buildRules(DEFAULTS), parseSaved(await iptablesSave()))
 * // '*nat\n:OUTRIDER_INBOUND - [0:0]\n…\n-A PREROUTING -p tcp -j OUTRIDER_INBOUND\n…\nCOMMIT\n'
 */
export function restoreInput (ruleSet: RuleSet, installed: InstalledState = { chains: [], jumps: [] }): string {
  const lines = [`*${TABLE}`]
  for (const { chain, spec } of installed.jumps) lines.push(`-D ${chain} ${spec.join(' ')}`)
  const stale = installed.chains.filter((c) => !ruleSet.chains.includes(c))
  // Flush every stale chain before deleting any: they may jump to each other.
  for (const chain of stale) lines.push(`-F ${chain}`)
  for (const chain of stale) lines.push(`-X ${chain}`)
  for (const chain of ruleSet.chains) lines.push(`:${chain} - [0:0]`)
  for (const { chain, spec } of ruleSet.rules) lines.push(`-A ${chain} ${spec.join(' ')}`)
  lines.push('COMMIT', '')
  return lines.join('\n')
}

/** `iptables-restore --noflush` input that removes everything of ours; a no-op when nothing is installed. */
export function cleanupInput (installed: InstalledState): string {
  return restoreInput({ chains: [], rules: [] }, installed)
}

/**
 * The command of `family` for an iptables front-end: `iptables-legacy` →
 * `ip6tables-legacy` (each ships both, and `-save`/`-restore` siblings).
 */
export function commandFor (backend: string, family: Family): string {
  return family === 4 ? backend : backend.replace(/^iptables/, 'ip6tables')
}

/**
 * The install as a POSIX shell script of single `iptables` (and `ip6tables`)
 * calls, for an init step that ships a script instead of running `outrider
 * iptables --apply`. It starts with {@link cleanupScript}'s lines so that
 * re-running it is safe.
 */
export function installScript (sets: FamilyRules, backend = 'iptables'): string {
  const lines = [
    '#!/bin/sh',
    '# Transparent interception for Outrider (generated by `outrider iptables --print`).',
    '# Run as root in the pod\'s network namespace.',
    'set -e',
  ]
  for (const [family] of sets) lines.push(...cleanupLines(commandFor(backend, family)))
  for (const [family, ruleSet] of sets) {
    const cmd = commandFor(backend, family)
    for (const chain of ruleSet.chains) lines.push(shellJoin([cmd, '-t', TABLE, '-N', chain]))
    for (const { chain, spec } of ruleSet.rules) lines.push(shellJoin([cmd, '-t', TABLE, '-A', chain, ...spec]))
  }
  lines.push('')
  return lines.join('\n')
}

/** A shell script removing our chains and jumps of `families`, ignoring what is not there. */
export function cleanupScript (families: readonly Family[] = [4, 6], backend = 'iptables'): string {
  const lines = ['#!/bin/sh', '# Removes Outrider\'s interception rules (generated by `outrider iptables --cleanup --print`).']
  for (const family of families) lines.push(...cleanupLines(commandFor(backend, family)))
  lines.push('')
  return lines.join('\n')
}

function cleanupLines (iptables: string): string[] {
  const run = (argv: string[]): string => `${shellJoin([iptables, '-t', TABLE, ...argv])} 2>/dev/null || true`
  const all = Object.values(CHAINS)
  return [
    run(['-D', 'PREROUTING', '-p', 'tcp', '-j', CHAINS.inbound]),
    run(['-D', 'OUTPUT', '-p', 'tcp', '-j', CHAINS.outbound]),
    ...all.map((c) => run(['-F', c])),
    ...all.map((c) => run(['-X', c])),
  ]
}

/** Quotes an argv for sh: plain words stay as they are, anything else is single-quoted. */
export function shellJoin (argv: readonly string[]): string {
  return argv.map((a) => /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll('\'', '\'\\\'\'')}'`).join(' ')
}

/**
 * Parses a port list: `*` or `all` → every port, `none` or empty → none,
 * else comma-separated ports 1-65535.
 */
export function parsePortSelection (text: string): PortSelection {
  const t = text.trim()
  if (t === '*' || t === 'all') return { by: 'all' }
  if (t === 'none') return { by: 'list', ports: [] }
  return { by: 'list', ports: parsePorts(t) }
}

/** Parses comma-separated ports 1-65535; empty → []. */
export function parsePorts (text: string): number[] {
  const parts = text.split(',').map((p) => p.trim()).filter((p) => p !== '')
  return parts.map((p) => {
    const n = Number(p)
    if (!/^\d+$/.test(p) || !validPort(n)) throw new RangeError(`"${p}" is not a port (1-65535)`)
    return n
  })
}

/** Parses comma-separated IPv4 or IPv6 CIDRs (a bare address means /32 or /128); empty → []. */
export function parseCidrs (text: string): string[] {
  const parts = text.split(',').map((p) => p.trim()).filter((p) => p !== '')
  for (const p of parts) assertCidr(p)
  return parts
}

/** Throws a RangeError naming the first invalid option (buildRules calls it too). */
export function validateOptions (o: InterceptionOptions): void {
  for (const [name, port] of [['inboundPort', o.inboundPort], ['outboundPort', o.outboundPort]] as const) {
    if (!validPort(port)) throw new RangeError(`${name} must be a port (1-65535), got ${port}`)
  }
  if (!Number.isInteger(o.proxyUid) || o.proxyUid < 0) throw new RangeError(`proxyUid must be a uid (integer ≥ 0), got ${o.proxyUid}`)
  if (o.proxyGid !== undefined && (!Number.isInteger(o.proxyGid) || o.proxyGid < 0)) throw new RangeError(`proxyGid must be a gid (integer ≥ 0), got ${o.proxyGid}`)
  const ports = [...o.excludeInboundPorts, ...o.excludeOutboundPorts]
  if (o.servicePorts.by === 'list') ports.push(...o.servicePorts.ports)
  if (o.outboundPorts.by === 'list') ports.push(...o.outboundPorts.ports)
  for (const p of ports) if (!validPort(p)) throw new RangeError(`${p} is not a port (1-65535)`)
  for (const c of [...o.excludeCidrs, ...o.excludeInboundCidrs]) {
    // Dropping it silently would intercept traffic the operator meant to exclude.
    if (assertCidr(c) === 6 && !o.ipv6) throw new RangeError(`"${c}" is an IPv6 CIDR, but IPv6 interception is off`)
  }
}

/** The family of a CIDR that {@link assertCidr} accepted. */
function cidrFamily (cidr: string): Family {
  return cidr.includes(':') ? 6 : 4
}

/** An IPv4 or IPv6 address with an optional prefix length; throws otherwise. */
function assertCidr (cidr: string): Family {
  const [addr = '', prefix, ...rest] = cidr.split('/')
  const family: Family = net.isIPv4(addr) ? 4 : 6
  const max = family === 4 ? 32 : 128
  // No zone index (fe80::1%eth0): iptables takes none.
  const ok = rest.length === 0 && (net.isIPv4(addr) || (net.isIPv6(addr) && !addr.includes('%'))) &&
    (prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= max))
  if (!ok) throw new RangeError(`"${cidr}" is not a CIDR (like 169.254.169.254/32 or fd00:ec2::254/128)`)
  return family
}

function validPort (n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65535
}

function isEmpty (s: PortSelection): boolean {
  return s.by === 'list' && s.ports.length === 0
}
