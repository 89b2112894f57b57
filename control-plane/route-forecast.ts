import type { Analytics } from './analytics.ts'
import { createDetector, createForecaster, Slicer, type Detector, type Forecaster } from './forecast/index.ts'

/** A route's request-rate forecast and anomaly state (rates in requests per second). */
export interface RouteForecast {
  route: string
  stepSeconds: number
  /** Complete intervals the models saw. */
  observations: number
  /** The forecaster's stage: `last-value`, `seasonal-naive` or `smoothing` as history grows. */
  model: string
  level: number
  /** One per step after `lastT`. */
  points: Array<{ t: number, rate: number, lo: number, hi: number }>
  /** Start of the last complete interval and its rate. */
  lastT: number
  lastRate: number
  /** The detector's score for the last interval, in [0, 1]; ≥ 0.5 is an alert. */
  anomalyScore: number
  /** Alerting intervals within the last day, oldest first. */
  anomalies: Array<{ t: number, rate: number, score: number }>
}

export interface ForecastQuery {
  /** How far ahead (rounded up to whole steps). */
  horizonSeconds: number
  /** Prediction-interval level, 0.9 by default. */
  level?: number
  /** The analytics tier; the coarsest by default (5 min). */
  stepSeconds?: number
}

const ALERT = 0.5

/**
 * The farthest a forecast looks ahead (GetForecast and `forecast rps in …`
 * conditions alike): a forecast costs one point per step up to its horizon,
 * and beyond a week the weekly profile is all it has to say.
 */
export const MAX_HORIZON_SECONDS = 7 * 86_400

/** The models after the latest complete interval of one route. */
interface Fitted {
  lastT: number
  lastRate: number
  observations: number
  forecaster: Forecaster
  detector: Detector
  score: number
  anomalies: RouteForecast['anomalies']
}

export interface RouteForecastsOptions {
  /**
   * Longest run (ms) of model updates and fits between two turns of the
   * event loop: 10 by default. A route's first fit on three weeks of
   * 5-minute points is about a second of work; it is done in slices so the
   * control plane keeps serving its streams meanwhile.
   */
  sliceMs?: number
}

/**
 * Forecasts over the analytics series with the `forecast/` models, fed the
 * whole retained series the first time a route is asked for and each new
 * complete interval after that (the models refit daily by themselves): a
 * rule asking every few seconds, for any horizon, costs one update per step
 * per route. Updates and fits run in slices (RouteForecastsOptions.sliceMs),
 * one at a time per route; their results are those of running them at once.
 *
 * @example
 * const forecasts = new RouteForecasts(analytics)
 * (await forecasts.get('api', { horizonSeconds: 3600 }))?.points.at(-1)?.rate
 */
export class RouteForecasts {
  readonly #analytics: Analytics
  readonly #slicer: Slicer
  #fitted = new Map<string, Fitted>()
  /** Per route and step, the last caller's turn: one at a time touches the models, none while a fit is half done. */
  #turns = new Map<string, Promise<unknown>>()

  constructor (analytics: Analytics, options: RouteForecastsOptions = {}) {
    this.#analytics = analytics
    this.#slicer = new Slicer(options.sliceMs ?? 10)
  }

  /** Undefined when the route has no complete interval yet. */
  get (route: string, query: ForecastQuery): Promise<RouteForecast | undefined> {
    const step = query.stepSeconds ?? this.#analytics.tiers.at(-1)?.stepSeconds ?? 300
    const key = `${route}\0${step}`
    return this.#inTurn(key, async () => {
      const fitted = await this.#fit(key, route, step)
      return fitted === undefined ? undefined : this.#read(fitted, route, step, query)
    })
  }

  /** Runs `fn` after every earlier caller for `key` is done. */
  #inTurn<T> (key: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.#turns.get(key) ?? Promise.resolve()).then(fn)
    const done = run.catch(() => undefined)
    this.#turns.set(key, done)
    void done.then(() => { if (this.#turns.get(key) === done) this.#turns.delete(key) })
    return run
  }

  /** The forecast from models that are up to date: #fit ran the forecaster's due refit, so nothing here fits. */
  #read (fitted: Fitted, route: string, step: number, query: ForecastQuery): RouteForecast {
    const level = query.level ?? 0.9
    const steps = Math.max(1, Math.ceil(query.horizonSeconds / step))
    const values = fitted.forecaster.forecast(steps)
    const bands = fitted.forecaster.interval(steps, level)
    return {
      route,
      stepSeconds: step,
      observations: fitted.observations,
      model: fitted.forecaster.describe().stage,
      level,
      points: values.map((v, i) => ({ t: fitted.lastT + (i + 1) * step, rate: v / step, lo: (bands[i]?.lo ?? v) / step, hi: (bands[i]?.hi ?? v) / step })),
      lastT: fitted.lastT,
      lastRate: fitted.lastRate,
      anomalyScore: fitted.score,
      anomalies: [...fitted.anomalies],
    }
  }

  async #fit (key: string, route: string, step: number): Promise<Fitted | undefined> {
    const cached = this.#fitted.get(key)
    // Models seen before take the new intervals only (they refit daily by themselves): three weeks of
    // 5-minute points replayed into fresh models cost over a second per route per interval.
    const series = this.#analytics.series(route, step)
    const last = series.at(-1)
    if (last === undefined) return undefined
    if (cached !== undefined && cached.lastT === last.t) return cached
    // Afresh when what the models saw last is no longer in the series (the route was quiet for its whole retention).
    const fitted: Fitted = cached !== undefined && series.some((p) => p.t === cached.lastT)
      ? cached
      : { lastT: -Infinity, lastRate: 0, observations: 0, forecaster: createForecaster({ stepSeconds: step }), detector: createDetector({ stepSeconds: step }), score: 0, anomalies: [] }
    for (const p of series) {
      if (p.t <= fitted.lastT) continue
      fitted.forecaster.observe(p.t, p.requests)
      fitted.score = await this.#slicer.run(fitted.detector.observing(p.t, p.requests))
      fitted.observations++
      if (fitted.score >= ALERT && p.t > last.t - 86_400) fitted.anomalies.push({ t: p.t, rate: p.requests / step, score: fitted.score })
    }
    await this.#slicer.run(fitted.forecaster.refitting())
    fitted.anomalies = fitted.anomalies.filter((a) => a.t > last.t - 86_400)
    fitted.lastT = last.t
    fitted.lastRate = last.requests / step
    this.#fitted.set(key, fitted)
    return fitted
  }
}
