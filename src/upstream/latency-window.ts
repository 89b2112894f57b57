/**
 * Recent upstream latencies of one route, for hedging on "the route's observed
 * p95". A ring of the last samples; the percentile is recomputed at most every
 * `refreshMs` (a sort of 256 numbers), never per request.
 */
export class LatencyWindow {
  readonly #ring: Float64Array
  readonly #scratch: Float64Array
  #next = 0
  #count = 0
  #cached = Number.NaN
  #cachedAt = -Infinity
  readonly #refreshMs: number

  constructor (size = 256, refreshMs = 250) {
    this.#ring = new Float64Array(size)
    this.#scratch = new Float64Array(size)
    this.#refreshMs = refreshMs
  }

  add (ms: number): void {
    this.#ring[this.#next] = ms
    this.#next = (this.#next + 1) % this.#ring.length
    if (this.#count < this.#ring.length) this.#count++
  }

  /** The q-quantile (0..1) of the window, or `fallback` before `minSamples` were seen. */
  quantile (q: number, now: number, fallback: number, minSamples = 20): number {
    if (this.#count < minSamples) return fallback
    if (now - this.#cachedAt >= this.#refreshMs) {
      const view = this.#scratch.subarray(0, this.#count)
      view.set(this.#ring.subarray(0, this.#count))
      view.sort()
      this.#cached = view[Math.min(this.#count - 1, Math.floor(q * this.#count))] as number
      this.#cachedAt = now
    }
    return this.#cached
  }
}
