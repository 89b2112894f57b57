/**
 * The engine shared by the forecaster and the detector: additive exponential
 * smoothing with a damped trend, any number of seasonal components (Taylor's
 * double-seasonal Holt-Winters, 2003, when there are two) and an AR(1)
 * correction of the one-step error (Taylor's adjustment, which captures the
 * hours-long wander of traffic that seasonality cannot), run on a
 * variance-stabilised copy of the data:
 *
 * - `log`  makes seasonality and noise multiplicative (traffic's usual shape),
 * - `sqrt` stabilises Poisson counting noise,
 * - `none` is the classic additive model.
 *
 * Robust (Gelper, Fried & Croux 2010): each one-step error is clipped to
 * ±clip robust sds before it updates the states, so an outage moves the level
 * and the seasonal profile by a bounded amount per step and does not echo a
 * week later. The scale is a tracked median of |error| (each step moves it by
 * a fixed factor up or down), which no burst of outliers can blow up quickly.
 *
 * Level shifts (a deploy, an incident that lasts, a campaign): clipping alone
 * would follow them by at most `clip` sds × α per step, for days. After
 * `shiftAfter` errors beyond 2 robust sds of one sign in a row, the level is reset to
 * the median of those observations with the season taken out, and the level
 * then learns with gain max(α, 1/n) over the n observations since (a running
 * mean of the new regime, the Kalman gain of a level whose variance was just
 * reset) until that falls to α. A spike shorter than `shiftAfter` steps, or
 * one that changes sign, only ever sees the clipped updates.
 *
 * Steps are absolute (`round(t / stepSeconds)`), so seasonal phases are tied to
 * the clock and a series may start at any time.
 */
import { median, toBox, fromBox } from './stats.ts'
import { runJob, type Job } from './job.ts'
import { nelderMeadSteps } from './nelder-mead.ts'

export type TransformKind = 'none' | 'sqrt' | 'log'

export interface Transform {
  readonly kind: TransformKind
  /** Added before the log so zeros stay finite; relative to the data's scale. */
  readonly offset: number
}

export function forward (tr: Transform, y: number): number {
  switch (tr.kind) {
    case 'none': return y
    case 'sqrt': return Math.sqrt(Math.max(0, y))
    case 'log': return Math.log(Math.max(0, y) + tr.offset)
  }
}

export function inverse (tr: Transform, x: number): number {
  switch (tr.kind) {
    case 'none': return x
    case 'sqrt': return x > 0 ? x * x : 0
    case 'log': return Math.max(0, Math.exp(x) - tr.offset)
  }
}

export interface Smoothing {
  /** Level. */
  alpha: number
  /** Trend, as a share of the level's update. */
  beta: number
  /** Per-step trend damping φ; 1 = linear trend. */
  damping: number
  /** One per seasonal period. */
  gammas: number[]
  /** AR(1) coefficient on the last one-step error. */
  ar: number
}

/** Median of |N(0, 1)|: converts a median absolute error into an sd. */
export const MAD_TO_SD = 1 / 0.6744897501960817

export interface EngineOptions {
  /** Seasonal periods in steps. */
  periods: number[]
  transform: Transform
  /** Huber clip of the one-step error, in robust sds; Infinity = classic HW. */
  clip: number
  /** Log-step by which the |error| median tracker moves per observation. */
  scaleRate: number
  /** Lower bound on the robust sd (model units) so a constant series can still move. */
  scaleFloor: number
  /** Errors beyond 2 robust sds, of one sign, in a row that make a level shift; 0 = never. */
  shiftAfter: number
}

export class SmoothingState {
  level = 0
  trend = 0
  seasonals: Float64Array[] = []
  /** Last (clipped) one-step error relative to the base forecast: the AR(1) term. */
  error = 0
  /** Tracked median of |one-step error|. */
  absMedian = 0
  /** Absolute index of the last step processed. */
  step = 0
  /** The current run of large errors of one sign: the observations with the season taken out. */
  run: number[] = []
  /** The same observations ÷ their forecast without trend and AR term: the shift's factor on non-log scales. */
  runRatios: number[] = []
  runSign = 0
  /** Observations since the last level shift (Infinity: none yet), for the level's catch-up gain. */
  sinceShift = Number.POSITIVE_INFINITY
  /** The level before the last shift (NaN: none yet). */
  previousLevel = Number.NaN

  clone (): SmoothingState {
    const c = new SmoothingState()
    c.level = this.level
    c.trend = this.trend
    c.seasonals = this.seasonals.map((s) => s.slice())
    c.error = this.error
    c.absMedian = this.absMedian
    c.step = this.step
    c.run = this.run.slice()
    c.runRatios = this.runRatios.slice()
    c.runSign = this.runSign
    c.sinceShift = this.sinceShift
    c.previousLevel = this.previousLevel
    return c
  }
}

/**
 * Errors beyond this many robust sds count towards a level shift: fewer than
 * the clip, so a shift smaller than the clip (×2 in 20% noise) is seen too; on
 * Gaussian noise six in a row of one sign happen once in 10¹⁰ steps.
 */
const SHIFT_SDS = 2
/** Steps in a row near the level from before the last shift that take the series back to it. */
const RETURN_AFTER = 2
/**
 * How long after a shift (in units of `shiftAfter`, half an hour: about a
 * day) the quick return holds. An outage ends or a deploy is rolled back
 * within hours; a week later the old level is history, and a short dip to it
 * is a dip, not a return.
 */
const RETURN_WITHIN = 48

const mod = (a: number, m: number): number => ((a % m) + m) % m

/** Sum of the seasonal components at absolute step `step`. */
export function seasonalAt (state: SmoothingState, periods: number[], step: number): number {
  let s = 0
  for (let k = 0; k < periods.length; k++) s += state.seasonals[k]![mod(step, periods[k]!)]!
  return s
}

/** Forecast (model units) `h` ≥ 1 steps after the last processed step. */
export function forecastAhead (state: SmoothingState, params: Smoothing, periods: number[], h: number): number {
  const phi = params.damping
  // φ + φ² + … + φʰ
  const trendSum = phi === 1 ? h : phi * (1 - phi ** h) / (1 - phi)
  return state.level + trendSum * state.trend + seasonalAt(state, periods, state.step + h) + params.ar ** h * state.error
}

/**
 * Processes the next step (`state.step + 1`); `x` is in model units, NaN when
 * missing. A missing step changes nothing but the clock and lets the AR term
 * decay, which is exactly "impute the model's own one-step forecast".
 * Returns the one-step error before clipping (NaN when missing).
 */
export function advance (state: SmoothingState, params: Smoothing, opts: EngineOptions, x: number): number {
  const periods = opts.periods
  const step = state.step + 1
  const phi = params.damping
  let season = 0
  for (let k = 0; k < periods.length; k++) season += state.seasonals[k]![mod(step, periods[k]!)]!
  const base = state.level + phi * state.trend + season
  state.step = step
  if (Number.isNaN(x)) {
    state.level += phi * state.trend
    state.trend *= phi
    state.error *= params.ar
    return Number.NaN
  }
  const e = x - base - params.ar * state.error
  const sd = Math.max(state.absMedian * MAD_TO_SD, opts.scaleFloor)
  const limit = opts.clip * sd
  if (Math.abs(e) <= SHIFT_SDS * sd) {
    state.run.length = 0
    state.runRatios.length = 0
    state.runSign = 0
  } else if (opts.shiftAfter > 0 && shiftRun(state, opts, Math.sign(e), x - season, x / (state.level + season))) {
    return e
  }
  const clipped = e > limit ? limit : e < -limit ? -limit : e
  // The states learn from the error against the base forecast, AR part included (Taylor 2003).
  const u = params.ar * state.error + clipped
  // Just after a shift the level is a running mean of the new regime's observations.
  const gain = Math.max(params.alpha, 1 / ++state.sinceShift)
  state.level += phi * state.trend + gain * u
  state.trend = phi * state.trend + params.alpha * params.beta * u
  for (let k = 0; k < periods.length; k++) {
    const s = state.seasonals[k]!
    s[mod(step, periods[k]!)]! += params.gammas[k]! * u
  }
  state.error = u
  // Median tracker: moves up when |e| is above the current median, down otherwise.
  state.absMedian *= Math.abs(e) > state.absMedian ? Math.exp(opts.scaleRate) : Math.exp(-opts.scaleRate)
  if (state.absMedian < opts.scaleFloor * 0.6745) state.absMedian = opts.scaleFloor * 0.6745
  return e
}

/**
 * Adds an error of `sign` beyond SHIFT_SDS (the observation without its
 * season: `deseasoned`) to the current run, and once the run is `shiftAfter`
 * long moves the level to the run's median: returns whether it did. A return
 * to the level from before the last shift needs only RETURN_AFTER steps (an
 * outage that ends, a deploy rolled back) within about a day of the shift:
 * that level is known. The tracked
 * scale becomes at least the run's spread about the new level (a shift on the
 * raw scale changes the noise too), and the AR term, which was following the
 * old level, is dropped.
 */
function shiftRun (state: SmoothingState, opts: EngineOptions, sign: number, deseasoned: number, ratio: number): boolean {
  if (sign !== state.runSign) {
    state.run.length = 0
    state.runRatios.length = 0
    state.runSign = sign
  }
  state.run.push(deseasoned)
  state.runRatios.push(ratio)
  const previous = state.previousLevel
  // Back when the level from before explains each value of the run far better than the current one.
  const back = state.run.length >= RETURN_AFTER && state.sinceShift <= RETURN_WITHIN * opts.shiftAfter &&
    state.run.every((v) => 3 * Math.abs(v - previous) < Math.abs(v - state.level))
  if (!back && state.run.length < opts.shiftAfter) return false
  let level = back ? previous : median(state.run)
  // On the square-root and raw scales seasonality is additive but traffic shifts multiply: the profile
  // scales with the level (on the log scale both just add).
  const factor = back ? previous / state.level : median(state.runRatios)
  if (opts.transform.kind !== 'log' && state.level > 0 && factor > 0 && Number.isFinite(factor)) {
    level = factor * state.level
    for (const s of state.seasonals) for (let p = 0; p < s.length; p++) s[p]! *= factor
  }
  state.previousLevel = state.level
  state.level = level
  state.error = 0
  // The old level has drifted since: it catches up as fast as a new one.
  state.sinceShift = state.run.length
  if (!back) state.absMedian = Math.max(state.absMedian, median(state.run.map((v) => Math.abs(v - level))))
  state.run.length = 0
  state.runRatios.length = 0
  state.runSign = 0
  return true
}

/** Large errors in a row (of one sign) that make a level shift with `stepSeconds` steps: half an hour, 4 to 12 steps. */
export function shiftSteps (stepSeconds: number): number {
  return Math.max(4, Math.min(12, Math.round(1800 / stepSeconds)))
}

/**
 * How many values to drop from the front of a history (NaN = missing) to
 * drop at least `excess`: the missing ones right after them go too, so the
 * kept history starts with an observation. A history that starts with a gap
 * longer than the initialisation window would otherwise have no level (NaN
 * forecasts, NaN scores). At least one value is kept.
 */
export function frontCut (values: ArrayLike<number>, excess: number): number {
  let cut = Math.max(0, excess)
  while (cut < values.length - 1 && Number.isNaN(values[cut]!)) cut++
  return Math.min(cut, Math.max(0, values.length - 1))
}

/**
 * Initial state from the first `initLength` steps of `x` (model units, NaN =
 * missing), a robust decomposition: overall median, then for each period from
 * the shortest the median of what is left over the phases within
 * ±`halfWidths[k]` steps in every cycle seen. Pooling neighbouring phases
 * matters for the weekly profile, seen only once or twice: the median of two
 * weeks is their mean, and an outage in one of them would be learnt as a weekly
 * dip that echoes every week. A running median keeps the sharp edges of the
 * profile (Friday night to Saturday) while ignoring anything shorter than the
 * window.
 */
export function initialState (x: ArrayLike<number>, firstStep: number, periods: number[], initLength: number, halfWidths: number[] = [], withTrend = false): SmoothingState {
  return runJob(initialStateSteps(x, firstStep, periods, initLength, halfWidths, withTrend))
}

/** Phases of a seasonal profile whose running medians are taken between two yields of initialStateSteps. */
const PHASE_SLICE = 256

/** initialState as a job (./job.ts): the weekly profile is thousands of medians, so it yields between slices of them. */
export function * initialStateSteps (x: ArrayLike<number>, firstStep: number, periods: number[], initLength: number, halfWidths: number[] = [], withTrend = false): Job<SmoothingState> {
  const L = Math.min(initLength, x.length)
  const resid = new Float64Array(L)
  for (let i = 0; i < L; i++) resid[i] = x[i]!
  // Detrend first, or growth within each week is learnt as "Monday is low, Sunday is high".
  const { slope, centre } = cycleTrend(resid, periods[periods.length - 1] ?? 0)
  for (let i = 0; i < L; i++) resid[i]! -= slope * (i - centre)
  const med = median(resid)
  for (let i = 0; i < L; i++) resid[i]! -= med
  const state = new SmoothingState()
  for (let k = 0; k < periods.length; k++) {
    const m = periods[k]!
    const buckets: number[][] = Array.from({ length: m }, () => [])
    for (let i = 0; i < L; i++) {
      const r = resid[i]!
      if (Number.isFinite(r)) buckets[mod(firstStep + i, m)]!.push(r)
    }
    const hw = Math.min(halfWidths[k] ?? 0, Math.floor((m - 1) / 2))
    const s = new Float64Array(m)
    const pool: number[] = []
    for (let p = 0; p < m; p++) {
      pool.length = 0
      for (let j = -hw; j <= hw; j++) for (const r of buckets[mod(p + j, m)]!) pool.push(r)
      s[p] = pool.length > 0 ? median(pool) : Number.NaN
      if (p % PHASE_SLICE === PHASE_SLICE - 1) yield
    }
    fillCircular(s)
    let mean = 0
    for (let p = 0; p < m; p++) mean += s[p]!
    mean /= m
    for (let p = 0; p < m; p++) s[p]! -= mean
    for (let i = 0; i < L; i++) resid[i]! -= s[mod(firstStep + i, m)]!
    state.seasonals.push(s)
  }
  // The run starts at step 0, so the level is that of the first period.
  const head = resid.subarray(0, Math.min(L, periods[0] ?? L))
  const headMedian = median(head)
  state.level = med - slope * centre + (Number.isFinite(headMedian) ? headMedian : 0)
  // Without a trend component the level has to catch up with the growth on its own.
  state.trend = withTrend ? slope : 0
  const abs: number[] = []
  for (let i = 1; i < L; i++) {
    // Differences of the remainder approximate one-step errors better than the remainder itself.
    const d = resid[i]! - resid[i - 1]!
    if (Number.isFinite(d)) abs.push(Math.abs(d) / Math.SQRT2)
  }
  state.absMedian = abs.length > 0 ? median(abs) : 0
  state.step = firstStep - 1
  return state
}

/**
 * A robust linear trend: Theil–Sen over the medians of whole cycles of
 * `period` (a weekly cycle holds its own weekend dip, so only whole cycles
 * compare fairly). Needs two cycles; flat otherwise.
 */
function cycleTrend (x: ArrayLike<number>, period: number): { slope: number, centre: number } {
  const cycles = period > 0 ? Math.floor(x.length / period) : 0
  if (cycles < 2) return { slope: 0, centre: 0 }
  const medians: number[] = []
  for (let c = 0; c < cycles; c++) medians.push(median(Array.prototype.slice.call(x, c * period, (c + 1) * period) as number[]))
  const slopes: number[] = []
  for (let i = 0; i < cycles; i++) {
    for (let j = i + 1; j < cycles; j++) slopes.push((medians[j]! - medians[i]!) / ((j - i) * period))
  }
  const slope = median(slopes)
  return { slope: Number.isFinite(slope) ? slope : 0, centre: (cycles * period - 1) / 2 }
}

function fillCircular (s: Float64Array): void {
  const m = s.length
  let anchor = -1
  for (let p = 0; p < m; p++) if (Number.isFinite(s[p]!)) { anchor = p; break }
  if (anchor < 0) {
    s.fill(0)
    return
  }
  // Carry the last known value forward around the circle.
  let last = s[anchor]!
  for (let j = 1; j <= m; j++) {
    const p = (anchor + j) % m
    if (Number.isFinite(s[p]!)) last = s[p]!
    else s[p] = last
  }
}

/**
 * Half-widths (steps) of the initialisation's running medians: about ±10
 * minutes for the shortest period when several cycles are pooled (±30 with
 * one or two), ±1.5 hours for longer ones (the weekly profile).
 */
export function initHalfWidths (periods: number[], stepSeconds: number, initLength: number): number[] {
  return periods.map((m, k) => {
    if (k > 0) return Math.round(5400 / stepSeconds)
    return Math.round((initLength >= 3 * m ? 600 : 1800) / stepSeconds)
  })
}

export interface FitProblem {
  /** Original values, NaN = missing. */
  y: ArrayLike<number>
  /** Absolute step of y[0]. */
  firstStep: number
  periods: number[]
  /** Running-median half-widths of the initialisation, per period. */
  halfWidths: number[]
  initLength: number
  /** Errors are counted for targets at index ≥ errorStart. */
  errorStart: number
  /** Horizons (steps) whose errors make up the objective. */
  horizons: number[]
  /** Whether the objective is measured in original units (forecasting) or model units (detection). */
  originalUnits: boolean
  trend: boolean
  engine: Omit<EngineOptions, 'periods'>
}

export interface FitResult {
  params: Smoothing
  /** Mean absolute error at the chosen horizons. */
  objective: number
  /** Sorted |model-unit error| at each horizon of `horizons` over the scored window: empirical interval widths. */
  horizonErrors: Float64Array[]
  state: SmoothingState
}

/**
 * Runs the model over the history with `params` and returns the mean absolute
 * error at `horizons` over targets from `errorStart`, plus the final state.
 */
export function simulate (problem: FitProblem, params: Smoothing, init: SmoothingState, model: Float64Array, collect = false): { objective: number, state: SmoothingState, horizonErrors: Float64Array[] } {
  const { y, horizons, errorStart, originalUnits } = problem
  const opts: EngineOptions = { ...problem.engine, periods: problem.periods }
  const tr = opts.transform
  const state = init.clone()
  const H = horizons[horizons.length - 1] ?? 1
  const ring = H + 1
  // pending[j][target % ring] = forecast of the target made h_j steps before it.
  const pending = horizons.map(() => new Float64Array(ring).fill(Number.NaN))
  const errs: number[][] = horizons.map(() => [])
  let sum = 0
  let count = 0
  const n = y.length
  for (let i = 0; i < n; i++) {
    const xi = model[i]!
    if (i >= errorStart && !Number.isNaN(xi)) {
      for (let j = 0; j < horizons.length; j++) {
        const f = pending[j]![i % ring]!
        if (Number.isNaN(f)) continue
        const err = originalUnits ? Math.abs(inverse(tr, f) - y[i]!) : Math.abs(f - xi)
        sum += err
        count++
        if (collect) errs[j]!.push(Math.abs(f - xi))
      }
    }
    advance(state, params, opts, xi)
    if (i + 1 >= errorStart - H) {
      for (let j = 0; j < horizons.length; j++) {
        const h = horizons[j]!
        if (i + h < n) pending[j]![(i + h) % ring] = forecastAhead(state, params, problem.periods, h)
      }
    }
  }
  const objective = count > 0 ? sum / count : Number.POSITIVE_INFINITY
  const horizonErrors = collect ? errs.map((e) => Float64Array.from(e).sort()) : []
  return { objective: Number.isFinite(objective) ? objective : Number.POSITIVE_INFINITY, state, horizonErrors }
}

const BOX = {
  alpha: [0.005, 0.95],
  beta: [0, 0.3],
  damping: [0.8, 1],
  gamma: [0, 1],
  ar: [0, 0.98]
} as const

function decode (theta: number[], trend: boolean, k: number): Smoothing {
  let i = 0
  const alpha = toBox(theta[i++]!, BOX.alpha[0], BOX.alpha[1])
  const beta = trend ? toBox(theta[i++]!, BOX.beta[0], BOX.beta[1]) : 0
  const damping = trend ? toBox(theta[i++]!, BOX.damping[0], BOX.damping[1]) : 1
  const gammas: number[] = []
  // Bounding each γ by 1 − α keeps every state update a convex combination.
  for (let j = 0; j < k; j++) gammas.push((1 - alpha) * toBox(theta[i++]!, BOX.gamma[0], BOX.gamma[1]))
  const ar = toBox(theta[i++]!, BOX.ar[0], BOX.ar[1])
  return { alpha, beta, damping, gammas, ar }
}

function encode (p: Smoothing, trend: boolean, k: number): number[] {
  const theta = [fromBox(p.alpha, BOX.alpha[0], BOX.alpha[1])]
  if (trend) theta.push(fromBox(p.beta, BOX.beta[0], BOX.beta[1]), fromBox(p.damping, BOX.damping[0], BOX.damping[1]))
  for (let j = 0; j < k; j++) theta.push(fromBox((p.gammas[j] ?? 0.1) / Math.max(1e-6, 1 - p.alpha), BOX.gamma[0], BOX.gamma[1]))
  theta.push(fromBox(p.ar, BOX.ar[0], BOX.ar[1]))
  return theta
}

export function defaultSmoothing (periods: number): Smoothing {
  return { alpha: 0.2, beta: 0.02, damping: 0.98, gammas: Array.from({ length: periods }, (_, k) => (k === 0 ? 0.1 : 0.2)), ar: 0.5 }
}

/**
 * Fits the smoothing parameters by Nelder–Mead on the mean absolute h-step
 * error, starting from `start` (the previous fit, so daily refits converge in
 * few evaluations).
 */
export function fit (problem: FitProblem, start: Smoothing, maxEvals: number): FitResult {
  return runJob(fitSteps(problem, start, maxEvals))
}

/** fit as a job (./job.ts): it yields after the initialisation and after every run of the model over the history. */
export function * fitSteps (problem: FitProblem, start: Smoothing, maxEvals: number): Job<FitResult> {
  const tr = problem.engine.transform
  const model = new Float64Array(problem.y.length)
  for (let i = 0; i < model.length; i++) {
    const v = problem.y[i]!
    model[i] = Number.isFinite(v) ? forward(tr, v) : Number.NaN
  }
  const init = yield * initialStateSteps(model, problem.firstStep, problem.periods, problem.initLength, problem.halfWidths, problem.trend)
  yield
  const k = problem.periods.length
  const objective = (theta: number[]): number => simulate(problem, decode(theta, problem.trend, k), init, model).objective
  const best = yield * nelderMeadSteps(objective, encode(start, problem.trend, k), { maxEvals, step: 1, tolerance: 1e-4 })
  const params = decode(best.x, problem.trend, k)
  const final = simulate(problem, params, init, model, true)
  return { params, objective: final.objective, horizonErrors: final.horizonErrors, state: final.state }
}

/**
 * The horizons whose errors a fit minimises when tuning for 1…H steps: a
 * handful spread over the path approximates the mean over all of it at a
 * fraction of the cost.
 */
export function horizonsUpTo (H: number): number[] {
  const h = Math.max(1, Math.round(H))
  return [...new Set([1, Math.ceil(h / 4), Math.ceil(h / 2), Math.ceil(3 * h / 4), h])].sort((a, b) => a - b)
}
