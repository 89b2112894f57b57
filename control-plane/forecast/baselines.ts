/**
 * The baselines the evaluation compares against, written the way a first
 * implementation would be: no fitting, no robustness. Not exported from the
 * module's index.
 */
import type { Forecaster, PredictionInterval, ForecasterDescription } from './forecaster.ts'

/** Same time one week (`period` seconds) earlier; further weeks back when that point is missing. */
export function createSeasonalNaive (stepSeconds: number, periodSeconds = 604_800): Forecaster {
  const m = Math.round(periodSeconds / stepSeconds)
  const y: number[] = []
  let first = 0
  return {
    observe (t, v) {
      const s = Math.round(t / stepSeconds)
      if (y.length === 0) first = s
      while (first + y.length < s) y.push(Number.NaN)
      if (first + y.length === s) y.push(Number.isFinite(v) ? v : Number.NaN)
    },
    forecast (steps) {
      const out: number[] = []
      let last = 0
      for (let i = y.length - 1; i >= 0; i--) if (!Number.isNaN(y[i]!)) { last = y[i]!; break }
      for (let h = 1; h <= steps; h++) {
        let v = Number.NaN
        // The same time as many whole periods back as it takes to be in the history (several when h > m).
        for (let i = y.length - 1 + h - m * Math.ceil(h / m); i >= 0 && Number.isNaN(v); i -= m) v = y[i]!
        out.push(Number.isNaN(v) ? last : v)
      }
      return out
    },
    interval (steps): PredictionInterval[] {
      return this.forecast(steps).map((v) => ({ lo: v, hi: v }))
    },
    // Nothing to fit.
    * refitting () {},
    describe (): ForecasterDescription {
      return { stage: 'seasonal-naive', seasonalities: [periodSeconds], observations: y.length }
    }
  }
}

/**
 * Additive Holt-Winters with fixed α = 0.5, β = 0.01, γ = 0.1 and one
 * seasonal period, initialised from the first two cycles; missing steps are
 * filled with the one-step forecast.
 */
export function createFixedHoltWinters (stepSeconds: number, periodSeconds = 86_400, alpha = 0.5, beta = 0.01, gamma = 0.1): Forecaster {
  const m = Math.max(2, Math.round(periodSeconds / stepSeconds))
  const warm: number[] = []
  let level = 0
  let trend = 0
  let season: number[] = []
  let phase = 0
  let lastStep = Number.NaN
  let started = false

  const update = (v: number): void => {
    const s = season[phase]!
    const f = level + trend + s
    const y = Number.isNaN(v) ? f : v
    const prev = level
    level = alpha * (y - s) + (1 - alpha) * (level + trend)
    trend = beta * (level - prev) + (1 - beta) * trend
    season[phase] = gamma * (y - level) + (1 - gamma) * s
    phase = (phase + 1) % m
  }
  return {
    observe (t, v) {
      const s = Math.round(t / stepSeconds)
      const value = Number.isFinite(v) ? v : Number.NaN
      const gap = Number.isNaN(lastStep) ? 0 : s - lastStep - 1
      if (s <= lastStep) return
      lastStep = s
      if (!started) {
        for (let i = 0; i < gap; i++) warm.push(Number.NaN)
        warm.push(value)
        if (warm.length < 2 * m) return
        // Classic initialisation: level = mean of cycle 1, trend from cycle 2 − cycle 1, seasonals = deviations.
        const mean = (a: number[]): number => {
          const v = a.filter((x) => !Number.isNaN(x))
          return v.length > 0 ? v.reduce((p, q) => p + q, 0) / v.length : 0
        }
        const c1 = mean(warm.slice(0, m))
        const c2 = mean(warm.slice(m, 2 * m))
        level = c1
        trend = (c2 - c1) / m
        season = Array.from({ length: m }, (_, i) => {
          const a = warm[i]!
          const b = warm[i + m]!
          return mean([a - c1, b - c2])
        })
        phase = 0
        started = true
        // Replay the warm-up so the state is current.
        for (const w of warm) update(w)
        return
      }
      for (let i = 0; i < gap; i++) update(Number.NaN)
      update(value)
    },
    forecast (steps) {
      if (!started) {
        const known = warm.filter((x) => !Number.isNaN(x))
        const last = known[known.length - 1] ?? 0
        return Array.from({ length: steps }, () => last)
      }
      const out: number[] = []
      for (let h = 1; h <= steps; h++) out.push(Math.max(0, level + h * trend + season[(phase + h - 1) % m]!))
      return out
    },
    interval (steps): PredictionInterval[] {
      return this.forecast(steps).map((v) => ({ lo: v, hi: v }))
    },
    // Fixed parameters: nothing to fit.
    * refitting () {},
    describe (): ForecasterDescription {
      return { stage: 'smoothing', seasonalities: [periodSeconds], observations: warm.length }
    }
  }
}

/**
 * The classic rolling z-score: |value − mean| / sd over the trailing
 * `windowSeconds` (a day by default), blind to seasonality. Returns the raw |z|
 * so an evaluation can sweep its threshold.
 */
export function createRollingZScore (stepSeconds: number, windowSeconds = 86_400): { observe (t: number, v: number): number } {
  const w = Math.max(2, Math.round(windowSeconds / stepSeconds))
  const ring: number[] = []
  let sum = 0
  let sumSq = 0
  return {
    observe (_t, v) {
      if (!Number.isFinite(v)) return 0
      let z = 0
      if (ring.length >= Math.min(w, 12)) {
        const mean = sum / ring.length
        const sd = Math.sqrt(Math.max(0, sumSq / ring.length - mean * mean))
        z = sd > 0 ? Math.abs(v - mean) / sd : 0
      }
      ring.push(v)
      sum += v
      sumSq += v * v
      if (ring.length > w) {
        const old = ring.shift()!
        sum -= old
        sumSq -= old * old
      }
      return z
    }
  }
}
