import t from 'tap'
import { Analytics } from '../../control-plane/analytics.ts'
import { backtest } from '../../control-plane/backtest.ts'
import { parseRule } from '../../control-plane/rules.ts'
import { createDetector, createForecaster } from '../../control-plane/forecast/index.ts'
import { generateSeries } from '../../control-plane/forecast/synthetic.ts'

t.test('a backtest with forecast and anomaly conditions runs its models in slices, with the results of running them at once', async (t) => {
  const s = generateSeries({ name: 'backtest', stepMinutes: 5, weeks: 2, seed: 4, peak: 2000, shape: 'consumer', noise: 0.04, drift: 0.05, trendPerWeek: 0, holidays: 0, incidents: 0 })
  const n = 11 * 288
  let now = 0
  const analytics = new Analytics({ now: () => now })
  for (let i = 0; i < n; i++) analytics.record('n1', [{ route: 'api', requests: s.values[i]!, errors: 0, bounds: [], buckets: [] }], s.times[i]! + 1)
  now = (s.times[n - 1]! + 300) * 1000
  const rule = parseRule({ name: 'ahead', route: 'api', when: ['forecast rps in 15m > 0', 'anomaly >= 0'], then: [{ type: 'webhook', url: 'http://127.0.0.1:9/' }], cooldown: '1d' })

  let turns = 0
  let running = true
  const spin = (): void => { turns++; if (running) setImmediate(spin) }
  setImmediate(spin)
  let r: Awaited<ReturnType<typeof backtest>>
  try {
    r = await backtest(rule, analytics, { fromSeconds: 0, toSeconds: now / 1000, document: {}, sliceMs: 0 })
  } finally {
    running = false
  }
  t.ok(turns > 100, `${turns} turns of the event loop during the backtest`)
  t.equal(r.evaluations, n)

  // The models fed at once, up to each firing.
  const series = analytics.series('api')
  const forecaster = createForecaster({ stepSeconds: 300 })
  const detector = createDetector({ stepSeconds: 300 })
  const expected: Array<{ t: number, values: Record<string, number> }> = []
  let lastFired = -Infinity
  for (const p of series) {
    forecaster.observe(p.t, p.requests)
    const score = detector.observe(p.t, p.requests)
    const rps = (forecaster.forecast(3).at(-1) ?? 0) / 300
    if (rps > 0 && p.t + 300 - lastFired >= 86_400) {
      lastFired = p.t + 300
      expected.push({ t: p.t + 300, values: { 'forecast rps in 15m > 0': rps, 'anomaly >= 0': score } })
    }
  }
  t.ok(expected.length >= 10, `${expected.length} firings, one a day`)
  t.same(r.firings.map((f) => ({ t: f.t, values: f.values })), expected)
})
