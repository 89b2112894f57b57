import type { Analytics } from './analytics.ts'
import { createDetector, createForecaster, Slicer } from './forecast/index.ts'
import { applyActions, evaluate, initialState, type ActionChange, type Observation, type Rule } from './rules.ts'
import type { ConfigDocument } from './validate.ts'

export interface BacktestOptions {
  /** Evaluate from this moment (seconds)… */
  fromSeconds: number
  /** …to this one. */
  toSeconds: number
  /** The analytics tier to replay; the coarsest (5 min) by default. */
  stepSeconds?: number
  /** The document the actions are applied to (the current one); firings compound on it. */
  document: ConfigDocument
  /** Longest run (ms) of model updates and fits between two turns of the event loop: 10 by default. */
  sliceMs?: number
}

export interface BacktestFiring {
  /** When it would have fired: the end of the interval that made it (seconds). */
  t: number
  values: Record<string, number | undefined>
  /** What it would have changed, on the document as the earlier firings left it. */
  changes: ActionChange[]
  errors: string[]
}

export interface BacktestResult {
  stepSeconds: number
  /** Intervals evaluated. */
  evaluations: number
  firings: BacktestFiring[]
}

/**
 * Replays a rule over the stored series ("this rule would have fired 4
 * times last week, at these times, and would have set these limits"): the
 * conditions are evaluated at the end of each interval, on a window of the
 * intervals before it, with `for` and the cooldown as the live engine keeps
 * them (at the interval's resolution: `for 2m` on 5-minute steps needs two
 * intervals in a row). Forecast and anomaly conditions use models that only
 * saw the data before each moment, as they would have then. Three weeks of
 * them refit about twenty times: the models run in slices, between turns
 * of the event loop.
 */
export async function backtest (rule: Rule, analytics: Analytics, options: BacktestOptions): Promise<BacktestResult> {
  const step = options.stepSeconds ?? analytics.tiers.at(-1)?.stepSeconds ?? 300
  const series = analytics.series(rule.route, step, 0, options.toSeconds)
  const bounds = analytics.bounds(rule.route) ?? []
  const n = Math.max(1, Math.round(rule.window / step))
  const metrics = new Set(rule.when.map((c) => c.metric))
  const forecaster = metrics.has('forecastRps') ? createForecaster({ stepSeconds: step }) : undefined
  const detector = metrics.has('anomaly') ? createDetector({ stepSeconds: step }) : undefined
  const state = initialState(rule)
  let document = options.document
  const firings: BacktestFiring[] = []
  let evaluations = 0
  const slicer = new Slicer(options.sliceMs ?? 10)

  for (let i = 0; i < series.length; i++) {
    const p = series[i]
    if (p === undefined) continue
    forecaster?.observe(p.t, p.requests)
    const anomaly = detector === undefined ? undefined : await slicer.run(detector.observing(p.t, p.requests))
    const end = p.t + step
    if (end < options.fromSeconds || end > options.toSeconds) continue
    // Its refit, if one is due, in slices: forecastRps below then only reads the model.
    if (forecaster !== undefined) await slicer.run(forecaster.refitting())
    evaluations++
    let requests = 0
    let errors = 0
    const buckets = new Array<number>(bounds.length + 1).fill(0)
    for (let j = Math.max(0, i - n + 1); j <= i; j++) {
      const q = series[j]
      if (q === undefined) continue
      requests += q.requests
      errors += q.errors
      // Intervals past the histograms' retention add their counts, not a latency of 0 ms.
      if (q.buckets !== undefined) for (let k = 0; k < buckets.length; k++) buckets[k] = (buckets[k] as number) + (q.buckets[k] ?? 0)
    }
    const observation: Observation = {
      requests,
      errors,
      spanSeconds: n * step,
      bounds,
      buckets,
      ...(anomaly === undefined ? {} : { anomaly }),
      forecastRps: (h) => {
        const f = forecaster?.forecast(Math.max(1, Math.ceil(h / step))).at(-1)
        return f === undefined ? undefined : f / step
      },
    }
    const ev = evaluate(rule, state, observation, end)
    if (!ev.fire) continue
    state.lastFiredAt = end
    const r = applyActions(rule, document)
    document = r.document
    firings.push({ t: end, values: ev.values, changes: r.changes, errors: r.errors })
  }
  return { stepSeconds: step, evaluations, firings }
}
