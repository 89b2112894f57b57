/**
 * The load generator: autocannon's programmatic API, in this process (so it is
 * pinned with the bench driver), typed just as far as the bench reads it.
 */
import { createRequire } from 'node:module'

interface Histogram {
  average: number
  total: number
  p50: number
  p99: number
}

/** The part of an autocannon result the bench uses. */
export interface LoadResult {
  requests: Histogram
  latency: Histogram
  duration: number
  errors: number
  timeouts: number
  non2xx: number
  statusCodeStats: Record<string, { count: number }>
}

interface LoadOptions {
  url: string
  connections: number
  /** Seconds; ignored when `amount` is given. */
  duration?: number
  /** Stop after this many requests instead of after `duration`. */
  amount?: number
  pipelining?: number
}

interface Instance extends PromiseLike<LoadResult> {
  stop (): void
}

const autocannon = createRequire(import.meta.url)('autocannon') as (opts: LoadOptions) => Instance

let running: Instance | undefined

/** Runs one load phase; `stopLoad()` (on SIGINT) ends it early. */
export async function runLoad (opts: LoadOptions): Promise<LoadResult> {
  const instance = autocannon(opts)
  running = instance
  try {
    return await instance
  } finally {
    running = undefined
  }
}

export function stopLoad (): void {
  running?.stop()
}
