/**
 * What every bench child process shares: how it says it is ready and how it
 * dies with its parent.
 *
 * The protocol is one JSON line on stdout, `{ "ready": name, "port": n, "pids": [..] }`;
 * `bench/run.ts` waits for it and reads the port from it, so children can bind
 * port 0 and never collide with anything else on the machine.
 */

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
