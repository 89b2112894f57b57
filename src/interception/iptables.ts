import { execFile } from 'node:child_process'

/**
 * Runs `iptables-save` and `iptables-restore` (argv only, never a shell
 * string) and turns their failures into errors an operator can act on.
 */

/** The iptables front-ends we accept; each has `-save` and `-restore` siblings. */
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

/** `iptables-save -t nat`: the current state, for an exact replace or cleanup. */
export function saveNat (backend: Backend = 'iptables'): Promise<string> {
  return run(`${backend}-save`, ['-t', 'nat'])
}

/**
 * `iptables-restore --noflush`: applies `input` as one transaction per table
 * and leaves every rule it does not name alone (other tools' rules survive).
 */
export async function restore (input: string, backend: Backend = 'iptables'): Promise<void> {
  await run(`${backend}-restore`, ['--noflush'], input)
}

function run (file: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
      if (err === null) { resolve(stdout); return }
      reject(explain(file, err as NodeJS.ErrnoException & { code?: unknown }, stderr))
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
