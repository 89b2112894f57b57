/**
 * Error and detection metrics for forecasts and anomaly scores. Missing
 * values (NaN, null, undefined) in any input are skipped pairwise, so a
 * series with gaps can be scored as it is.
 */

type Series = ArrayLike<number | null | undefined>
type Flags = ArrayLike<boolean | number | null | undefined>

const valid = (v: number | null | undefined): v is number => typeof v === 'number' && Number.isFinite(v)

/**
 * Mean absolute error over the pairs where both values are known; NaN when
 * there are none.
 *
 * @example
 * mae([1, 2, 3], [1, 2, 5]) // 0.6666…
 */
export function mae (actual: Series, predicted: Series): number {
  let sum = 0
  let n = 0
  const len = Math.min(actual.length, predicted.length)
  for (let i = 0; i < len; i++) {
    const a = actual[i]
    const p = predicted[i]
    if (!valid(a) || !valid(p)) continue
    sum += Math.abs(a - p)
    n++
  }
  return n === 0 ? Number.NaN : sum / n
}

/**
 * Mean absolute error of the in-sample seasonal-naive forecast
 * `train[i - seasonalPeriod]`: the denominator of MASE.
 *
 * @example
 * naiveScale([1, 2, 1, 2, 1, 3], 2) // 0.25
 */
export function naiveScale (train: Series, seasonalPeriod = 1): number {
  const m = Math.max(1, Math.round(seasonalPeriod))
  let sum = 0
  let n = 0
  for (let i = m; i < train.length; i++) {
    const a = train[i]
    const b = train[i - m]
    if (!valid(a) || !valid(b)) continue
    sum += Math.abs(a - b)
    n++
  }
  return n === 0 ? Number.NaN : sum / n
}

/**
 * Mean absolute scaled error (Hyndman & Koehler 2006): the forecast's MAE
 * divided by the in-sample MAE of the seasonal-naive forecast on `train`.
 * Below 1 beats seasonal-naive as it did in sample. Scale-free, and unlike
 * MAPE it stays finite when the actuals touch zero.
 *
 * @param seasonalPeriod the naive forecast's lag in steps (1 = last value;
 *   a week of steps = weekly seasonal-naive).
 * @returns NaN when there is nothing to score or the scale is 0.
 *
 * @example
 * mase([10, 12], [11, 12], [8, 10, 9, 11], 2) // 0.5 / 1 = 0.5
 */
export function mase (actual: Series, predicted: Series, train: Series, seasonalPeriod = 1): number {
  const scale = naiveScale(train, seasonalPeriod)
  const err = mae(actual, predicted)
  return scale > 0 ? err / scale : Number.NaN
}

/**
 * Symmetric MAPE in percent, 0–200: mean of 200·|a − p| / (|a| + |p|).
 * A pair that is 0 on both sides is a perfect forecast and counts as 0.
 *
 * @example
 * smape([100, 0], [110, 0]) // (200·10/210 + 0) / 2 ≈ 4.76
 */
export function smape (actual: Series, predicted: Series): number {
  let sum = 0
  let n = 0
  const len = Math.min(actual.length, predicted.length)
  for (let i = 0; i < len; i++) {
    const a = actual[i]
    const p = predicted[i]
    if (!valid(a) || !valid(p)) continue
    const d = Math.abs(a) + Math.abs(p)
    sum += d === 0 ? 0 : 200 * Math.abs(a - p) / d
    n++
  }
  return n === 0 ? Number.NaN : sum / n
}

/**
 * MAPE in percent. Actuals of 0 are skipped: their percentage error is
 * undefined (one reason MASE is the headline metric).
 *
 * @example
 * mape([100, 200, 0], [110, 180, 5]) // (10 + 10) / 2 = 10
 */
export function mape (actual: Series, predicted: Series): number {
  let sum = 0
  let n = 0
  const len = Math.min(actual.length, predicted.length)
  for (let i = 0; i < len; i++) {
    const a = actual[i]
    const p = predicted[i]
    if (!valid(a) || !valid(p) || a === 0) continue
    sum += 100 * Math.abs((a - p) / a)
    n++
  }
  return n === 0 ? Number.NaN : sum / n
}

export interface DetectionScore {
  precision: number
  recall: number
  f1: number
  tp: number
  fp: number
  fn: number
}

const truthy = (v: boolean | number | null | undefined): boolean => v === true || (typeof v === 'number' && v > 0)

function score (tp: number, fp: number, fn: number): DetectionScore {
  // With nothing to find and nothing raised, the detector did its job.
  const precision = tp + fp === 0 ? (fn === 0 ? 1 : 0) : tp / (tp + fp)
  const recall = tp + fn === 0 ? (fp === 0 ? 1 : 0) : tp / (tp + fn)
  const f1 = precision + recall === 0 ? 0 : 2 * precision * recall / (precision + recall)
  return { precision, recall, f1, tp, fp, fn }
}

/**
 * Point-level precision, recall and F1: every step is one decision. Labels
 * and alerts are booleans or numbers (> 0 is true), e.g. `scores.map((s) =>
 * s >= 0.5)`.
 *
 * @example
 * precisionRecallF1([0, 1, 1, 0], [0, 1, 0, 1]) // { precision: 0.5, recall: 0.5, f1: 0.5, tp: 1, fp: 1, fn: 1 }
 */
export function precisionRecallF1 (labels: Flags, alerts: Flags): DetectionScore {
  let tp = 0
  let fp = 0
  let fn = 0
  const len = Math.min(labels.length, alerts.length)
  for (let i = 0; i < len; i++) {
    const l = truthy(labels[i])
    const a = truthy(alerts[i])
    if (l && a) tp++
    else if (a) fp++
    else if (l) fn++
  }
  return score(tp, fp, fn)
}

/** Maximal runs of consecutive true flags as [start, end) pairs. */
export function runs (flags: Flags): Array<[number, number]> {
  const out: Array<[number, number]> = []
  let start = -1
  for (let i = 0; i <= flags.length; i++) {
    const on = i < flags.length && truthy(flags[i])
    if (on && start < 0) start = i
    else if (!on && start >= 0) {
      out.push([start, i])
      start = -1
    }
  }
  return out
}

/**
 * Point-adjusted F1 (Xu et al. 2018, the KPI/AIOps protocol): when any point
 * of a labelled segment alerts, the whole segment counts as detected; alerts
 * outside segments are false positives point by point.
 *
 * @example
 * pointAdjustedF1([0, 1, 1, 1, 0], [0, 0, 1, 0, 0]).recall // 1
 */
export function pointAdjustedF1 (labels: Flags, alerts: Flags): DetectionScore {
  let tp = 0
  let fn = 0
  for (const [s, e] of runs(labels)) {
    let hit = false
    for (let i = s; i < e && !hit; i++) hit = truthy(alerts[i])
    if (hit) tp += e - s
    else fn += e - s
  }
  let fp = 0
  const len = Math.min(labels.length, alerts.length)
  for (let i = 0; i < len; i++) if (truthy(alerts[i]) && !truthy(labels[i])) fp++
  return score(tp, fp, fn)
}

/**
 * Event-level scores: an incident (a run of labelled points) is found when any
 * of its points alerts; an alert run is correct when it overlaps an incident
 * or starts within `tolerance` steps after one (the tail of a recovery).
 * tp/fn count incidents, fp counts alert runs.
 *
 * @example
 * eventPrecisionRecallF1([0, 1, 1, 0, 0, 0], [0, 0, 1, 0, 1, 0]) // precision 0.5, recall 1
 */
export function eventPrecisionRecallF1 (labels: Flags, alerts: Flags, tolerance = 0): DetectionScore {
  const events = runs(labels)
  const alertRuns = runs(alerts)
  let found = 0
  for (const [s, e] of events) {
    let hit = false
    for (let i = s; i < e && !hit; i++) hit = truthy(alerts[i])
    if (hit) found++
  }
  let wrong = 0
  for (const [s, e] of alertRuns) {
    const ok = events.some(([ls, le]) => s < le + tolerance && e > ls)
    if (!ok) wrong++
  }
  const precision = alertRuns.length === 0 ? (events.length === 0 ? 1 : 0) : (alertRuns.length - wrong) / alertRuns.length
  const recall = events.length === 0 ? (alertRuns.length === 0 ? 1 : 0) : found / events.length
  const f1 = precision + recall === 0 ? 0 : 2 * precision * recall / (precision + recall)
  return { precision, recall, f1, tp: found, fp: wrong, fn: events.length - found }
}
