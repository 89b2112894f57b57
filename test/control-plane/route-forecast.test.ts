import t from 'tap'
import { Analytics } from '../../control-plane/analytics.ts'
import { RouteForecasts } from '../../control-plane/route-forecast.ts'
import { createDetector, createForecaster } from '../../control-plane/forecast/index.ts'
import { generateSeries } from '../../control-plane/forecast/synthetic.ts'

/** Eleven days of 5-minute traffic: the weekly component is in (from ten days). */
function analyticsWithHistory (): { analytics: Analytics, advance: (requests: number) => void } {
  const s = generateSeries({ name: 'route', stepMinutes: 5, weeks: 2, seed: 3, peak: 2000, shape: 'consumer', noise: 0.04, drift: 0.05, trendPerWeek: 0, holidays: 0, incidents: 0 })
  const n = 11 * 288
  let now = 0
  const analytics = new Analytics({ now: () => now })
  for (let i = 0; i < n; i++) analytics.record('n1', [{ route: 'api', requests: s.values[i]!, errors: 0, bounds: [], buckets: [] }], s.times[i]! + 1)
  now = (s.times[n - 1]! + 300) * 1000
  const advance = (requests: number): void => {
    analytics.record('n1', [{ route: 'api', requests, errors: 0, bounds: [], buckets: [] }], now / 1000 + 1)
    now += 300_000
  }
  return { analytics, advance }
}

/** Turns the event loop takes while `work` runs. */
async function turnsDuring<T> (work: () => Promise<T>): Promise<{ value: T, turns: number }> {
  let turns = 0
  let running = true
  const spin = (): void => { turns++; if (running) setImmediate(spin) }
  setImmediate(spin)
  try {
    return { value: await work(), turns }
  } finally {
    running = false
  }
}

t.test('a route\'s first fit leaves the event loop turns, and forecasts as the models fed at once do', async (t) => {
  const { analytics } = analyticsWithHistory()
  const forecasts = new RouteForecasts(analytics, { sliceMs: 0 })
  const { value: f, turns } = await turnsDuring(() => forecasts.get('api', { horizonSeconds: 3600 }))
  t.ok(turns > 100, `${turns} turns of the event loop during the first fit`)

  const series = analytics.series('api')
  const forecaster = createForecaster({ stepSeconds: 300 })
  const detector = createDetector({ stepSeconds: 300 })
  let score = 0
  for (const p of series) {
    forecaster.observe(p.t, p.requests)
    score = detector.observe(p.t, p.requests)
  }
  t.match(f, { observations: series.length, model: 'smoothing', lastT: series.at(-1)?.t, anomalyScore: score })
  t.same(forecaster.describe().seasonalities, [86_400, 604_800])
  t.same(f?.points.map((p) => p.rate), forecaster.forecast(12).map((v) => v / 300), 'the same forecast')
  t.same(f?.points.map((p) => [p.lo, p.hi]), forecaster.interval(12).map((b) => [b.lo / 300, b.hi / 300]), 'the same intervals')
})

t.test('callers during a fit wait their turn: each sees the models it asked after', async (t) => {
  const { analytics, advance } = analyticsWithHistory()
  const forecasts = new RouteForecasts(analytics, { sliceMs: 0 })
  const first = forecasts.get('api', { horizonSeconds: 3600 })
  // The first fit is under way; a new interval completes.
  await new Promise((resolve) => { setImmediate(resolve) })
  advance(1000)
  const [a, b, c] = await Promise.all([first, forecasts.get('api', { horizonSeconds: 900 }), forecasts.get('api', { horizonSeconds: 7200 })])
  t.equal(b?.lastT, (a?.lastT ?? 0) + 300, 'the second caller sees the new interval')
  t.equal(b?.observations, (a?.observations ?? 0) + 1, 'observed once')
  t.same(c?.points.slice(0, 3), b?.points, 'the third one the same models')
})
