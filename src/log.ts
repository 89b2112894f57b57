/**
 * A minimal structured logger: one JSON line per event on stderr. The access log
 * (issue #7) will use pino; operational events are rare and stay synchronous-free
 * by going through process.stderr's own buffering.
 */
export type Level = 'debug' | 'info' | 'warn' | 'error'

const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 }

export interface Logger {
  debug (msg: string, fields?: Record<string, unknown>): void
  info (msg: string, fields?: Record<string, unknown>): void
  warn (msg: string, fields?: Record<string, unknown>): void
  error (msg: string, fields?: Record<string, unknown>): void
  child (fields: Record<string, unknown>): Logger
  /** Changes the level of this logger and every child (admin `POST /log-level`). */
  setLevel (level: Level): void
  readonly level: Level
}

export const LEVELS: readonly Level[] = ['debug', 'info', 'warn', 'error']

function serialise (v: unknown): unknown {
  if (v instanceof Error) {
    const out: Record<string, unknown> = { type: v.name, message: v.message }
    const code = (v as { code?: unknown }).code
    if (code !== undefined) out.code = code
    if (v.cause !== undefined) out.cause = serialise(v.cause)
    return out
  }
  return v
}

/**
 * stderr that can no longer be written (its reader went away: EPIPE, or a
 * closed descriptor) is given up on. Unhandled, that error would reach the
 * crash guard, which logs it, to stderr, which fails again: a loop of
 * thousands of failing writes a second, forever. Log lines are lost; the
 * traffic is not.
 */
let stderrBroken = false
let stderrWatched = false
function writeStderr (line: string): void {
  if (!stderrBroken) process.stderr.write(line)
}
function stderrWriter (): (line: string) => void {
  if (!stderrWatched) {
    stderrWatched = true
    process.stderr.on('error', () => { stderrBroken = true })
  }
  return writeStderr
}

export function createLogger (options: { level?: Level, base?: Record<string, unknown>, write?: (line: string) => void } = {}, shared?: { level: Level }): Logger {
  const initial = options.level ?? (process.env.OUTRIDER_LOG_LEVEL as Level | undefined) ?? 'info'
  // One level for a logger and all its children, so a runtime change reaches all.
  const state = shared ?? { level: ORDER[initial] === undefined ? 'info' : initial }
  const base = options.base ?? {}
  const write = options.write ?? stderrWriter()
  const emit = (level: Level, msg: string, fields?: Record<string, unknown>): void => {
    if (ORDER[level] < ORDER[state.level]) return
    const rec: Record<string, unknown> = { time: new Date().toISOString(), level, msg, ...base }
    if (fields !== undefined) for (const k in fields) rec[k] = serialise(fields[k])
    write(JSON.stringify(rec) + '\n')
  }
  return {
    debug: (m, f) => { emit('debug', m, f) },
    info: (m, f) => { emit('info', m, f) },
    warn: (m, f) => { emit('warn', m, f) },
    error: (m, f) => { emit('error', m, f) },
    child: (fields) => createLogger({ ...options, base: { ...base, ...fields } }, state),
    setLevel: (level) => { state.level = level },
    get level () { return state.level },
  }
}
