/**
 * A long computation (a fit: hundreds of runs over weeks of history) written
 * as a generator that yields between its steps, so one body serves two
 * drivers: `runJob` runs it to the end at once (tests, backtests, the
 * evaluation), a `Slicer` hands the event loop back between steps (the
 * control plane, which must keep serving its gRPC streams while a route's
 * models are fitted). Both compute exactly the same thing.
 *
 * @example
 * function * sum (xs: number[]): Job<number> {
 *   let s = 0
 *   for (const x of xs) { s += x; yield }
 *   return s
 * }
 * runJob(sum([1, 2]))                     // 3
 * await new Slicer(10).run(sum([1, 2]))   // 3, yielding to the event loop every 10 ms
 */
export type Job<T> = Generator<void, T, void>

/** Runs `job` to the end without yielding to anyone. */
export function runJob<T> (job: Job<T>): T {
  for (;;) {
    const r = job.next()
    if (r.done === true) return r.value
  }
}

const turn = (): Promise<void> => new Promise((resolve) => { setImmediate(resolve) })

/**
 * Runs jobs a slice at a time: once a slice has run `budgetMs`, the next
 * step waits for a turn of the event loop (setImmediate: after pending I/O).
 * The budget is shared by every job run through one Slicer, so many short
 * jobs in a row (a replay of thousands of observations) are sliced as well as
 * one long one. A single step is never cut: the stall is at most the budget
 * plus the longest step.
 */
export class Slicer {
  readonly #budgetMs: number
  #since = performance.now()

  /** `budgetMs` 0 yields after every step. */
  constructor (budgetMs = 10) {
    this.#budgetMs = budgetMs
  }

  async run<T> (job: Job<T>): Promise<T> {
    for (;;) {
      const r = job.next()
      if (r.done === true) return r.value
      await this.pause()
    }
  }

  /** Waits for a turn of the event loop if this slice's budget is spent. */
  async pause (): Promise<void> {
    if (performance.now() - this.#since < this.#budgetMs) return
    await turn()
    this.#since = performance.now()
  }
}
