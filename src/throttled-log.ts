import type { Logger } from './log.ts'

/**
 * A warning that repeats on every request while its cause lasts (Redis down)
 * is written at most once per interval, with the number of repeats it stood
 * for: the log says what happened without becoming the outage's second cause.
 * Repeats left over when the burst ends are written once the interval is up
 * (the last of them, with the count), not held until a next warning that may
 * never come.
 */
export class ThrottledLog {
  readonly #log: Logger
  readonly #intervalMs: number
  #last = -Infinity
  #suppressed = 0
  /** The latest suppressed warning, written with the count when the interval ends. */
  #pending: { msg: string, fields: Record<string, unknown> } | undefined
  #timer: NodeJS.Timeout | undefined

  constructor (log: Logger, intervalMs: number) {
    this.#log = log
    this.#intervalMs = intervalMs
  }

  warn (msg: string, fields: Record<string, unknown>): void {
    const now = performance.now()
    if (now - this.#last < this.#intervalMs) {
      this.#suppressed++
      this.#pending = { msg, fields }
      // Unref'd: a pending count must not keep a stopping process up.
      this.#timer ??= setTimeout(() => { this.#flush() }, this.#intervalMs - (now - this.#last)).unref()
      return
    }
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#pending = undefined
    this.#write(now, msg, fields, this.#suppressed)
  }

  /** The interval is up: the last suppressed warning, standing for the others too. */
  #flush (): void {
    this.#timer = undefined
    const pending = this.#pending
    this.#pending = undefined
    if (pending !== undefined) this.#write(performance.now(), pending.msg, pending.fields, this.#suppressed - 1)
  }

  #write (now: number, msg: string, fields: Record<string, unknown>, suppressed: number): void {
    this.#last = now
    this.#suppressed = 0
    this.#log.warn(msg, suppressed === 0 ? fields : { ...fields, suppressed })
  }
}
