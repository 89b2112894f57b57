import { runJob, type Job } from './job.ts'
import { advance, fitSteps, forecastAhead, forward, inverse, initialStateSteps, initHalfWidths, defaultSmoothing, frontCut, horizonsUpTo, MAD_TO_SD } from './smoothing.ts'
import type { EngineOptions, FitProblem, Smoothing, SmoothingState, Transform } from './smoothing.ts'
import { usablePeriods } from './forecaster.ts'
import { median } from './stats.ts'

export interface DetectorOptions {
  /** Seconds between observations. */
  stepSeconds: number
  /** Seasonal periods in seconds; daily and weekly by default (as in the forecaster). */
  seasonalities?: number[]
  /**
   * Robust z (|one-step residual| / robust sd, log scale) at which the score
   * reaches 0.5: 4.5 by default. Traffic residuals have heavier tails than a
   * normal's, so 4.5 robust sds alert about as often as 4 would on Gaussian
   * noise; lower it for more recall.
   */
  threshold?: number
  /** Scores are 0 until this much history has been seen: two days by default. */
  warmupSeconds?: number
  /** Parameters are refitted after this much new data: a day by default. */
  refitEverySeconds?: number
  /** History kept for refits: 4 weeks by default. */
  historySeconds?: number
  /**
   * How long the state from before a deviation is kept: a deviation that ends
   * within it leaves no trace in the model, and a severe one keeps alerting
   * for up to this long. 36 hours by default, so the day after a holiday is
   * compared with the day before it.
   */
  memorySeconds?: number
  /** A value this many times below or above the pre-deviation forecast is severe (an outage, a storm): 2 by default. */
  severeRatio?: number
}

/** Snapshot of what the detector currently does, for logs and the operator API. */
export interface DetectorDescription {
  warmedUp: boolean
  seasonalities: number[]
  params?: Smoothing
  /** True while a deviation is being followed (the state from before it is kept). */
  inAnomaly: boolean
}

export interface Detector {
  /**
   * Adds the value at `tSeconds` and returns its anomaly score in [0, 1]; ≥ 0.5
   * means alert. Skipped steps are gaps; a repeated or earlier time, a
   * negative or non-finite value scores 0 and is not learnt from.
   */
  observe (tSeconds: number, value: number): number
  /**
   * observe as a job (./job.ts): the refit an observation may set off
   * yields between the optimiser's steps, so a Slicer runs it without
   * stalling the event loop. Same score and state as observe. Nothing else
   * MAY be called on the detector until the job is done.
   */
  observing (tSeconds: number, value: number): Job<number>
  describe (): DetectorDescription
}

/** Steps of history replayed between two yields of a refit. */
const REPLAY_SLICE = 512

const DAY = 86_400
const WEEK = 7 * DAY
/** Per phase-of-day buckets of the residual scale: traffic is noisier, relatively, at night. */
const BUCKETS = 24
/** Huber clip of the state updates, robust sds. */
const CLIP = 3
/** Log-step of the scale trackers. */
const SCALE_RATE = 0.03
/** The score's slope: 0.1 at threshold − 1.5, 0.9 at threshold + 1.5. */
const SLOPE = Math.log(9) / 1.5
/** Until the weekly profile is known (10 days) the first weekend looks like an incident: the threshold is raised by this factor. */
const EARLY_FACTOR = 1.5
/** Parameters are first fitted after this many shortest periods (days); default parameters before. */
const FIT_AFTER = 2
/** A deviation ends when a value is back within this many sds of the pre-deviation forecast. */
const RELEASE = 2
/** The most a drop that looks like another day of the week (a holiday) scores: noticeable, no alert. */
const HOLIDAY_SCORE = 0.4
/** Robust z-units by which another weekday's profile must have fitted better, on average over recent hours. */
const HOLIDAY_EVIDENCE = 1
const EVIDENCE_CLIP = 6
/**
 * Large errors in a row that make a level shift: an hour (at least 4 steps), longer than the forecaster's
 * half hour, so an hour-long degradation alerts throughout (point F1 on the corpus 0.73 with half an hour).
 */
const SHIFT_AFTER = (stepSeconds: number): number => Math.max(4, Math.round(3600 / stepSeconds))

interface Model {
  periods: number[]
  params: Smoothing
  transform: Transform
  engine: EngineOptions
}

/**
 * Anomaly detector for per-route request counts. Each point is scored by how
 * far it is from a robust seasonal one-step forecast (the forecaster's engine
 * on the log scale, so the same shape scores the same at 10 and at 100 000
 * requests per step), in units of the robust spread of recent one-step errors
 * at that time of day. Spikes and drops both score; the score is a logistic
 * function of that robust z, 0.5 at `threshold` (4.5), 0.1 at 3, 0.9 at 6.
 * Point-level: every point of an incident should score, not just its start.
 *
 * - Poisson noise: for integer counts the sd is never below the counting
 *   noise at the forecast volume, so a quiet route at night does not alert on
 *   0 requests instead of 3.
 * - Incidents do not poison the model: updates are clipped at 3 sds (robust
 *   Holt-Winters), the initial profile is a running median over up to three
 *   weeks, and when a point alerts the state from before it is kept aside; if
 *   the series comes back to that state within `memorySeconds`, the state is
 *   restored, so neither the recovery nor the same hour next week alerts.
 * - Level shifts: after an hour (4 steps at least) of large errors of one
 *   sign the working state takes the new level (see ./smoothing.ts), so a
 *   moderate shift alerts for its first hour and then stops. A severe deviation
 *   (halved or doubled by default: outages to near zero, storms) keeps
 *   alerting for as long as it lasts, up to `memorySeconds`.
 * - Holidays: a drop that another, quieter day of the week has explained
 *   better for the last few hours (a weekday that looks like a Sunday) scores
 *   at most 0.4: visible, not an alert. Incident corpora rarely label
 *   holidays, and a page for Christmas morning is noise. An outage after a
 *   normal morning is still an outage, even at Sunday's volume.
 * - Warm-up: 0 for the first two days; until the weekly profile is known (ten
 *   days) the threshold is 1.5 times higher.
 *
 * Parameters are fitted (Nelder–Mead) on errors up to 2 hours ahead, which
 * keeps the level a slow quantity, and refitted daily; each refit replays the
 * kept history through the same logic.
 *
 * @example
 * const d = createDetector({ stepSeconds: 300 })
 * for (const [t, requests] of stream) {
 *   if (d.observe(t, requests) >= 0.5) alert(t)
 * }
 */
export function createDetector (options: DetectorOptions): Detector {
  return new ResidualDetector(options)
}

class ResidualDetector implements Detector {
  #step: number
  #periods: number[]
  #threshold: number
  #warmup: number
  #refitEvery: number
  #historyLength: number
  #memory: number
  #severe: number

  #values: number[] = []
  #firstStep = 0
  #integers = true
  #model: Model | undefined
  #fittedAt = -1
  #fitted = false

  #state: SmoothingState | undefined
  /** The state from just before the current deviation, advanced without updates. */
  #before: SmoothingState | undefined
  #beforeAge = 0
  /** Tracked median |one-step error| per phase-of-day bucket. */
  #buckets = new Float64Array(BUCKETS)
  #dayPeriod = 0
  /** Per other day of the week: how much better its profile has fitted recently (see #restDay). */
  #evidence = new Float64Array(0)

  constructor (options: DetectorOptions) {
    const { stepSeconds } = options
    if (!(stepSeconds > 0)) throw new RangeError('stepSeconds must be positive')
    this.#step = stepSeconds
    this.#periods = usablePeriods(stepSeconds, options.seasonalities ?? [DAY, WEEK])
    this.#threshold = options.threshold ?? 4.5
    this.#warmup = Math.max(8, Math.round((options.warmupSeconds ?? 2 * DAY) / stepSeconds))
    this.#refitEvery = Math.max(1, Math.round((options.refitEverySeconds ?? DAY) / stepSeconds))
    const longest = this.#periods[this.#periods.length - 1] ?? 0
    this.#historyLength = Math.max(Math.round((options.historySeconds ?? 4 * WEEK) / stepSeconds), 2 * longest, 64)
    this.#memory = Math.max(1, Math.round((options.memorySeconds ?? 36 * 3600) / stepSeconds))
    this.#severe = Math.log(options.severeRatio ?? 2)
    this.#dayPeriod = Math.round(DAY / stepSeconds)
  }

  observe (tSeconds: number, value: number): number {
    return runJob(this.observing(tSeconds, value))
  }

  * observing (tSeconds: number, value: number): Job<number> {
    const step = Math.round(tSeconds / this.#step)
    const v = Number.isFinite(value) && value >= 0 ? value : Number.NaN
    if (this.#values.length === 0) {
      if (Number.isNaN(v)) return 0
      this.#firstStep = step
    }
    const last = this.#firstStep + this.#values.length - 1
    if (step <= last) return 0
    if (step - last > this.#historyLength) {
      this.#values = []
      this.#model = undefined
      this.#state = undefined
      this.#before = undefined
      this.#fitted = false
      this.#firstStep = step
    }
    for (let s = this.#values.length === 0 ? step : last + 1; s < step; s++) yield * this.#push(Number.NaN)
    if (!Number.isNaN(v) && !Number.isInteger(v)) this.#integers = false
    const score = yield * this.#push(v)
    const excess = this.#values.length - this.#historyLength
    // Never to a history that starts with a gap: the next refit would have no level to start from.
    if (excess > this.#historyLength / 8) {
      const cut = frontCut(this.#values, excess)
      this.#values.splice(0, cut)
      this.#firstStep += cut
    }
    return score
  }

  * #push (v: number): Job<number> {
    this.#values.push(v)
    let score = 0
    if (this.#model !== undefined) score = this.#process(this.#model, v)
    yield * this.#maybeRefit()
    return score
  }

  #activePeriods (): number[] {
    const span = this.#values.length
    const shortest = this.#periods[0]
    return this.#periods.filter((m, k) => k === 0 ? span >= m : span >= m + 3 * shortest!)
  }

  * #maybeRefit (): Job<void> {
    const span = this.#values.length
    if (span < this.#warmup) return
    const periods = this.#activePeriods()
    const end = this.#firstStep + span
    const samePeriods = this.#model !== undefined && this.#model.periods.length === periods.length
    // A day to initialise on and a day to fit on; until then the default parameters.
    const canFit = span >= (periods[0] ?? 0) * FIT_AFTER + 16
    if (samePeriods && end - this.#fittedAt < this.#refitEvery && (this.#fitted || !canFit)) return
    yield * this.#refit(periods, canFit)
    this.#fittedAt = end
  }

  * #refit (periods: number[], canFit: boolean): Job<void> {
    const y = this.#values
    const n = y.length
    const longest = periods[periods.length - 1] ?? Math.min(n, 96)
    // Initialise on up to three whole cycles of the longest period: the median of three weeks ignores an
    // incident in one of them, one or two weeks cannot. Fit on the last two cycles (or half the history),
    // in sample where they overlap; parameters matter less here than a clean profile.
    const cycles = Math.max(1, Math.min(3, Math.floor(n / longest)))
    const initLength = Math.min(cycles * longest, n)
    const errorStart = Math.min(initLength, Math.max(n - 2 * longest, Math.floor(n / 2)))
    const med = median(y)
    const offset = Math.max(0.01 * (med > 0 ? med : 1), this.#integers ? 1 : 1e-9)
    const transform: Transform = { kind: 'log', offset }
    const engine: EngineOptions = { periods, transform, clip: CLIP, scaleRate: SCALE_RATE, scaleFloor: 1e-3, shiftAfter: SHIFT_AFTER(this.#step) }
    const halfWidths = initHalfWidths(periods, this.#step, initLength)
    let params = this.#model !== undefined && this.#model.periods.length === periods.length ? this.#model.params : { ...defaultSmoothing(periods.length), beta: 0, damping: 1 }
    if (canFit && errorStart < n) {
      const problem: FitProblem = {
        y,
        firstStep: this.#firstStep,
        periods,
        halfWidths,
        initLength,
        errorStart,
        // Fitting the next two hours rather than the next step keeps the level a slow quantity, so the
        // state kept from before a deviation still forecasts well hours later.
        horizons: horizonsUpTo(Math.round(7200 / this.#step)),
        originalUnits: false,
        trend: false,
        engine
      }
      params = (yield * fitSteps(problem, params, this.#fitted ? 50 : 120)).params
      this.#fitted = true
    }
    const model: Model = { periods, params, transform, engine }
    this.#model = model
    // Replay the history through the detector's own logic, so the state carries no trace of past incidents.
    const x = y.map((v) => Number.isNaN(v) ? v : forward(transform, v))
    const init = yield * initialStateSteps(x, this.#firstStep, periods, initLength, halfWidths)
    yield
    // The scale per time of day starts from the median one-step error there (out of sample where possible);
    // a tracker starting from the in-sample remainder would begin far too small and alert on everything.
    const probe = init.clone()
    const errors: number[][] = Array.from({ length: BUCKETS }, () => [])
    const all: number[] = []
    const from = n > errorStart ? errorStart : 0
    for (let i = 0; i < n; i++) {
      const bucket = this.#bucket(probe.step + 1)
      const e = advance(probe, params, engine, x[i]!)
      if (i >= from && !Number.isNaN(e)) {
        errors[bucket]!.push(Math.abs(e))
        all.push(Math.abs(e))
      }
      if (i % REPLAY_SLICE === REPLAY_SLICE - 1) yield
    }
    const overall = all.length > 0 ? median(all) : init.absMedian
    for (let b = 0; b < BUCKETS; b++) this.#buckets[b] = errors[b]!.length >= 4 ? median(errors[b]!) : overall
    this.#state = init
    this.#before = undefined
    const day = periods[0] ?? 0
    const week = periods[1] ?? 0
    this.#evidence = new Float64Array(periods.length >= 2 && week % day === 0 ? week / day - 1 : 0)
    for (let i = 0; i < n; i++) {
      this.#process(model, y[i]!)
      if (i % REPLAY_SLICE === REPLAY_SLICE - 1) yield
    }
  }

  #bucket (step: number): number {
    const m = this.#dayPeriod
    if (m < BUCKETS) return 0
    return Math.floor((((step % m) + m) % m) * BUCKETS / m)
  }

  /** Scores the value at the next step and updates the states. */
  #process (model: Model, v: number): number {
    const state = this.#state!
    const { params, periods, engine, transform } = model
    if (Number.isNaN(v)) {
      advance(state, params, engine, Number.NaN)
      if (this.#before !== undefined) advance(this.#before, params, engine, Number.NaN)
      return 0
    }
    const x = forward(transform, v)
    const step = state.step + 1
    const bucket = this.#bucket(step)
    const f = forecastAhead(state, params, periods, 1)
    const sd = this.#sd(bucket, f, model, state)
    let z = (x - f) / sd
    // Until the weekly profile is known, the first weekend looks like an outage: be stricter.
    const weekly = periods.length >= 2
    const threshold = weekly ? this.#threshold : this.#threshold * EARLY_FACTOR
    const before = this.#before
    const fb = before !== undefined ? forecastAhead(before, params, periods, 1) : f
    // Holidays are judged against the state from before the deviation: the working one is adapting to it.
    const holiday = this.#restDay(model, before ?? state, fb, x, sd)
    if (before !== undefined) {
      const zb = (x - fb) / sd
      // Only when the old state explains the value better than the adapted one: after a level shift the
      // adapted state is right, and noise that lands near the old level must not undo the adaptation.
      if (Math.abs(zb) < RELEASE && Math.abs(x - fb) <= Math.abs(x - f)) {
        // Back to what it was before the deviation: forget the deviation.
        this.#state = before
        this.#before = undefined
        z = zb
      } else {
        // A severe deviation (an outage to near zero, a storm) alerts for as long as it lasts.
        if (weekly && Math.abs(x - fb) >= this.#severe && Math.abs(zb) > Math.abs(z)) z = zb
        advance(before, params, engine, Number.NaN)
        if (++this.#beforeAge > this.#memory) this.#before = undefined
      }
    } else if (Math.abs(z) >= threshold) {
      const snapshot = state.clone()
      advance(snapshot, params, engine, Number.NaN)
      this.#before = snapshot
      this.#beforeAge = 0
    }
    const e = advance(this.#state!, params, engine, x)
    const az = Math.abs(z)
    if (az < CLIP) {
      const b = this.#buckets[bucket]!
      this.#buckets[bucket] = b * (Math.abs(e) > b ? Math.exp(SCALE_RATE) : Math.exp(-SCALE_RATE))
    }
    if (!this.#inScoringRange()) return 0
    const score = 1 / (1 + Math.exp(-SLOPE * (az - threshold)))
    return holiday ? Math.min(score, HOLIDAY_SCORE) : score
  }

  /**
   * Whether a drop below the forecast `f` is what a quieter day of the week
   * looks like at this time of day, and has looked like it for hours: a
   * holiday. The evidence per other day of the week is a running mean (over
   * about 3 hours) of how much better that day's profile fits than the usual
   * one, so an outage after a normal morning is not mistaken for a Sunday even
   * when Sunday's volume is as low as the outage's.
   */
  #restDay (model: Model, state: SmoothingState, f: number, x: number, sd: number): boolean {
    const { periods } = model
    const evidence = this.#evidence
    if (evidence.length === 0) return false
    const day = periods[0]!
    const week = periods[1]!
    const w = state.seasonals[1]!
    const step = state.step + 1
    const p = ((step % week) + week) % week
    const usual = Math.abs(x - f)
    // The quieter day must explain the value about as well as a normal point, and much better than the usual forecast.
    const tolerance = Math.max(RELEASE * sd, 0.5 * (f - x))
    const rate = Math.min(0.5, this.#step / (3 * 3600))
    let explained = false
    for (let k = 0; k < evidence.length; k++) {
      const alt = f - w[p]! + w[(p + (k + 1) * day) % week]!
      const miss = Math.abs(x - alt)
      const better = Math.max(-EVIDENCE_CLIP, Math.min(EVIDENCE_CLIP, (usual - miss) / sd))
      evidence[k]! += rate * (better - evidence[k]!)
      if (x < f && alt < f && miss < tolerance && evidence[k]! >= HOLIDAY_EVIDENCE) explained = true
    }
    return explained
  }

  #inScoringRange (): boolean {
    return this.#values.length >= this.#warmup
  }

  #sd (bucket: number, f: number, model: Model, state: SmoothingState): number {
    const local = this.#buckets[bucket]! * MAD_TO_SD
    const global = state.absMedian * MAD_TO_SD
    let sd = Math.max(local, 0.5 * global, model.engine.scaleFloor)
    if (this.#integers) {
      // Counting noise of log(y + offset) at the forecast volume (delta method): √μ / (μ + offset).
      const mu = inverse(model.transform, f)
      sd = Math.max(sd, Math.sqrt(mu + 0.25) / (mu + model.transform.offset))
    }
    return sd
  }

  describe (): DetectorDescription {
    return {
      warmedUp: this.#model !== undefined && this.#inScoringRange(),
      seasonalities: (this.#model?.periods ?? []).map((m) => m * this.#step),
      params: this.#model?.params,
      inAnomaly: this.#before !== undefined
    }
  }
}
