import t from 'tap'
import { mae, mase, naiveScale, smape, mape, precisionRecallF1, pointAdjustedF1, eventPrecisionRecallF1, runs } from './metrics.ts'
import { nelderMead } from './nelder-mead.ts'
import { median, quantile, normalQuantile } from './stats.ts'

t.test('mae skips missing pairs', async (t) => {
  t.equal(mae([1, 2, 3], [1, 2, 5]), 2 / 3)
  t.equal(mae([1, Number.NaN, 3], [2, 100, 3]), 0.5)
  t.ok(Number.isNaN(mae([], [])))
})

t.test('mase divides by the in-sample seasonal-naive MAE', async (t) => {
  t.equal(naiveScale([1, 2, 1, 2, 1, 3], 2), 0.25)
  t.equal(naiveScale([1, 2, 4, 7]), 2)
  t.equal(mase([10, 12], [11, 12], [8, 10, 9, 11], 2), 0.5)
  // Forecasting as well as the naive method did in sample scores 1.
  t.equal(mase([8, 10], [7, 9], [5, 7, 6, 8, 7, 9], 2), 1)
  t.ok(Number.isNaN(mase([1], [1], [3, 3, 3], 1)), 'a zero scale gives NaN, not Infinity')
})

t.test('smape is symmetric and bounded', async (t) => {
  t.equal(smape([100], [100]), 0)
  t.equal(smape([0], [0]), 0, 'both zero is a perfect forecast')
  t.equal(smape([0], [5]), 200)
  t.equal(smape([100], [110]), smape([110], [100]))
  t.equal(Math.round(smape([100, 0], [110, 0]) * 100) / 100, 4.76)
})

t.test('mape skips zero actuals', async (t) => {
  t.equal(mape([100, 200, 0], [110, 180, 5]), 10)
  t.ok(Number.isNaN(mape([0, 0], [1, 2])))
})

t.test('point-level precision, recall and F1', async (t) => {
  t.same(precisionRecallF1([0, 1, 1, 0], [0, 1, 0, 1]), { precision: 0.5, recall: 0.5, f1: 0.5, tp: 1, fp: 1, fn: 1 })
  t.same(precisionRecallF1([false, true], [false, true]), { precision: 1, recall: 1, f1: 1, tp: 1, fp: 0, fn: 0 })
  t.equal(precisionRecallF1([0, 0, 0], [0, 0, 0]).f1, 1, 'nothing to find, nothing raised')
  t.equal(precisionRecallF1([0, 1, 0], [0, 0, 0]).f1, 0)
  t.equal(precisionRecallF1([0, 0], [1, 0]).precision, 0)
})

t.test('point-adjusted and event-level scores', async (t) => {
  t.same(runs([0, 1, 1, 0, 1]), [[1, 3], [4, 5]])
  const labels = [0, 1, 1, 1, 0, 0, 0, 1, 1, 0]
  const alerts = [0, 0, 1, 0, 0, 1, 0, 0, 0, 0]
  const adjusted = pointAdjustedF1(labels, alerts)
  t.equal(adjusted.tp, 3, 'the whole first segment counts as found')
  t.equal(adjusted.fn, 2)
  t.equal(adjusted.fp, 1)
  const events = eventPrecisionRecallF1(labels, alerts)
  t.equal(events.recall, 0.5)
  t.equal(events.precision, 0.5)
  t.equal(eventPrecisionRecallF1(labels, alerts, 3).precision, 1, 'an alert just after an incident is within tolerance')
})

t.test('nelderMead finds the minimum of smooth and kinked functions', async (t) => {
  const q = nelderMead(([a, b]) => (a! - 1) ** 2 + (b! + 2) ** 2, [0, 0], { maxEvals: 400 })
  t.ok(Math.abs(q.x[0]! - 1) < 1e-3 && Math.abs(q.x[1]! + 2) < 1e-3, `quadratic: ${q.x}`)
  const rosen = nelderMead(([a, b]) => 100 * (b! - a! ** 2) ** 2 + (1 - a!) ** 2, [-1.2, 1], { maxEvals: 2000, tolerance: 1e-14 })
  t.ok(Math.abs(rosen.x[0]! - 1) < 1e-2 && Math.abs(rosen.x[1]! - 1) < 2e-2, `rosenbrock: ${rosen.x}`)
  const abs = nelderMead(([a]) => Math.abs(a! - 3), [0], { maxEvals: 200 })
  t.ok(Math.abs(abs.x[0]! - 3) < 1e-3, `absolute value: ${abs.x}`)
  t.ok(nelderMead(() => Number.NaN, [0]).evals > 0, 'a NaN objective does not throw')
})

t.test('robust statistics helpers', async (t) => {
  t.equal(median([3, 1, 2]), 2)
  t.equal(median([4, 1, 3, 2]), 2.5)
  t.equal(median([Number.NaN, 5]), 5)
  t.equal(quantile([0, 10], 0.9), 9)
  t.ok(Math.abs(normalQuantile(0.975) - 1.959964) < 1e-5)
  t.ok(Math.abs(normalQuantile(0.001) + 3.090232) < 1e-5)
})
