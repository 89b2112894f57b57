import { execFile } from 'node:child_process'
import { commandFor, type Family } from './rules.ts'

/**
 * Runs `iptables-save` and `iptables-restore` (and their `ip6tables`
 * siblings; argv only, never a shell string) and turns their failures into
 * errors an operator can act on.
 */

/** The iptables front-ends we accept; each has `-save` and `-restore` siblings, and an `ip6tables` twin. */
export const BACKENDS = ['iptables', 'iptables-nft', 'iptables-legacy'] as const
export type Backend = typeof BACKENDS[number]

/** Why applying the rules failed; `code` is stable, the message is for people. */
export class IptablesError extends Error {
  readonly code: 'IPTABLES_NOT_FOUND' | 'IPTABLES_NOT_PERMITTED' | 'IPTABLES_FAILED'

  constructor (code: IptablesError['code'], message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'IptablesError'
    this.code = code
  }
}

/** `iptables-save -t nat` (or `ip6tables-save`): the current state, for an exact replace or cleanup. */
export function saveNat (backend: Backend = 'iptables', family: Family = 4): Promise<string> {
  return run(`${commandFor(backend, family)}-save`, ['-t', 'nat'], family)
}

/**
 * `iptables-restore --noflush` (or `ip6tables-restore`): applies `input` as
 * one transaction per table and leaves every rule it does not name alone
 * (other tools' rules survive).
 */
export async function restore (input: string, backend: Backend = 'iptables', family: Family = 4): Promise<void> {
  await run(`${commandFor(backend, family)}-restore`, ['--noflush'], family, input)
}

function run (file: string, args: string[], family: Family, input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
      if (err === null) { resolve(stdout); return }
      const e = explain(file, err as NodeJS.ErrnoException & { code?: unknown }, stderr)
      // A pod or kernel without IPv6 netfilter should not have to debug this.
      if (family === 6 && e.code !== 'IPTABLES_NOT_PERMITTED') e.message += '\n(these are the IPv6 rules: pass --no-ipv6 where there is no IPv6)'
      reject(e)
    })
    // EPIPE when the command died before reading its input: the exit explains why.
    child.stdin?.on('error', () => {})
    child.stdin?.end(input ?? '')
  })
}

function explain (file: string, err: NodeJS.ErrnoException, stderr: string): IptablesError {
  const detail = stderr.trim()
  if (err.code === 'ENOENT') {
    return new IptablesError('IPTABLES_NOT_FOUND', `${file} not found on PATH: install iptables (Debian/Ubuntu: apt-get install iptables)`, { cause: err })
  }
  const uid = process.getuid?.()
  if (/permission denied|you must be root|operation not permitted/i.test(detail) || err.code === 'EACCES') {
    return new IptablesError('IPTABLES_NOT_PERMITTED',
      `${file} was refused${uid === undefined ? '' : ` (running as uid ${uid})`}: run as root, or with CAP_NET_ADMIN, in the pod's network namespace${detail === '' ? '' : `\n${detail}`}`,
      { cause: err })
  }
  return new IptablesError('IPTABLES_FAILED', `${file} failed${detail === '' ? `: ${err.message}` : `:\n${detail}`}`, { cause: err })
}
