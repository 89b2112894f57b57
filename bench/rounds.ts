/**
 * What cpu-per-request.ts and cpu-profile.ts share: their options (a number
 * of interleaved rounds, each a fixed number of requests after a warm-up),
 * the proxies they can measure, and where those run (the proxy alone on
 * CPU 0; the origin and the load on CPU 1).
 */
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { intFlag } from './child.ts'

export const PROXY_CPU = '0'
export const LOAD_CPU = '1'

export interface Target {
  /** The letter `--only` names it by. */
  key: string
  name: string
  /** Its launcher, in bench/. */
  file: string
  env: NodeJS.ProcessEnv
}

const TARGETS: readonly Target[] = [
  { key: 'b', name: 'outrider', file: 'outrider-proc.ts', env: {} },
  { key: 'b0', name: 'outrider, no compile cache', file: 'outrider-proc.ts', env: { NODE_DISABLE_COMPILE_CACHE: '1' } },
  { key: 'c', name: 'undici-min', file: 'undici-min.ts', env: {} },
  { key: 'p', name: 'peer-undici-min', file: 'peer-undici-min.ts', env: {} },
]

export interface Rounds {
  size: number
  requests: number
  warmup: number
  rounds: number
  connections: number
  /** The targets `--only` named, in the order of TARGETS. */
  targets: Target[]
  /** `--top`: how many functions a listing shows. */
  top: number
}

/** Parses the shared options from argv; `defaults` differ per tool. */
export function parseRounds (defaults: { size: number, requests: number, warmup: number, rounds: number, only: string }): Rounds {
  const { values } = parseArgs({
    options: {
      size: { type: 'string' },
      requests: { type: 'string' },
      warmup: { type: 'string' },
      rounds: { type: 'string' },
      connections: { type: 'string' },
      only: { type: 'string' },
      top: { type: 'string' },
    },
  })
  const only = (values.only ?? defaults.only).split(',')
  const targets = TARGETS.filter((t) => only.includes(t.key))
  if (targets.length === 0) throw new Error(`--only ${values.only ?? ''} names no target (${TARGETS.map((t) => t.key).join(', ')})`)
  return {
    size: intFlag(values.size, 'size', defaults.size),
    requests: intFlag(values.requests, 'requests', defaults.requests),
    warmup: intFlag(values.warmup, 'warmup', defaults.warmup),
    rounds: Math.max(1, intFlag(values.rounds, 'rounds', defaults.rounds)),
    connections: Math.max(1, intFlag(values.connections, 'connections', 50)),
    targets,
    top: intFlag(values.top, 'top', 30),
  }
}

/** A file in bench/ by name. */
export function benchScript (name: string): string {
  return fileURLToPath(new URL(name, import.meta.url))
}
