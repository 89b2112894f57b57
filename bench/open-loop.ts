/**
 * An open-loop (constant-rate) HTTP load generator, in the manner of wrk2:
 * request k is due at `start + k / rate`, whatever happened to requests
 * before it, and its latency is measured from that *due* time, not from when
 * it was actually written. A closed-loop tool (autocannon, wrk) waits for a
 * connection to free up before it sends, so a stall delays the requests that
 * should have been sent during it and they never record the stall
 * ("coordinated omission"); measured from the due time, they do.
 *
 * Cheap by construction, so the generator is not what the tail measures:
 * one undici `Pool` (pipelining 1) sized for rate × expected latency, the
 * undici 8 `dispatch` handler API (no streams, no promises per request), one
 * timer that sends every request that has come due, and a log-linear
 * histogram (HDR-style: 128 linear sub-buckets per power of two of µs, so
 * < 0.8% error) that records with a few integer operations. The send lag
 * (when a request was handed to the pool − when it was due) is recorded too:
 * a large one means the generator itself fell behind, and the run says so.
 *
 *   node bench/open-loop.ts --url http://127.0.0.1:8080/ [--rate 1000] [--duration 10] [--warmup 2] [--connections 64] [--group-by x-upstream]
 *
 * prints one JSON summary. `runOpenLoop()` is the same, for bench/resilience.ts.
 */
import { parseArgs } from 'node:util'
import type { IncomingHttpHeaders } from 'node:http'
import { Pool, type Dispatcher } from 'undici'

// ---- histogram ----------------------------------------------------------------

const SUB_BITS = 7
const SUB = 1 << SUB_BITS
/** Values up to 2^31 µs (35 min); anything larger lands in the last bucket. */
const BUCKETS = (31 - SUB_BITS) * SUB + 2 * SUB

/**
 * A log-linear histogram of non-negative integers (µs here): exact below 256,
 * then 128 equal sub-buckets per power of two, so a percentile is off by at
 * most 1/128 of its value. Fixed size, no allocation per record.
 */
export class Histogram {
  readonly counts = new Float64Array(BUCKETS)
  count = 0
  sum = 0
  max = 0

  record (value: number): void {
    const v = value <= 0 ? 0 : value >= 0x7fffffff ? 0x7fffffff : Math.round(value)
    this.counts[bucketOf(v)]!++
    this.count++
    this.sum += v
    if (v > this.max) this.max = v
  }

  /** The highest value equivalent to the one at quantile q (0..1), as HdrHistogram reports it. */
  quantile (q: number): number {
    if (this.count === 0) return Number.NaN
    const rank = Math.max(1, Math.ceil(q * this.count))
    let seen = 0
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!
      if (seen >= rank) return Math.min(highestOf(i), this.max)
    }
    return this.max
  }

  get mean (): number { return this.count === 0 ? Number.NaN : this.sum / this.count }
}

function bucketOf (v: number): number {
  if (v < 2 * SUB) return v
  const shift = 31 - Math.clz32(v) - SUB_BITS
  return (shift + 1) * SUB + (v >>> shift) - SUB
}

function highestOf (i: number): number {
  if (i < 2 * SUB) return i
  const shift = (i >>> SUB_BITS) - 1
  return (((i & (SUB - 1)) + SUB) << shift) + (1 << shift) - 1
}

// ---- generator ----------------------------------------------------------------

export interface OpenLoopOptions {
  /** Target URL (origin + path). */
  url: string
  /** Requests per second, held constant. */
  rate: number
  /** Measured seconds (after the warmup). */
  duration: number
  /** Seconds sent at the same rate before measuring: pools warm, JIT settles. */
  warmup?: number
  /** Connections in the pool; default rate × 100 ms (at least 16): room for every request of a 100 ms stall. */
  connections?: number
  /** Per-request timeout (ms) for the head and between body chunks; a timeout counts as an error. */
  timeoutMs?: number
  /** Count responses per value of this response header (e.g. `x-upstream`), overall and per `slotMs` slot. */
  groupBy?: string
  /** Width of the time slots of the per-group timeline, in ms (default 250). */
  slotMs?: number
  /** Called with the ms since the measured start, every slot, so a driver can change things mid-run. */
  onSlot?: (elapsedMs: number) => void
}

export interface OpenLoopResult {
  rate: number
  duration: number
  connections: number
  /** Measured requests that were due (sent) and that finished (any outcome). */
  sent: number
  completed: number
  ok: number
  non2xx: number
  errors: number
  /** Latency from the due time to the last body byte, in ms. */
  latency: { p50: number, p90: number, p99: number, p999: number, max: number, mean: number }
  /** How late requests were handed to the pool relative to their due time, in ms: the generator's own lag (time queued in the pool is latency, not lag). */
  sendLag: { p99: number, max: number }
  /** CPU the generator's process used, as a share of one core, over the measured window. */
  generatorCpu: number
  /** Responses per `groupBy` value over the measured window. */
  groups: Record<string, number>
  /** Per slot: the slot's start (ms since the measured start) and responses per `groupBy` value, by due time. */
  timeline: Array<{ atMs: number, groups: Record<string, number>, errors: number }>
}

/** One request in flight: the dispatch handler, carrying its due time. */
class Exchange implements Dispatcher.DispatchHandler {
  readonly #run: Run
  readonly #due: number
  #status = 0
  #group = ''

  constructor (run: Run, due: number) {
    this.#run = run
    this.#due = due
  }

  // Present so undici treats this as a handler of its current API, not a legacy one.
  onRequestStart (): void {}

  onResponseStart (_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    this.#status = statusCode
    const name = this.#run.groupBy
    if (name !== undefined) {
      const v = headers[name]
      this.#group = typeof v === 'string' ? v : ''
    }
  }

  onResponseData (): void {}

  onResponseEnd (): void { this.#run.done(this.#due, this.#status, this.#group, false) }

  onResponseError (_controller: Dispatcher.DispatchController, _err: Error): void { this.#run.done(this.#due, 0, '', true) }
}

class Run {
  readonly latency = new Histogram()
  readonly lag = new Histogram()
  readonly groupBy: string | undefined
  readonly groups = new Map<string, number>()
  readonly slots: Array<{ groups: Map<string, number>, errors: number }> = []
  readonly #measureFrom: number
  readonly #measureTo: number
  readonly #slotMs: number
  sent = 0
  completed = 0
  ok = 0
  non2xx = 0
  errors = 0
  inflight = 0
  #drained: (() => void) | undefined

  constructor (measureFrom: number, measureTo: number, slotMs: number, groupBy: string | undefined) {
    this.#measureFrom = measureFrom
    this.#measureTo = measureTo
    this.#slotMs = slotMs
    this.groupBy = groupBy?.toLowerCase()
  }

  sending (due: number, now: number): void {
    this.inflight++
    if (due >= this.#measureFrom && due < this.#measureTo) {
      this.sent++
      this.lag.record((now - due) * 1000)
    }
  }

  done (due: number, status: number, group: string, error: boolean): void {
    const now = performance.now()
    this.inflight--
    if (due >= this.#measureFrom && due < this.#measureTo) {
      this.completed++
      this.latency.record((now - due) * 1000)
      if (error) this.errors++
      else if (status >= 200 && status < 300) this.ok++
      else this.non2xx++
      const slotIndex = Math.floor((due - this.#measureFrom) / this.#slotMs)
      let slot = this.slots[slotIndex]
      if (slot === undefined) {
        for (let s = this.slots.length; s <= slotIndex; s++) this.slots.push({ groups: new Map(), errors: 0 })
        slot = this.slots[slotIndex]!
      }
      if (error) slot.errors++
      if (this.groupBy !== undefined && !error) {
        this.groups.set(group, (this.groups.get(group) ?? 0) + 1)
        slot.groups.set(group, (slot.groups.get(group) ?? 0) + 1)
      }
    }
    if (this.inflight === 0) this.#drained?.()
  }

  drained (): Promise<void> {
    if (this.inflight === 0) return Promise.resolve()
    return new Promise((resolve) => { this.#drained = resolve })
  }
}

const ms = (us: number): number => Math.round(us) / 1000

/**
 * Sends `rate` requests per second to `url` for `warmup + duration` seconds on
 * a fixed timetable and reports the measured window.
 *
 * @example
 * const r = await runOpenLoop({ url: 'http://127.0.0.1:8080/', rate: 1000, duration: 10, warmup: 2 })
 * r.latency.p99 // ms, from each request's due time
 */
export async function runOpenLoop (opts: OpenLoopOptions): Promise<OpenLoopResult> {
  const url = new URL(opts.url)
  const rate = opts.rate
  const warmupMs = (opts.warmup ?? 0) * 1000
  const durationMs = opts.duration * 1000
  const slotMs = opts.slotMs ?? 250
  const connections = opts.connections ?? Math.max(16, Math.ceil(rate * 0.1))
  const timeoutMs = opts.timeoutMs ?? 10_000
  const pool = new Pool(url.origin, {
    connections,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  })
  const path = url.pathname + url.search
  const headers = ['host', url.host]
  const interval = 1000 / rate
  const start = performance.now() + 20
  const measureFrom = start + warmupMs
  const end = measureFrom + durationMs
  const run = new Run(measureFrom, end, slotMs, opts.groupBy)
  const total = Math.round((warmupMs + durationMs) / 1000 * rate)

  let k = 0
  let cpu0 = process.cpuUsage()
  let cpuAt = measureFrom
  let measuring = false
  let slot = 0
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now()
      if (!measuring && now >= measureFrom) {
        measuring = true
        cpu0 = process.cpuUsage()
        cpuAt = now
      }
      while (measureFrom + slot * slotMs <= now && measureFrom + slot * slotMs < end) {
        opts.onSlot?.(slot * slotMs)
        slot++
      }
      // Everything due by now goes out now: a late tick sends a burst, and each
      // request of it still counts from its own due time.
      while (k < total) {
        const due = start + k * interval
        if (due > now) break
        run.sending(due, now)
        pool.dispatch({ origin: url.origin, path, method: 'GET', headers }, new Exchange(run, due))
        k++
      }
      if (k >= total) { resolve(); return }
      const wait = start + k * interval - performance.now()
      setTimeout(tick, wait > 1 ? Math.floor(wait) : 0)
    }
    setTimeout(tick, 20)
  })
  const cpu = process.cpuUsage(cpu0)
  const cpuMs = (cpu.user + cpu.system) / 1000
  const wallMs = Math.max(1, performance.now() - cpuAt)
  await Promise.race([run.drained(), new Promise((resolve) => setTimeout(resolve, timeoutMs + 1000))])
  await pool.destroy()

  const h = run.latency
  return {
    rate,
    duration: opts.duration,
    connections,
    sent: run.sent,
    completed: run.completed,
    ok: run.ok,
    non2xx: run.non2xx,
    // Requests still out at the deadline never finished: errors too.
    errors: run.errors + (run.sent - run.completed),
    latency: { p50: ms(h.quantile(0.5)), p90: ms(h.quantile(0.9)), p99: ms(h.quantile(0.99)), p999: ms(h.quantile(0.999)), max: ms(h.max), mean: ms(h.mean) },
    sendLag: { p99: ms(run.lag.quantile(0.99)), max: ms(run.lag.max) },
    generatorCpu: cpuMs / wallMs,
    groups: Object.fromEntries([...run.groups].sort(([a], [b]) => a.localeCompare(b))),
    timeline: run.slots.map((s, i) => ({ atMs: i * slotMs, groups: Object.fromEntries(s.groups), errors: s.errors })),
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      rate: { type: 'string', default: '1000' },
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '2' },
      connections: { type: 'string' },
      'group-by': { type: 'string' },
    },
  })
  if (values.url === undefined) throw new Error('--url is required')
  const r = await runOpenLoop({
    url: values.url,
    rate: Number(values.rate),
    duration: Number(values.duration),
    warmup: Number(values.warmup),
    connections: values.connections === undefined ? undefined : Number(values.connections),
    groupBy: values['group-by'],
  })
  const { timeline: _timeline, ...summary } = r
  process.stdout.write(JSON.stringify(summary) + '\n')
}
