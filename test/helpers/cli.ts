import { spawn, type ChildProcess } from 'node:child_process'
import net from 'node:net'
import { fileURLToPath } from 'node:url'

export const CLI = fileURLToPath(new URL('../../src/outrider.js', import.meta.url))

/** A port that was free a moment ago (for processes that must be told a port). */
export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo
      s.close(() => { resolve(port) })
    })
  })
}

export interface CliProcess {
  readonly child: ChildProcess
  /** Everything written to stderr so far (JSON log lines). */
  readonly logs: () => string
  /** Resolves when a log line contains `text` (count-th occurrence). */
  waitForLog (text: string, count?: number, timeoutMs?: number): Promise<void>
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

/** Runs `outrider ...args` with the same Node (24) as the tests. */
export function runCli (args: string[], env: NodeJS.ProcessEnv = {}): CliProcess {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  let out = ''
  const waiters = new Set<() => void>()
  child.stderr?.on('data', (c: Buffer) => { err += c.toString(); for (const w of waiters) w() })
  child.stdout?.on('data', (c: Buffer) => { out += c.toString(); for (const w of waiters) w() })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => { resolve({ code, signal }); for (const w of waiters) w() })
  })
  return {
    child,
    logs: () => err + out,
    exited,
    waitForLog (text, count = 1, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if ((err + out).split(text).length - 1 >= count) { cleanup(); resolve() } else if (child.exitCode !== null) { cleanup(); reject(new Error(`exited before logging "${text}":\n${err}${out}`)) }
        }
        const timer = setTimeout(() => { cleanup(); reject(new Error(`timed out waiting for "${text}":\n${err}${out}`)) }, timeoutMs)
        const cleanup = (): void => { clearTimeout(timer); waiters.delete(check) }
        waiters.add(check)
        check()
      })
    },
  }
}
