/**
 * Seeded synthetic request-count series that imitate production traffic, for
 * the evaluation script and the tests: a daily shape that differs between
 * weekdays and weekends, slow trend, hours-long and day-long wander of the
 * level (what makes "same time last week" wrong), multiplicative burst noise,
 * Poisson counting noise (dominant at low volume), holidays (a weekday that
 * looks like a Sunday, not labelled), gaps, and labelled incidents.
 */

export type Shape = 'office' | 'consumer' | 'global'

export type IncidentKind = 'outage' | 'degradation' | 'spike' | 'shift'

export interface SeriesSpec {
  name: string
  stepMinutes: number
  weeks: number
  seed: number
  /** Mean count per step at a weekday's peak. */
  peak: number
  shape: Shape
  /** sd of the per-step multiplicative (log) burst noise. */
  noise: number
  /** sd of the slow log-level wander (hours to days). */
  drift: number
  /** Relative growth per week. */
  trendPerWeek: number
  holidays: number
  incidents: number
  /** Random missing points and a few multi-hour holes. */
  gaps?: boolean
  /** Hours after Monday 00:00 UTC at which the series starts. */
  startOffsetHours?: number
}

export interface Incident {
  kind: IncidentKind
  /** First affected step. */
  start: number
  /** Step after the last affected one (a shift affects everything after start; `end` closes its label). */
  end: number
  factor: number
}

export interface SyntheticSeries {
  spec: SeriesSpec
  stepSeconds: number
  times: number[]
  /** Counts; NaN where the point is missing. */
  values: number[]
  /** Incident points (the first hour of a level shift). */
  labels: boolean[]
  holiday: boolean[]
  incidents: Incident[]
}

/** mulberry32: small, fast and good enough for noise. */
export function createRandom (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export function createNormal (random: () => number): () => number {
  return () => {
    const u = 1 - random()
    const v = random()
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
  }
}

export function poisson (mean: number, random: () => number, normal: () => number): number {
  if (mean <= 0) return 0
  if (mean > 40) return Math.max(0, Math.round(mean + Math.sqrt(mean) * normal()))
  // Knuth's multiplication method; fine for small means.
  const limit = Math.exp(-mean)
  let k = 0
  let p = random()
  while (p > limit) {
    k++
    p *= random()
  }
  return k
}

const bump = (h: number, centre: number, width: number): number => {
  // Circular distance so an evening peak's tail wraps past midnight.
  let d = Math.abs(h - centre) % 24
  if (d > 12) d = 24 - d
  return Math.exp(-0.5 * (d / width) ** 2)
}
const rise = (h: number, at: number, width: number): number => 1 / (1 + Math.exp(-(h - at) / width))

/** Relative volume at `hour` (0–24) on `day` (0 = Monday); weekday peaks are about 1. */
export function dailyShape (shape: Shape, hour: number, day: number): number {
  const weekend = day >= 5
  switch (shape) {
    case 'office': {
      if (weekend) return (0.07 + 0.16 * bump(hour, 14, 3.5)) * (day === 6 ? 0.85 : 1)
      const open = rise(hour, 8, 0.6) * (1 - rise(hour, 18, 1.1))
      const lunch = 1 - 0.15 * bump(hour, 12.5, 0.7)
      const dayFactor = day === 0 ? 1.06 : day === 4 ? 0.9 - 0.1 * rise(hour, 15, 1) : 1
      return (0.07 + 0.93 * open * lunch) * dayFactor
    }
    case 'consumer': {
      if (weekend) {
        const v = 0.22 + 0.45 * bump(hour, 14, 3.5) + 0.55 * bump(hour, 21, 2.2)
        return v * (day === 5 ? 1.08 : 0.98)
      }
      const v = 0.2 + 0.12 * bump(hour, 8.5, 1.2) + 0.35 * bump(hour, 13, 2.5) + 0.55 * bump(hour, 21, 2.3)
      return v * (day === 4 ? 1 - 0.12 * bump(hour, 21, 2) : 1)
    }
    case 'global': {
      const v = 0.72 + 0.28 * Math.cos(2 * Math.PI * (hour - 15) / 24) + 0.06 * Math.cos(4 * Math.PI * (hour - 10) / 24)
      return v * (weekend ? 0.82 : 1)
    }
  }
}

const MONDAY = Date.UTC(2024, 0, 1) / 1000

/**
 * Generates one series from its spec; the same spec always gives the same series.
 *
 * @example
 * const s = generateSeries({ name: 'web', stepMinutes: 5, weeks: 4, seed: 1, peak: 500, shape: 'consumer',
 *   noise: 0.04, drift: 0.05, trendPerWeek: 0.02, holidays: 1, incidents: 5 })
 * s.values.length // 4 · 7 · 288
 */
export function generateSeries (spec: SeriesSpec): SyntheticSeries {
  const random = createRandom(spec.seed)
  const normal = createNormal(random)
  const stepSeconds = spec.stepMinutes * 60
  const perDay = Math.round(86400 / stepSeconds)
  const n = spec.weeks * 7 * perDay
  const start = MONDAY + Math.round((spec.startOffsetHours ?? 0) * 3600 / stepSeconds) * stepSeconds

  const dayOf = (i: number): number => Math.floor((start + i * stepSeconds - MONDAY) / 86400)
  const days = dayOf(n - 1) + 1

  // Holidays: weekdays after the first week, not back to back.
  const holidayDays = new Set<number>()
  for (let tries = 0; holidayDays.size < spec.holidays && tries < 100; tries++) {
    const d = 8 + Math.floor(random() * (days - 9))
    if (d % 7 < 5 && !holidayDays.has(d - 1) && !holidayDays.has(d + 1)) holidayDays.add(d)
  }

  // Incidents: after three days, apart from each other and from holidays.
  const incidents: Incident[] = []
  const kinds: IncidentKind[] = ['outage', 'degradation', 'spike', 'shift', 'outage', 'spike', 'degradation']
  const stepsOf = (minutes: number): number => Math.max(1, Math.round(minutes * 60 / stepSeconds))
  for (let tries = 0; incidents.length < spec.incidents && tries < 500; tries++) {
    const kind = kinds[(incidents.length + spec.seed) % kinds.length]!
    let at = 3 * perDay + Math.floor(random() * (n - 3 * perDay - perDay / 2))
    // Two in three incidents happen in the working day, when deploys and load happen.
    if (random() < 2 / 3) at = at - (at % perDay) + Math.floor(perDay * (8 + random() * 12) / 24)
    let length: number
    let factor: number
    switch (kind) {
      case 'outage':
        length = stepsOf(15 + random() * 165)
        factor = random() * 0.08
        break
      case 'degradation':
        length = stepsOf(15 + random() * 105)
        factor = 0.3 + random() * 0.3
        break
      case 'spike':
        length = random() < 0.4 ? 1 : stepsOf(10 + random() * 50)
        factor = 1.8 + random() * 2.2
        break
      case 'shift':
        length = stepsOf(60)
        factor = random() < 0.5 ? 0.6 + random() * 0.15 : 1.35 + random() * 0.35
        break
    }
    const end = Math.min(n, at + length)
    const clash = incidents.some((o) => at < o.end + perDay / 4 && end + perDay / 4 > o.start) ||
      holidayDays.has(dayOf(at)) || holidayDays.has(dayOf(end - 1)) ||
      (kind === 'shift' && incidents.some((o) => o.kind === 'shift'))
    if (!clash) incidents.push({ kind, start: at, end, factor })
  }
  incidents.sort((a, b) => a.start - b.start)

  const times: number[] = []
  const values: number[] = []
  const labels: boolean[] = []
  const holiday: boolean[] = []
  const stepHours = stepSeconds / 3600
  // Two wanders: within the day (τ = 3 h) and across days (τ = 2 days).
  const rhoFast = Math.exp(-stepHours / 3)
  const rhoSlow = Math.exp(-stepHours / 48)
  let fast = 0
  let slow = 0
  let shift = 1
  for (let i = 0; i < n; i++) {
    const t = start + i * stepSeconds
    const sinceMonday = t - MONDAY
    const day = Math.floor(sinceMonday / 86400)
    const hour = (sinceMonday % 86400) / 3600
    const isHoliday = holidayDays.has(day)
    const shapeDay = isHoliday ? 6 : day % 7
    fast = rhoFast * fast + Math.sqrt(1 - rhoFast ** 2) * spec.drift * 0.7 * normal()
    slow = rhoSlow * slow + Math.sqrt(1 - rhoSlow ** 2) * spec.drift * normal()
    const weeks = i / (7 * perDay)
    let mean = spec.peak * dailyShape(spec.shape, hour, shapeDay) * (isHoliday ? 0.95 : 1) *
      (1 + spec.trendPerWeek * weeks) * Math.exp(fast + slow + spec.noise * normal())
    let label = false
    for (const inc of incidents) {
      if (inc.kind === 'shift') {
        if (i === inc.start) shift = inc.factor
        if (i >= inc.start && i < inc.end) label = true
      } else if (i >= inc.start && i < inc.end) {
        mean *= inc.factor
        label = true
      }
    }
    mean *= shift
    times.push(t)
    values.push(poisson(mean, random, normal))
    labels.push(label)
    holiday.push(isHoliday)
  }

  if (spec.gaps) {
    for (let i = 0; i < n; i++) if (random() < 0.005 && !labels[i]) values[i] = Number.NaN
    for (let g = 0; g < 2; g++) {
      const at = 2 * perDay + Math.floor(random() * (n - 3 * perDay))
      const len = stepsOf(60 + random() * 300)
      for (let i = at; i < Math.min(n, at + len); i++) {
        values[i] = Number.NaN
        labels[i] = false
      }
    }
  }
  return { spec, stepSeconds, times, values, labels, holiday, incidents }
}

/** The evaluation corpus: fixed seeds, 5- to 30-minute steps, 4–10 weeks. */
export const corpus: SeriesSpec[] = [
  { name: 'web-5m', stepMinutes: 5, weeks: 6, seed: 11, peak: 2000, shape: 'consumer', noise: 0.04, drift: 0.05, trendPerWeek: 0.02, holidays: 1, incidents: 6, startOffsetHours: 13 },
  { name: 'api-5m-low', stepMinutes: 5, weeks: 4, seed: 12, peak: 40, shape: 'office', noise: 0.05, drift: 0.05, trendPerWeek: 0, holidays: 1, incidents: 5, startOffsetHours: 2 },
  { name: 'checkout-10m', stepMinutes: 10, weeks: 8, seed: 13, peak: 800, shape: 'consumer', noise: 0.05, drift: 0.06, trendPerWeek: 0.04, holidays: 2, incidents: 7, gaps: true, startOffsetHours: 30 },
  { name: 'b2b-15m', stepMinutes: 15, weeks: 10, seed: 14, peak: 5000, shape: 'office', noise: 0.03, drift: 0.04, trendPerWeek: 0.01, holidays: 2, incidents: 8, startOffsetHours: 0 },
  { name: 'global-30m', stepMinutes: 30, weeks: 10, seed: 15, peak: 100_000, shape: 'global', noise: 0.02, drift: 0.04, trendPerWeek: -0.01, holidays: 1, incidents: 6, startOffsetHours: 77 },
  { name: 'mobile-15m', stepMinutes: 15, weeks: 6, seed: 16, peak: 150, shape: 'consumer', noise: 0.06, drift: 0.08, trendPerWeek: 0.03, holidays: 1, incidents: 6, gaps: true, startOffsetHours: 101 },
  { name: 'batchy-10m', stepMinutes: 10, weeks: 5, seed: 17, peak: 300, shape: 'office', noise: 0.1, drift: 0.06, trendPerWeek: 0, holidays: 1, incidents: 5, startOffsetHours: 50 },
  { name: 'edge-30m-low', stepMinutes: 30, weeks: 8, seed: 18, peak: 60, shape: 'consumer', noise: 0.05, drift: 0.05, trendPerWeek: 0.02, holidays: 1, incidents: 5, startOffsetHours: 9 }
]
