#!/usr/bin/env node
import { parseArgs } from 'node:util'
import { BACKENDS, IptablesError, restore, saveNat, type Backend } from './iptables.ts'
import {
  DEFAULTS, buildRules, cleanupInput, cleanupScript, installScript, parseCidrs, parsePortSelection, parsePorts,
  parseSaved, restoreInput, type InterceptionOptions,
} from './rules.ts'

export const USAGE = `Usage:
  outrider iptables [--print | --apply | --cleanup] [--dry-run] [options]

Transparent interception for a sidecar: iptables rules (nat table, chains
OUTRIDER_*) that send the pod's inbound TCP to Outrider's inbound listener and
the pod's outbound HTTP to its outbound listener. Run once per pod, as root (or
with CAP_NET_ADMIN) in the pod's network namespace, e.g. from an init container.

Actions:
      --print           print the install as a shell script (the default; needs no root)
      --apply           install the rules in one iptables-restore transaction,
                        replacing any earlier install
      --cleanup         remove every OUTRIDER_ chain and the jumps into them;
                        with --print, print a cleanup shell script instead
      --dry-run         with --apply or --cleanup: print the iptables-restore input
                        that would be applied (reads the current rules), change nothing
      --format F        sh (default) | restore: what --print prints

Options:
      --inbound-port N            inbound listener (default ${DEFAULTS.inboundPort})
      --outbound-port N           outbound listener (default ${DEFAULTS.outboundPort})
      --proxy-uid UID             uid Outrider runs as, never intercepted (default ${DEFAULTS.proxyUid})
      --proxy-gid GID             gid Outrider runs as, never intercepted either
      --service-ports P,…|*|none  inbound ports to intercept (default *: all)
      --exclude-inbound-ports P,… never intercepted inbound (e.g. the admin port
                                  when probes reach it through the pod IP)
      --exclude-inbound-cidrs C,… client ranges never intercepted inbound
      --outbound-ports P,…|*|none outbound ports to intercept (default 80; the
                                  outbound listener speaks plain HTTP)
      --exclude-outbound-ports P,… never intercepted outbound
      --exclude-cidrs C,…         destinations never intercepted outbound (IPv4)
      --iptables NAME             ${BACKENDS.join(' | ')} (default iptables)

Traffic routed over lo (the loopback range and the pod's own IP) is never
intercepted outbound. The outbound listener routes by Host only: see
src/interception/README.md.

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
  const rules = buildRules(options)

  if (action === 'print') {
    io.stdout.write(format === 'restore' ? restoreInput(rules) : installScript(rules, backend))
    return 0
  }
  if (action === 'print-cleanup') { io.stdout.write(cleanupScript(backend)); return 0 }

  try {
    // The current state makes the transaction exact: old jumps deleted, our chains replaced.
    const installed = parseSaved(await saveNat(backend))
    const input = action === 'apply' ? restoreInput(rules, installed) : cleanupInput(installed)
    if (dryRun) { io.stdout.write(input); return 0 }
    await restore(input, backend)
    if (action === 'apply') io.stdout.write(`outrider iptables: installed ${rules.rules.length} rules in ${rules.chains.join(', ') || 'no chains'} (${backend}, nat table)\n`)
    else io.stdout.write(`outrider iptables: removed ${installed.chains.length === 0 ? 'nothing (no OUTRIDER_ chains)' : installed.chains.join(', ')}\n`)
    return 0
  } catch (err) {
    if (!(err instanceof IptablesError)) throw err
    io.stderr.write(`outrider iptables: ${err.message}\n`)
    return 1
  }
}

interface Parsed {
  action: 'print' | 'print-cleanup' | 'apply' | 'cleanup'
  dryRun: boolean
  format: 'sh' | 'restore'
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
  if (format !== 'sh' && format !== 'restore') throw new UsageError(`--format must be sh or restore, got "${format}"`)
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
  }
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
