import { RateLimiterMemory, type RateLimiterRes } from 'rate-limiter-flexible'
import { allowed, refused, type LimitSpec, type LimitStore, type WindowCounter, type WindowResult } from './store.ts'

interface Shared {
  readonly limiter: RateLimiterMemory
  refs: number
}

/**
 * Per-process counters by scope and window length, shared by every plugin
 * instance that names them and reference-counted. A reload builds the new
 * snapshot's instances before the old ones close, so counts carry over: a
 * config push from the control plane must not hand every client a fresh
 * window. The limiter is given no real limit (MAX_SAFE_INTEGER points): it
 * only counts, and each counter compares with its own points, so an
 * override or a changed limit moves the threshold on the same count, as
 * the Redis store does.
 */
const shared = new Map<string, Shared>()

class MemoryCounter implements WindowCounter {
  readonly #limiter: RateLimiterMemory
  readonly #verdict: (res: RateLimiterRes) => WindowResult

  constructor (limiter: RateLimiterMemory, points: number) {
    this.#limiter = limiter
    this.#verdict = (res) => res.consumedPoints > points ? refused(res.msBeforeNext) : allowed(points - res.consumedPoints, res.msBeforeNext)
  }

  hit (key: string): Promise<WindowResult> {
    return this.#limiter.consume(key).then(this.#verdict)
  }

  refund (key: string): void {
    void this.#limiter.reward(key)
  }
}

/**
 * The default store: counters in this process. Exact and free, but each
 * Outrider counts alone, so N sidecars allow N times the limit.
 */
export class MemoryStore implements LimitStore {
  readonly #held: string[] = []
  #closed = false

  counter (scope: string, limit: LimitSpec): WindowCounter {
    const id = `${scope}\u0000${limit.seconds}`
    let entry = shared.get(id)
    if (entry === undefined) {
      entry = { limiter: new RateLimiterMemory({ points: Number.MAX_SAFE_INTEGER, duration: limit.seconds, keyPrefix: '' }), refs: 0 }
      shared.set(id, entry)
    }
    entry.refs++
    this.#held.push(id)
    return new MemoryCounter(entry.limiter, limit.points)
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const id of this.#held) {
      const entry = shared.get(id)
      if (entry !== undefined && --entry.refs === 0) shared.delete(id)
    }
  }
}
