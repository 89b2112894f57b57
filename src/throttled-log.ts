import type { Logger } from './log.ts'

/**
 * A warning that repeats on every request while its cause lasts (Redis down)
 * is written at most once per interval, with the number of repeats it stood
 * for: the log says what happened without becoming the outage's second cause.
 */
export class ThrottledLog {
  readonly #log: Logger
  readonly #intervalMs: number
  #last = -Infinity
  #suppressed = 0

  constructor (log: Logger, intervalMs: number) {
    this.#log = log
    this.#intervalMs = intervalMs
  }

  warn (msg: string, fields: Record<string, unknown>): void {
    const now = performance.now()
    if (now - this.#last < this.#intervalMs) {
      this.#suppressed++
      return
    }
    this.#last = now
    this.#log.warn(msg, this.#suppressed === 0 ? fields : { ...fields, suppressed: this.#suppressed })
    this.#suppressed = 0
  }
}
