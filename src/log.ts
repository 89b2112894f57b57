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

/** Deeper `cause` chains are cut. */
const MAX_CAUSE_DEPTH = 5
/** A record's own keys: a field of the same name is written as `_time`, `_level`, `_msg`. */
const RESERVED = new Set(['time', 'level', 'msg'])

/** An Error as a plain object, with its `cause` chain (`chain`: the errors above it, so a cycle ends). */
function serialise (v: unknown, chain: unknown[] = []): unknown {
  if (v instanceof Error) {
    const out: Record<string, unknown> = { type: v.name, message: v.message }
    const code = (v as { code?: unknown }).code
    if (code !== undefined) out.code = code
    const cause = v.cause
    if (cause !== undefined) {
      chain.push(v)
      out.cause = chain.includes(cause) ? '[circular]' : chain.length > MAX_CAUSE_DEPTH ? '[cause chain cut]' : serialise(cause, chain)
    }
    return out
  }
  return v
}

/**
 * JSON.stringify that cannot throw on what a caller may hand it (a thrown
 * value reaches the crash guard's log as it is): BigInt as a string, a
 * circular reference as `[circular]`. A getter or toJSON that throws still
 * can; `emit` catches that.
 */
function stringify (rec: Record<string, unknown>): string {
  const ancestors: object[] = []
  return JSON.stringify(rec, function (this: unknown, _key, value: unknown) {
    if (typeof value === 'bigint') return value.toString()
    if (typeof value !== 'object' || value === null) return value
    // The replacer is called with the holder as `this`: drop the ancestors it is not under.
    while (ancestors.length > 0 && ancestors.at(-1) !== this) ancestors.pop()
    if (ancestors.includes(value)) return '[circular]'
    ancestors.push(value)
    return value
  })
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
    const time = new Date().toISOString()
    // Logging MUST NOT throw: the crash guard logs, and a throw from its
    // handler ends the process it guards.
    let line: string
    try {
      const rec: Record<string, unknown> = { time, level, msg }
      for (const k in base) rec[RESERVED.has(k) ? `_${k}` : k] = base[k]
      if (fields !== undefined) for (const k in fields) rec[RESERVED.has(k) ? `_${k}` : k] = serialise(fields[k])
      line = stringify(rec)
    } catch {
      line = JSON.stringify({ time, level, msg, logError: 'the fields could not be serialised' })
    }
    try { write(line + '\n') } catch {}
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
