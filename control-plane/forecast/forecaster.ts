import { runJob, type Job } from './job.ts'
import { advance, fitSteps, forecastAhead, inverse, forward, defaultSmoothing, frontCut, horizonsUpTo, initHalfWidths, initialStateSteps, shiftSteps, MAD_TO_SD } from './smoothing.ts'
import type { EngineOptions, FitProblem, Smoothing, SmoothingState, Transform, TransformKind } from './smoothing.ts'
import { median, normalQuantile } from './stats.ts'

export interface ForecasterOptions {
  /** Seconds between observations. */
  stepSeconds: number
  /**
   * Seasonal periods in seconds; daily (86 400) and weekly (604 800) by
   * default. A period is used only when it spans at least 2 steps, and is
   * rounded to whole steps.
   */
  seasonalities?: number[]
  /** The horizon the parameters are tuned for (errors at 1…h steps): 2 hours by default. */
  horizonSeconds?: number
  /** Parameters are refitted when this much new data has arrived: a day by default. */
  refitEverySeconds?: number
  /** History kept for fitting: 6 weeks, or 3 of the longest period if more. */
  historySeconds?: number
  /** Updates clip one-step errors at this many robust sds (robust Holt-Winters); 3 by default. */
  clip?: number
  /** Fit a damped trend; true by default. */
  trend?: boolean
  /** Variance-stabilising transforms to choose from by fit; all three by default. */
  transforms?: TransformKind[]
}

export interface PredictionInterval {
  lo: number
  hi: number
}

/** What the forecaster currently runs, for logs and the operator API. */
export interface ForecasterDescription {
  /** `empty` → `last-value` → `seasonal-naive` → `smoothing` as history grows. */
  stage: 'empty' | 'last-value' | 'seasonal-naive' | 'smoothing'
  /** Seasonal periods in use, seconds. */
  seasonalities: number[]
  transform?: TransformKind
  params?: Smoothing
  /** Mean absolute error at the tuned horizons over the fitting window (original units). */
  fitError?: number
  observations: number
}

export interface Forecaster {
  /** Adds the value observed at `tSeconds`; times may skip steps (gaps) but not go back. */
  observe (tSeconds: number, value: number): void
  /** Point forecasts for the next `steps` steps after the last observation; never negative. */
  forecast (steps: number): number[]
  /**
   * Central prediction intervals at `level` (0.9 by default) for the next
   * `steps` steps: split-conformal quantiles of the out-of-sample errors at
   * those horizons over the fitting window, scaled by how noisy the last
   * steps were, so they are asymmetric on the log scale and never below 0. On
   * the synthetic corpus 90% intervals covered 91% of actuals, and 87% (3
   * days) and 85% (4 days) the day after a short history (evaluate.ts).
   */
  interval (steps: number, level?: number): PredictionInterval[]
  describe (): ForecasterDescription
  /**
   * The refit the next forecast, interval or describe would do (nothing when
   * none is due), as a job (./job.ts) that yields between the optimiser's
   * steps: a Slicer runs it without stalling the event loop, and the calls
   * after it do not fit. Nothing else MAY be called on the forecaster until
   * the job is done.
   */
  refitting (): Job<void>
}

const DAY = 86_400
const WEEK = 7 * DAY

interface Model {
  periods: number[]
  transform: Transform
  params: Smoothing
  state: SmoothingState
  /** The errors that make the prediction intervals (see calibrationSteps). */
  calibration: Calibration
  horizons: number[]
  objective: number
  scaleFloor: number
}

/**
 * Per-route request-rate forecaster: robust double-seasonal Holt-Winters
 * (daily × weekly, Taylor 2003) with a damped trend and an AR(1) correction
 * of the last error, on a log, square-root or raw scale, whichever fits best.
 * The smoothing parameters are fitted by Nelder–Mead on the mean absolute
 * error at horizons up to `horizonSeconds` (the multi-step fit beats a
 * one-step fit at 2 hours), refitted once per `refitEverySeconds` of new data
 * when a forecast is asked for, never per observation.
 *
 * Robust to incidents and holidays: the initial profile is a running median
 * over up to three weeks, and every update clips the one-step error at
 * `clip` robust sds, so an outage moves the profile by a bounded amount and
 * does not come back a week later. Level shifts are followed within half an
 * hour (4 steps at least): that many large errors of one sign in a row move
 * the level to the new regime's (see ./smoothing.ts), a return to the old
 * level takes two; a shorter spike leaves the level alone.
 *
 * Until there is enough history it falls back: the mean of the last three
 * values, then the value one day (the shortest period) earlier; the daily
 * model starts after two days, the weekly component after ten. A missing step
 * is imputed with the model's own forecast, so gaps neither pull the level
 * down nor shift the seasonal phase; observations at a time already seen are
 * ignored. Forecasts are never negative (request counts); a negative value in
 * the history restricts the model to the raw scale.
 *
 * @example
 * const f = createForecaster({ stepSeconds: 300 })
 * for (const [t, requests] of history) f.observe(t, requests)
 * const next2h = f.forecast(24)        // 24 five-minute steps
 * const bands = f.interval(24, 0.9)    // [{ lo, hi }, …]
 */
export function createForecaster (options: ForecasterOptions): Forecaster {
  return new SeasonalForecaster(options)
}

class SeasonalForecaster implements Forecaster {
  #step: number
  #periods: number[]
  #horizons: number[]
  #refitEvery: number
  #historyLength: number
  #clip: number
  #trend: boolean
  #transforms: TransformKind[]

  /** Values since #firstStep (NaN = missing). */
  #values: number[] = []
  #firstStep = 0
  #observed = 0
  #integers = true
  #negative = false
  #model: Model | undefined
  #fittedAt = -1
  #fits = 0

  constructor (options: ForecasterOptions) {
    const { stepSeconds } = options
    if (!(stepSeconds > 0)) throw new RangeError('stepSeconds must be positive')
    this.#step = stepSeconds
    this.#periods = usablePeriods(stepSeconds, options.seasonalities ?? [DAY, WEEK])
    const H = Math.max(1, Math.round((options.horizonSeconds ?? 7200) / stepSeconds))
    this.#horizons = horizonsUpTo(H)
    this.#refitEvery = Math.max(1, Math.round((options.refitEverySeconds ?? DAY) / stepSeconds))
    const longest = this.#periods[this.#periods.length - 1] ?? 0
    this.#historyLength = Math.max(Math.round((options.historySeconds ?? 6 * WEEK) / stepSeconds), 3 * longest, 64)
    this.#clip = options.clip ?? 3
    this.#trend = options.trend ?? true
    this.#transforms = options.transforms ?? ['log', 'sqrt', 'none']
  }

  observe (tSeconds: number, value: number): void {
    const step = Math.round(tSeconds / this.#step)
    const v = Number.isFinite(value) ? value : Number.NaN
    if (this.#values.length === 0) {
      if (Number.isNaN(v)) return
      this.#firstStep = step
    }
    const last = this.#firstStep + this.#values.length - 1
    if (step <= last) return
    if (step - last > this.#historyLength) {
      // A hole longer than the whole history: nothing before it is still relevant.
      this.#values = []
      this.#model = undefined
      this.#fittedAt = -1
      this.#firstStep = step
    }
    for (let s = this.#values.length === 0 ? step : last + 1; s < step; s++) this.#push(Number.NaN)
    this.#push(v)
    if (!Number.isNaN(v)) {
      this.#observed++
      if (!Number.isInteger(v)) this.#integers = false
      if (v < 0) this.#negative = true
    }
    const excess = this.#values.length - this.#historyLength
    // Trim in chunks so the array is not shifted on every observation; never to a history that starts with a gap.
    if (excess > this.#historyLength / 8) {
      const cut = frontCut(this.#values, excess)
      this.#values.splice(0, cut)
      this.#firstStep += cut
    }
  }

  #push (v: number): void {
    this.#values.push(v)
    const model = this.#model
    if (model === undefined) return
    if (model.transform.kind !== 'none' && v < 0) {
      // A negative value cannot go through log or sqrt: refit on the raw scale.
      this.#model = undefined
      return
    }
    advance(model.state, model.params, this.#engine(model), Number.isNaN(v) ? v : forward(model.transform, v))
  }

  #engine (model: Model): EngineOptions {
    return { periods: model.periods, transform: model.transform, clip: this.#clip, scaleRate: 0.02, scaleFloor: model.scaleFloor, shiftAfter: shiftSteps(this.#step) }
  }

  /** Steps of history kept, gaps included. */
  get #span (): number {
    return this.#values.length
  }

  #activePeriods (): number[] {
    const span = this.#span
    const shortest = this.#periods[0]
    return this.#periods.filter((m, k) => k === 0 ? span >= 2 * m : span >= m + 3 * shortest!)
  }

  #maybeRefit (): void {
    runJob(this.refitting())
  }

  * refitting (): Job<void> {
    const periods = this.#activePeriods()
    // With seasonality configured, a model waits for two cycles of it: a non-seasonal fit on a day's ramp
    // would extrapolate the ramp. Seasonal naive is the safer forecast until then.
    const shortest = this.#periods[0]
    const minimum = shortest === undefined ? 16 : 2 * shortest
    if (this.#observed < 8 || this.#span < minimum) {
      this.#model = undefined
      return
    }
    const end = this.#firstStep + this.#values.length
    const samePeriods = this.#model !== undefined && this.#model.periods.length === periods.length
    if (samePeriods && end - this.#fittedAt < this.#refitEvery) return
    yield * this.#refit(periods, samePeriods)
    this.#fittedAt = end
  }

  * #refit (periods: number[], warm: boolean): Job<void> {
    const y = this.#values
    const n = y.length
    const longest = periods[periods.length - 1] ?? Math.min(n, 96)
    // Initialise on up to three whole cycles of the longest period (the median of three weeks ignores an
    // incident in one of them) that leave at least the last two cycles, or the second half of a shorter
    // history, to score; score everything after them. The scored errors MUST be out of sample: they are
    // the prediction intervals, and errors on the data the profile was built from are too small (with 3
    // days of history 90% intervals covered 68%).
    const initMax = Math.max(n - 2 * longest, Math.floor(n / 2))
    const cycles = Math.max(1, Math.min(3, Math.floor(initMax / longest)))
    // A history shorter than one cycle (no seasonality) initialises on its first half.
    const initLength = cycles * longest < n ? cycles * longest : initMax
    const errorStart = initLength
    const med = median(y)
    const positive = Number.isFinite(med) && med > 0 ? med : meanAbs(y)
    // 1% of the typical value keeps the log finite at zero without flattening low counts; counts never need less than 1.
    const offset = Math.max(0.01 * positive, this.#integers ? 1 : 1e-9)
    const previous = this.#model
    // Choosing the scale triples the cost of a fit: it is chosen on the first fit and every seventh after.
    const kinds: TransformKind[] = this.#negative
      ? ['none']
      : warm && previous !== undefined && this.#fits % 7 !== 0 ? [previous.transform.kind] : this.#transforms
    let best: Omit<Model, 'calibration'> | undefined
    let bestProblem: FitProblem | undefined
    for (const kind of kinds) {
      const transform: Transform = { kind, offset }
      const scaleFloor = kind === 'log' ? 1e-4 : 1e-4 * Math.abs(forward(transform, positive || 1))
      const problem: FitProblem = {
        y,
        firstStep: this.#firstStep,
        periods,
        halfWidths: initHalfWidths(periods, this.#step, initLength),
        initLength,
        errorStart,
        horizons: this.#horizons,
        originalUnits: true,
        trend: this.#trend,
        engine: { transform, clip: this.#clip, scaleRate: 0.02, scaleFloor, shiftAfter: shiftSteps(this.#step) }
      }
      const start = warm && previous !== undefined && previous.transform.kind === kind ? previous.params : defaultSmoothing(periods.length)
      const result = yield * fitSteps(problem, start, warm && previous?.transform.kind === kind ? 60 : 150)
      if (best === undefined || result.objective < best.objective) {
        best = { periods, transform, params: result.params, state: result.state, horizons: this.#horizons, objective: result.objective, scaleFloor }
        bestProblem = problem
      }
    }
    this.#model = { ...best!, calibration: yield * calibrationSteps(bestProblem!, best!.params) }
    this.#fits++
  }

  /** Model-unit forecasts for 1…steps. */
  #path (steps: number): number[] {
    const model = this.#model!
    const out: number[] = []
    for (let h = 1; h <= steps; h++) out.push(forecastAhead(model.state, model.params, model.periods, h))
    return out
  }

  forecast (steps: number): number[] {
    if (!(steps > 0)) return []
    this.#maybeRefit()
    const model = this.#model
    if (model !== undefined) return this.#path(steps).map((x) => clean(inverse(model.transform, x)))
    return this.#fallback(steps)
  }

  interval (steps: number, level = 0.9): PredictionInterval[] {
    if (!(steps > 0)) return []
    this.#maybeRefit()
    const model = this.#model
    if (model !== undefined) {
      const widths = horizonWidths(model, level)
      return this.#path(steps).map((x, i) => {
        const w = halfWidth(model.horizons, widths, i + 1)
        return { lo: clean(inverse(model.transform, x - w)), hi: clean(inverse(model.transform, x + w)) }
      })
    }
    const z = normalQuantile((1 + level) / 2)
    const point = this.#fallback(steps)
    // Before a model exists, the spread of step-to-step changes, growing like a random walk's.
    const diffs: number[] = []
    const y = this.#values
    for (let i = Math.max(1, y.length - 200); i < y.length; i++) diffs.push(Math.abs(y[i]! - y[i - 1]!))
    const sd = (median(diffs) || 0) * MAD_TO_SD
    return point.map((p, i) => ({ lo: Math.max(0, p - z * sd * Math.sqrt(i + 1)), hi: p + z * sd * Math.sqrt(i + 1) }))
  }

  #fallback (steps: number): number[] {
    const y = this.#values
    const recent: number[] = []
    for (let i = y.length - 1; i >= 0 && recent.length < 3; i--) if (!Number.isNaN(y[i]!)) recent.push(y[i]!)
    const mean = recent.length > 0 ? recent.reduce((a, b) => a + b, 0) / recent.length : 0
    const m = this.#periods[0]
    const out: number[] = []
    for (let h = 1; h <= steps; h++) {
      // Seasonal naive once a whole period has been seen: the same time one period earlier.
      const i = m !== undefined && y.length >= m ? y.length - 1 + h - m * Math.ceil(h / m) : -1
      const v = i >= 0 ? y[i]! : Number.NaN
      out.push(Math.max(0, Number.isNaN(v) ? mean : v))
    }
    return out
  }

  describe (): ForecasterDescription {
    this.#maybeRefit()
    const model = this.#model
    const observations = this.#observed
    if (model !== undefined) {
      return {
        stage: 'smoothing',
        seasonalities: model.periods.map((m) => m * this.#step),
        transform: model.transform.kind,
        params: model.params,
        fitError: model.objective,
        observations
      }
    }
    const m = this.#periods[0]
    const stage = this.#values.length === 0 ? 'empty' : m !== undefined && this.#values.length >= m ? 'seasonal-naive' : 'last-value'
    return { stage, seasonalities: [], observations }
  }
}

/** Periods (seconds) as whole steps, keeping those of at least 2 steps, ascending, without duplicates. */
export function usablePeriods (stepSeconds: number, seasonalities: number[]): number[] {
  const steps = seasonalities.map((s) => Math.round(s / stepSeconds)).filter((m) => m >= 2)
  return [...new Set(steps)].sort((a, b) => a - b)
}

/**
 * The errors behind the prediction intervals: at each fitted horizon, the
 * out-of-sample |model-unit error| of every forecast made over the fitting
 * window, divided by how noisy the model was at the forecast's origin
 * relative to the window's median (`localRatio`). An interval then multiplies
 * their quantile by the ratio at its own origin, so it is narrower in quiet
 * hours and wider after a run of large errors than one width for all
 * (normalised conformal prediction, Papadopoulos et al. 2008, Lei et al.
 * 2018); traffic's noise moves with the hour and the day.
 */
interface Calibration {
  /** Sorted scaled errors per horizon of Model.horizons. */
  errors: Float64Array[]
  /** Median robust scale at the scored forecasts' origins. */
  typicalScale: number
}

/**
 * A local scale this many times above or below the window's typical one moves
 * the widths no further: the tracked scale starts near 0 after a one-cycle
 * initialisation, and a single tiny origin scale would make a huge scaled error.
 */
const SCALE_RATIO_LIMIT = 3
/**
 * The widths follow the square root of the scale ratio, not the ratio: the
 * tracked median |error| is itself noisy (it moves 2% a step), and following
 * it fully cost interval score after 3 days of history (4.35 → 4.59 MSIS)
 * for 2 points more coverage than the square root's.
 */
const SCALE_RATIO_POWER = 0.5

/** The model's robust sd of one-step errors now (./smoothing.ts tracks the median |error|). */
const robustScale = (state: SmoothingState, scaleFloor: number): number => Math.max(state.absMedian * MAD_TO_SD, scaleFloor)

/** What the errors at an origin with robust sd `scale` are divided by, and the widths now multiplied by. */
function localRatio (scale: number, typicalScale: number): number {
  return Math.min(SCALE_RATIO_LIMIT, Math.max(1 / SCALE_RATIO_LIMIT, scale / typicalScale)) ** SCALE_RATIO_POWER
}

/**
 * Runs the fitted model over the history once more (as ./smoothing.ts'
 * simulate does for the objective) and collects Calibration's scaled errors,
 * on the steps after the initialisation window only: out of sample.
 */
function * calibrationSteps (problem: FitProblem, params: Smoothing): Job<Calibration> {
  const { y, horizons, errorStart, periods } = problem
  const opts: EngineOptions = { ...problem.engine, periods }
  const x = Float64Array.from(y, (v) => (Number.isFinite(v) ? forward(opts.transform, v) : Number.NaN))
  const state = yield * initialStateSteps(x, problem.firstStep, periods, problem.initLength, problem.halfWidths, problem.trend)
  yield
  const H = horizons[horizons.length - 1] ?? 1
  const ring = H + 1
  // pending[j][target % ring]: the forecast of the target made horizons[j] steps before it, and its origin's scale.
  const pending = horizons.map(() => new Float64Array(ring).fill(Number.NaN))
  const originScale = horizons.map(() => new Float64Array(ring))
  const errors: number[][] = horizons.map(() => [])
  const scales: number[][] = horizons.map(() => [])
  for (let i = 0; i < x.length; i++) {
    const xi = x[i]!
    if (i >= errorStart && !Number.isNaN(xi)) {
      for (let j = 0; j < horizons.length; j++) {
        const f = pending[j]![i % ring]!
        if (Number.isNaN(f)) continue
        errors[j]!.push(Math.abs(f - xi))
        scales[j]!.push(originScale[j]![i % ring]!)
      }
    }
    advance(state, params, opts, xi)
    if (i + 1 < errorStart - H) continue
    const scale = robustScale(state, opts.scaleFloor)
    for (let j = 0; j < horizons.length; j++) {
      const h = horizons[j]!
      if (i + h >= x.length) continue
      pending[j]![(i + h) % ring] = forecastAhead(state, params, periods, h)
      originScale[j]![(i + h) % ring] = scale
    }
  }
  const typicalScale = median(scales.flat()) || opts.scaleFloor
  const scaled = errors.map((e, j) => Float64Array.from(e, (v, k) => v / localRatio(scales[j]![k]!, typicalScale)).sort())
  return { errors: scaled, typicalScale }
}

/**
 * Half-widths (model units) of the central `level` intervals at the fitted
 * horizons, now: the split-conformal quantile of each horizon's scaled errors
 * (the ⌈(n + 1)·level⌉-th smallest of n, which covers at least `level` of a
 * new exchangeable error where the plain quantile covers less when n is small),
 * made non-decreasing in h (an error 2 hours ahead is not smaller than one 1
 * hour ahead; a few errors must not say so), times the local scale ratio.
 */
function horizonWidths (model: Model, level: number): number[] {
  const ratio = localRatio(robustScale(model.state, model.scaleFloor), model.calibration.typicalScale)
  let widest = 0
  return model.calibration.errors.map((e) => {
    widest = Math.max(widest, conformalQuantile(e, level))
    return widest * ratio
  })
}

/** The half-width `h` steps ahead: interpolated between the fitted horizons `hs`, grown like a random walk's beyond the last. */
function halfWidth (hs: number[], widths: number[], h: number): number {
  if (widths.length === 0) return 0
  if (h <= hs[0]!) return widths[0]!
  for (let j = 1; j < hs.length; j++) {
    if (h <= hs[j]!) {
      const w = (h - hs[j - 1]!) / (hs[j]! - hs[j - 1]!)
      return widths[j - 1]! + w * (widths[j]! - widths[j - 1]!)
    }
  }
  return widths[widths.length - 1]! * Math.sqrt(h / hs[hs.length - 1]!)
}

/**
 * The ⌈(n + 1)·p⌉-th smallest of `sorted` (split conformal prediction, Vovk
 * et al. 2005; Lei et al. 2018), the largest when that is beyond n; 0 when empty.
 */
export function conformalQuantile (sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length
  if (n === 0) return 0
  const k = Math.ceil((n + 1) * Math.min(1, Math.max(0, p)))
  return sorted[Math.min(n, Math.max(1, k)) - 1]!
}

function meanAbs (y: number[]): number {
  let s = 0
  let n = 0
  for (const v of y) {
    if (!Number.isNaN(v)) {
      s += Math.abs(v)
      n++
    }
  }
  return n > 0 ? s / n : 0
}

const clean = (v: number): number => (Number.isFinite(v) && v > 0 ? v : 0)
