import t from 'tap'
import { createDetector } from './index.ts'
import { createNormal, createRandom, dailyShape, generateSeries } from './synthetic.ts'
import type { SeriesSpec } from './synthetic.ts'

const MONDAY = Date.UTC(2024, 0, 1) / 1000
const clean: SeriesSpec = { name: 'clean', stepMinutes: 15, weeks: 5, seed: 21, peak: 5000, shape: 'consumer', noise: 0.04, drift: 0.05, trendPerWeek: 0.02, holidays: 0, incidents: 0 }

const score = (stepSeconds: number, times: number[], values: number[]): number[] => {
  const d = createDetector({ stepSeconds })
  return values.map((v, i) => d.observe(times[i]!, v))
}

const fraction = (flags: boolean[]): number => flags.filter(Boolean).length / Math.max(1, flags.length)

/** A continuous (non-count) series: daily × weekly shape, slow wander, multiplicative noise. */
function continuous (seed: number, weeks: number, stepSeconds: number): { times: number[], values: number[] } {
  const random = createRandom(seed)
  const normal = createNormal(random)
  const n = Math.round(weeks * 7 * 86400 / stepSeconds)
  const times: number[] = []
  const values: number[] = []
  let wander = 0
  for (let i = 0; i < n; i++) {
    const t = MONDAY + i * stepSeconds
    const day = Math.floor(i * stepSeconds / 86400)
    const hour = (i * stepSeconds % 86400) / 3600
    wander = 0.95 * wander + 0.01 * normal()
    times.push(t)
    values.push(1.5 * dailyShape('global', hour, day % 7) * Math.exp(wander + 0.03 * normal()))
  }
  return { times, values }
}

t.test('scores are 0 during the two-day warm-up and always within [0, 1]', async (t) => {
  const s = generateSeries({ ...clean, weeks: 2 })
  const scores = score(s.stepSeconds, s.times, s.values)
  const perDay = 86400 / s.stepSeconds
  t.ok(scores.slice(0, 2 * perDay - 1).every((x) => x === 0))
  t.ok(scores.every((x) => x >= 0 && x <= 1 && Number.isFinite(x)))
})

t.test('quiet on clean noisy seasonal traffic, high and low volume', async (t) => {
  for (const spec of [clean, { ...clean, name: 'low', stepMinutes: 5, peak: 15, shape: 'office' as const, weeks: 4 }]) {
    const s = generateSeries(spec)
    const alerts = score(s.stepSeconds, s.times, s.values).map((x) => x >= 0.5)
    const rate = fraction(alerts)
    t.ok(rate < 0.01, `${spec.name}: ${(100 * rate).toFixed(2)}% of points alert`)
  }
})

t.test('fires on an injected drop and spike, and neither echoes', async (t) => {
  const s = generateSeries(clean)
  const perDay = 96
  const values = s.values.slice()
  // Week 3, Wednesday 14:00: traffic drops to 2% for an hour; Thursday 20:00: 4× for 30 minutes.
  const drop = 2 * 7 * perDay + 2 * perDay + 14 * 4
  const spike = 2 * 7 * perDay + 3 * perDay + 20 * 4
  for (let i = drop; i < drop + 4; i++) values[i] = Math.round(values[i]! * 0.02)
  for (let i = spike; i < spike + 2; i++) values[i] = values[i]! * 4
  const alerts = score(s.stepSeconds, s.times, values).map((x) => x >= 0.5)
  t.same(alerts.slice(drop, drop + 4), [true, true, true, true], 'every point of the drop')
  t.same(alerts.slice(spike, spike + 2), [true, true], 'every point of the spike')
  t.notOk(alerts.slice(drop + 4, drop + perDay).some(Boolean), 'no alert on the recovery')
  const weekLater = alerts.slice(drop + 7 * perDay - 8, drop + 7 * perDay + 12)
  t.notOk(weekLater.some(Boolean), 'no echo a week later')
})

t.test('the same shape scores the same at any scale', async (t) => {
  const step = 600
  const { times, values } = continuous(5, 3, step)
  // An incident so there is something to score.
  const at = Math.round(16 * 86400 / step) + 60
  for (let i = at; i < at + 6; i++) values[i] = values[i]! * 0.1
  const small = score(step, times, values)
  const large = score(step, times, values.map((v) => v * 100_000))
  let worst = 0
  small.forEach((x, i) => { worst = Math.max(worst, Math.abs(x - large[i]!)) })
  t.ok(worst < 1e-6, `largest score difference ${worst}`)
  t.ok(small.slice(at, at + 6).every((x) => x >= 0.5), 'and the incident alerts')
})

t.test('a level shift alerts at its start, then the detector adapts', async (t) => {
  const s = generateSeries({ ...clean, seed: 23 })
  const perDay = 96
  const at = 3 * 7 * perDay + perDay + 11 * 4
  const values = s.values.map((v, i) => (i >= at ? Math.round(v * 0.6) : v))
  const alerts = score(s.stepSeconds, s.times, values).map((x) => x >= 0.5)
  t.ok(alerts.slice(at, at + 4).some(Boolean), 'alerts within the hour')
  const after = fraction(alerts.slice(at + perDay / 2))
  t.ok(after < 0.01, `then quiet: ${(100 * after).toFixed(2)}% of later points alert`)
  // The working state takes the new level after an hour of it (was: 3 hours of alerts, while clipped updates caught up).
  const first = alerts.slice(at, at + perDay / 2).map((a, i) => a ? i : -1).filter((i) => i >= 0)
  t.ok(first.length <= 4, `alerts in the first 12 hours, steps after the shift: ${first.join(' ')}`)
})

t.test('a holiday is at most moderately anomalous', async (t) => {
  const s = generateSeries({ ...clean, seed: 24, weeks: 4, holidays: 1, shape: 'office' })
  const scores = score(s.stepSeconds, s.times, s.values)
  const onHoliday = scores.filter((_, i) => s.holiday[i])
  t.ok(onHoliday.length > 0)
  const rate = fraction(onHoliday.map((x) => x >= 0.5))
  t.ok(rate < 0.1, `${(100 * rate).toFixed(1)}% of the holiday alerts`)
  const dayAfter = scores.slice(s.holiday.lastIndexOf(true) + 1, s.holiday.lastIndexOf(true) + 97)
  t.ok(fraction(dayAfter.map((x) => x >= 0.5)) < 0.05, 'and the day after is normal again')
})

t.test('a history that starts with a long gap once trimmed scores numbers', async (t) => {
  const d = createDetector({ stepSeconds: 3600 })
  const normal = createNormal(createRandom(4))
  // Two days, three and a half weeks without data, ten days: trimming to four weeks cuts into the gap.
  const back = 2 * 24 + 588
  const scores: number[] = []
  for (let i = 0; i < back + 10 * 24; i++) {
    if (i >= 2 * 24 && i < back) continue
    scores.push(d.observe(MONDAY + i * 3600, Math.round((1000 + 300 * Math.sin(2 * Math.PI * i / 24)) * Math.exp(0.03 * normal()))))
  }
  t.ok(scores.every((x) => x >= 0 && x <= 1), `every score in [0, 1] (NaN: ${scores.filter(Number.isNaN).length})`)
  t.ok(fraction(scores.slice(-48).map((x) => x >= 0.5)) < 0.05, 'and the last two days are quiet')
})

t.test('missing, repeated and invalid points score 0 and change nothing', async (t) => {
  const s = generateSeries({ ...clean, weeks: 3 })
  const d = createDetector({ stepSeconds: s.stepSeconds })
  const reference = score(s.stepSeconds, s.times, s.values)
  let repeatedScores = 0
  const scores = s.values.map((v, i) => {
    const x = d.observe(s.times[i]!, v)
    repeatedScores += d.observe(s.times[i]!, v * 10)
    return x
  })
  t.equal(repeatedScores, 0, 'a repeated time scores 0')
  t.same(scores, reference, 'and is not learnt from')
  const gappy = createDetector({ stepSeconds: s.stepSeconds })
  const withGaps = s.values.map((v, i) => gappy.observe(s.times[i]!, i % 50 === 7 ? Number.NaN : i % 77 === 3 ? -1 : v))
  t.ok(withGaps.every((x, i) => (i % 50 === 7 || i % 77 === 3 ? x === 0 : x >= 0 && x <= 1)))
  t.ok(fraction(withGaps.map((x) => x >= 0.5)) < 0.01, 'gaps do not cause alerts')
  t.throws(() => createDetector({ stepSeconds: -1 }), RangeError)
})
