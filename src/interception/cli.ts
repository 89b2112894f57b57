#!/usr/bin/env node
import { parseArgs } from 'node:util'
import { BACKENDS, IptablesError, restore, saveNat, type Backend } from './iptables.ts'
import {
  DEFAULTS, buildAllRules, buildRules, cleanupInput, cleanupScript, commandFor, familiesOf, installScript, parseCidrs,
  parsePortSelection, parsePorts, parseSaved, restoreInput, validateOptions, type Family, type InterceptionOptions,
} from './rules.ts'

export const USAGE = `Usage:
  outrider iptables [--print | --apply | --cleanup] [--dry-run] [options]

Transparent interception for a sidecar: iptables and ip6tables rules (nat
table, chains OUTRIDER_*) that send the pod's inbound TCP to Outrider's inbound
listener and the pod's outbound HTTP to its outbound listener. Run once per
pod, as root (or with CAP_NET_ADMIN) in the pod's network namespace, e.g. from
an init container.

Actions:
      --print           print the install as a shell script (the default; needs no root)
      --apply           install the rules, one iptables-restore transaction per
                        family (IPv4, then IPv6), replacing any earlier install
      --cleanup         remove every OUTRIDER_ chain and the jumps into them;
                        with --print, print a cleanup shell script instead
      --dry-run         with --apply or --cleanup: print the iptables-restore and
                        ip6tables-restore input that would be applied (reads the
                        current rules), change nothing
      --format F        what --print prints: sh (default, both families),
                        restore (iptables-restore input), restore6 (ip6tables-restore input)

Options:
      --inbound-port N            inbound listener (default ${DEFAULTS.inboundPort})
      --outbound-port N           outbound listener (default ${DEFAULTS.outboundPort})
      --proxy-uid UID             uid Outrider runs as, never intercepted (default ${DEFAULTS.proxyUid})
      --proxy-gid GID             gid Outrider runs as, never intercepted either
      --service-ports P,…|*|none  inbound ports to intercept (default *: all)
      --exclude-inbound-ports P,… never intercepted inbound (e.g. the admin port
                                  when probes reach it through the pod IP)
      --exclude-inbound-cidrs C,… client ranges never intercepted inbound (IPv4
                                  or IPv6: each goes to its own family's rules)
      --outbound-ports P,…|*|none outbound ports to intercept (default 80; the
                                  outbound listener speaks plain HTTP)
      --exclude-outbound-ports P,… never intercepted outbound
      --exclude-cidrs C,…         destinations never intercepted outbound (IPv4 or IPv6)
      --no-ipv6                   IPv4 rules only (a host without ip6tables or IPv6)
      --iptables NAME             ${BACKENDS.join(' | ')} (default iptables; the
                                  matching ip6tables front-end is used for IPv6)

Traffic routed over lo (the loopback addresses and the pod's own IPs) is
never intercepted outbound. IPv6 connections are redirected to ::1 and the
pod's IPv6 addresses: the listeners must listen on :: to take them. The
outbound listener routes by Host only: see src/interception/README.md.

Exit codes: 0 ok, 1 iptables failed (not root, not installed, refused), 2 usage.`

/** Where the command writes; the process's streams unless a caller passes its own. */
export interface Io {
  stdout: { write (s: string): unknown }
  stderr: { write (s: string): unknown }
}

class UsageError extends Error {}

/**
 * `outrider iptables …`: argv is what follows the subcommand. Resolves to the
 * exit code; never throws and never exits the process.
 *
 * @example
 * const code = await runIptablesCommand(['--apply', '--service-ports', '8080'])
 */
export async function runIptablesCommand (argv: string[], io: Io = process): Promise<number> {
  let parsed
  try {
    parsed = parseArgv(argv)
  } catch (err) {
    if (!(err instanceof UsageError) && !(err instanceof RangeError) && !(err instanceof TypeError)) throw err
    io.stderr.write(`outrider iptables: ${err.message}\n\n${USAGE}\n`)
    return 2
  }
  if (parsed === 'help') { io.stdout.write(`${USAGE}\n`); return 0 }
  const { action, dryRun, format, backend, options } = parsed

  if (action === 'print') {
    if (format === 'sh') io.stdout.write(installScript(buildAllRules(options), backend))
    else io.stdout.write(restoreInput(buildRules(options, format === 'restore6' ? 6 : 4)))
    return 0
  }
  if (action === 'print-cleanup') { io.stdout.write(cleanupScript(familiesOf(options), backend)); return 0 }

  const families = familiesOf(options)
  const applied: string[] = []
  try {
    // Every family's state is read before anything changes: a missing
    // ip6tables fails the command with the IPv4 rules untouched. The state
    // makes each transaction exact: old jumps deleted, our chains replaced.
    const plans: Array<{ family: Family, input: string, summary: string }> = []
    for (const family of families) {
      const installed = parseSaved(await saveNat(backend, family))
      const cmd = commandFor(backend, family)
      if (action === 'apply') {
        const rules = buildRules(options, family)
        plans.push({ family, input: restoreInput(rules, installed), summary: `installed ${rules.rules.length} rules in ${rules.chains.join(', ') || 'no chains'} (${cmd}, nat table)` })
      } else {
        plans.push({ family, input: cleanupInput(installed), summary: `removed ${installed.chains.length === 0 ? 'nothing (no OUTRIDER_ chains)' : installed.chains.join(', ')} (${cmd})` })
      }
    }
    if (dryRun) {
      // Comments are valid restore input: each part stays pipe-able on its own.
      for (const p of plans) io.stdout.write(`# ${commandFor(backend, p.family)}-restore --noflush\n${p.input}`)
      return 0
    }
    for (const p of plans) {
      await restore(p.input, backend, p.family)
      applied.push(p.summary)
    }
    for (const line of applied) io.stdout.write(`outrider iptables: ${line}\n`)
    return 0
  } catch (err) {
    if (!(err instanceof IptablesError)) throw err
    for (const line of applied) io.stdout.write(`outrider iptables: ${line}\n`)
    const partial = applied.length === 0 ? '' : `\nthe IPv4 rules were ${action === 'apply' ? 'installed' : 'removed'}: fix the cause and run again (it replaces them)`
    io.stderr.write(`outrider iptables: ${err.message}${partial}\n`)
    return 1
  }
}

interface Parsed {
  action: 'print' | 'print-cleanup' | 'apply' | 'cleanup'
  dryRun: boolean
  format: 'sh' | 'restore' | 'restore6'
  backend: Backend
  options: InterceptionOptions
}

function parseArgv (argv: string[]): Parsed | 'help' {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      print: { type: 'boolean' },
      apply: { type: 'boolean' },
      cleanup: { type: 'boolean' },
      'dry-run': { type: 'boolean' },
      format: { type: 'string' },
      'inbound-port': { type: 'string' },
      'outbound-port': { type: 'string' },
      'proxy-uid': { type: 'string' },
      'proxy-gid': { type: 'string' },
      'service-ports': { type: 'string' },
      'exclude-inbound-ports': { type: 'string' },
      'exclude-inbound-cidrs': { type: 'string' },
      'outbound-ports': { type: 'string' },
      'exclude-outbound-ports': { type: 'string' },
      'exclude-cidrs': { type: 'string' },
      'no-ipv6': { type: 'boolean' },
      iptables: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help === true) return 'help'
  // Tolerated so that `node src/interception/cli.ts iptables …` reads like `outrider iptables …`.
  if (positionals[0] === 'iptables') positionals.shift()
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`)

  const print = values.print === true
  const apply = values.apply === true
  const cleanup = values.cleanup === true
  const dryRun = values['dry-run'] === true
  if (apply && (print || cleanup)) throw new UsageError('--apply cannot be combined with --print or --cleanup')
  if (dryRun && (print || !(apply || cleanup))) throw new UsageError('--dry-run goes with --apply or --cleanup')
  const action = apply ? 'apply' : cleanup ? (print ? 'print-cleanup' : 'cleanup') : 'print'

  const format = values.format ?? 'sh'
  if (format !== 'sh' && format !== 'restore' && format !== 'restore6') throw new UsageError(`--format must be sh, restore or restore6, got "${format}"`)
  const ipv6 = values['no-ipv6'] !== true
  if (format === 'restore6' && !ipv6) throw new UsageError('--format restore6 prints the IPv6 rules, which --no-ipv6 turns off')
  const backend = values.iptables ?? 'iptables'
  if (!(BACKENDS as readonly string[]).includes(backend)) throw new UsageError(`--iptables must be one of ${BACKENDS.join(', ')}, got "${backend}"`)

  const options: InterceptionOptions = {
    inboundPort: port('--inbound-port', values['inbound-port'], DEFAULTS.inboundPort),
    outboundPort: port('--outbound-port', values['outbound-port'], DEFAULTS.outboundPort),
    proxyUid: id('--proxy-uid', values['proxy-uid']) ?? DEFAULTS.proxyUid,
    proxyGid: id('--proxy-gid', values['proxy-gid']),
    servicePorts: values['service-ports'] === undefined ? DEFAULTS.servicePorts : parsePortSelection(values['service-ports']),
    excludeInboundPorts: parsePorts(values['exclude-inbound-ports'] ?? ''),
    excludeInboundCidrs: parseCidrs(values['exclude-inbound-cidrs'] ?? ''),
    outboundPorts: values['outbound-ports'] === undefined ? DEFAULTS.outboundPorts : parsePortSelection(values['outbound-ports']),
    excludeOutboundPorts: parsePorts(values['exclude-outbound-ports'] ?? ''),
    excludeCidrs: parseCidrs(values['exclude-cidrs'] ?? ''),
    ipv6,
  }
  // Combinations (an IPv6 CIDR with --no-ipv6) are usage errors too, found before any command runs.
  validateOptions(options)
  return { action, dryRun, format, backend: backend as Backend, options }
}

function port (flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback
  const [p] = parsePorts(text)
  if (p === undefined || text.includes(',')) throw new UsageError(`${flag} takes one port, got "${text}"`)
  return p
}

function id (flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  if (!/^\d+$/.test(text.trim())) throw new UsageError(`${flag} takes a numeric id, got "${text}"`)
  return Number(text)
}

if (import.meta.main) {
  runIptablesCommand(process.argv.slice(2)).then((code) => { process.exitCode = code }, (err: unknown) => {
    process.stderr.write(`outrider iptables: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exitCode = 1
  })
}
