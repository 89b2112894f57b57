/**
 * What every bench child process shares: how it says it is ready and how it
 * dies with its parent.
 *
 * The protocol is one JSON line on stdout, `{ "ready": name, "port": n, "pids": [..] }`;
 * `bench/run.ts` waits for it and reads the port from it, so children can bind
 * port 0 and never collide with anything else on the machine.
 */

import { spawn, type ChildProcess } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface Ready {
  readonly ready: string
  readonly port: number
  /** Processes that serve traffic (several for a multi-worker proxy): their CPU time is reported. */
  readonly pids: readonly number[]
}

export function announceReady (ready: Ready): void {
  process.stdout.write(JSON.stringify(ready) + '\n')
}

/**
 * Exits when the parent goes away, even if it was SIGKILLed and could not stop
 * us: its end of our stdin pipe closes with it. `onExit` may clean up first.
 */
export function exitWithParent (onExit: () => void = () => {}): void {
  const stop = (): void => {
    onExit()
    process.exit(0)
  }
  process.stdin.on('end', stop)
  process.stdin.on('close', stop)
  process.stdin.on('error', stop)
  process.stdin.resume()
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}

/** A `--name value` flag that must be a non-negative integer. */
export function intFlag (value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${JSON.stringify(value)}`)
  return n
}

export interface Started {
  readonly child: ChildProcess
  readonly ready: Ready
}

/** Every child a driver started and has not yet seen exit. */
export const children = new Set<ChildProcess>()

/**
 * Children run with Node's compile cache on, as the `outrider` command runs
 * (src/outrider.js): the bench's entry points are TypeScript themselves, and
 * without the cache each would carry Node's type stripper in its heap.
 */
const CHILD_ENV: NodeJS.ProcessEnv = process.env.NODE_DISABLE_COMPILE_CACHE === undefined
  ? { NODE_COMPILE_CACHE: join(tmpdir(), 'node-compile-cache'), ...process.env }
  : process.env

/**
 * Runs `command` (argv: a `node` script, maybe behind `taskset` or `valgrind`)
 * and resolves with its ready line; `env` adds to the environment. On failure
 * the child is stopped and the tail of its stderr is in the error.
 */
export function startChild (command: readonly string[], label: string, timeoutMs = 20_000, env: NodeJS.ProcessEnv = {}): Promise<Started> {
  const [cmd, ...argv] = command
  const child = spawn(cmd as string, argv, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...CHILD_ENV, ...env } })
  children.add(child)
  let stderr = ''
  child.stderr!.on('data', (b: Buffer) => { stderr = (stderr + b.toString()).slice(-4000) })
  child.once('exit', () => { children.delete(child) })
  return new Promise((resolve, reject) => {
    let stdout = ''
    let settled = false
    const onExit = (code: number | null, signal: string | null): void => { fail(`exited before ready (code ${code}, signal ${signal})`) }
    const onError = (err: Error): void => { fail(`could not start: ${err.message}`) }
    const detach = (): void => {
      settled = true
      clearTimeout(timer)
      child.off('exit', onExit)
      child.off('error', onError)
      child.stdout!.off('data', onData)
      child.stdout!.resume()
    }
    const fail = (why: string): void => {
      if (settled) return
      detach()
      void stopChild(child)
      reject(new Error(`${label} ${why}${stderr === '' ? '' : `; stderr:\n${stderr.trimEnd()}`}`))
    }
    const onData = (b: Buffer): void => {
      stdout += b.toString()
      const nl = stdout.indexOf('\n')
      if (nl === -1) return
      let ready: Ready
      try {
        ready = JSON.parse(stdout.slice(0, nl)) as Ready
      } catch {
        fail(`printed something other than a ready line: ${stdout.slice(0, 200)}`)
        return
      }
      detach()
      resolve({ child, ready })
    }
    const timer = setTimeout(() => { fail(`was not ready within ${timeoutMs / 1000} s`) }, timeoutMs)
    child.on('exit', onExit)
    child.on('error', onError)
    child.stdout!.on('data', onData)
  })
}

/** Closes the child's stdin (its cue to exit), then SIGTERM, then SIGKILL after 3 s. */
export async function stopChild (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) { children.delete(child); return }
  const exited = new Promise<void>((resolve) => { child.once('exit', () => { resolve() }) })
  child.stdin?.end()
  child.kill('SIGTERM')
  const timer = setTimeout(() => { child.kill('SIGKILL') }, 3000)
  await exited
  clearTimeout(timer)
  children.delete(child)
}

/** Whatever happens, nothing a driver started outlives it. */
process.on('exit', () => { for (const c of children) c.kill('SIGKILL') })
