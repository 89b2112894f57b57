import t from 'tap'
import type { BalancedEndpoint } from '../balancer.ts'
import { createBalancer } from './index.ts'
import { PeakEwma } from './peak-ewma.ts'
import type { PeakEwmaSettings } from './peak-ewma.ts'

const defaults: PeakEwmaSettings = { decay: 10_000, errorPenalty: 1_000, useOrca: true }
const LN100 = Math.log(100)

const endpoints = (...weights: number[]): BalancedEndpoint[] =>
  weights.map((weight, i) => ({ id: `http://10.0.0.${i + 1}:80`, weight, inflight: 0, healthy: true }))

/** Mulberry32: seeded, so every run draws the same numbers and the shares below are exact. */
function seeded (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

interface Attempt { i: number, start: number, end: number, failed: boolean, orca: string | undefined }

interface Simulation {
  eps: BalancedEndpoint[]
  balancer: PeakEwma
  clock: { now: number }
  random: () => number
  /** Attempts still in flight; they carry over from one run to the next. */
  pending: Attempt[]
}

/** How the simulated upstreams answer, per endpoint index. */
interface Behaviour {
  latency: (i: number) => number
  failed?: (i: number) => boolean
  orca?: (i: number) => string | undefined
}

function simulation (weights: number[], settings = defaults, seed = 1): Simulation {
  const eps = endpoints(...weights)
  const clock = { now: 0 }
  const random = seeded(seed)
  const balancer = new PeakEwma(eps, settings, { now: () => clock.now, random })
  return { eps, balancer, clock, random, pending: [] }
}

/**
 * Runs `ms` simulated milliseconds with `perMs` requests arriving each
 * millisecond, keeping `inflight` as the cluster would, and returns each
 * endpoint's share of the picks.
 */
function run (sim: Simulation, ms: number, perMs: number, behaviour: Behaviour): number[] {
  const { eps, balancer, clock, pending } = sim
  const counts = eps.map(() => 0)
  const end = clock.now + ms
  for (; clock.now < end; clock.now++) {
    for (let k = pending.length - 1; k >= 0; k--) {
      const attempt = pending[k]!
      if (attempt.end > clock.now) continue
      pending[k] = pending[pending.length - 1]!
      pending.pop()
      const endpoint = eps[attempt.i]!
      endpoint.inflight--
      balancer.observe(endpoint, { latencyMs: attempt.end - attempt.start, failed: attempt.failed, orca: attempt.orca, now: attempt.end })
    }
    for (let r = 0; r < perMs; r++) {
      const endpoint = balancer.pick(undefined)
      if (endpoint === undefined) throw new Error('no endpoint picked')
      const i = eps.indexOf(endpoint)
      counts[i]!++
      endpoint.inflight++
      pending.push({ i, start: clock.now, end: clock.now + behaviour.latency(i), failed: behaviour.failed?.(i) ?? false, orca: behaviour.orca?.(i) })
    }
  }
  const total = counts.reduce((a, b) => a + b, 0)
  return counts.map((c) => c / total)
}

/** ~1 ms with jitter, as a healthy upstream answers. */
const fastLatency = (sim: Simulation) => () => 0.5 + sim.random()
const pct = (share: number) => `${(share * 100).toFixed(1)}%`

t.test('createBalancer builds it for peak_ewma', async (t) => {
  const eps = endpoints(1, 2, 3, 1)
  const balancer = createBalancer({ policy: 'peak_ewma', ...defaults }, eps)
  t.type(balancer, PeakEwma)
  eps[1]!.healthy = false
  eps[2]!.healthy = false
  for (let i = 0; i < 2000; i++) {
    const e = balancer.pick(undefined)
    if (e !== eps[0] && e !== eps[3]) t.fail(`picked ${e?.id}`)
  }
  for (const e of eps) e.healthy = false
  t.equal(balancer.pick(undefined), undefined)
})

t.test('a slowed endpoint loses its traffic at once and wins it back after recovering', async (t) => {
  const sim = simulation([1, 1, 1])
  const slow = (i: number) => (i === 0 ? 50 + 5 * sim.random() : 0.5 + sim.random())
  // 2000 requests/s: within the first simulated second the 50 ms endpoint is already shunned.
  const first = run(sim, 1000, 2, { latency: slow })
  t.ok(first[0]! < 0.02, `first second: ${pct(first[0]!)}`)
  const slowed = run(sim, 5000, 2, { latency: slow })
  t.ok(slowed[0]! < 0.1, `slow: ${pct(slowed[0]!)}`)
  for (const i of [1, 2]) t.ok(slowed[i]! > 0.4, `fast ${i}: ${pct(slowed[i]!)}`)

  // It recovers: probes find out, and within the 10 s decay it is back.
  run(sim, 10_000, 2, { latency: fastLatency(sim) })
  const recovered = run(sim, 5000, 2, { latency: fastLatency(sim) })
  t.ok(recovered[0]! >= 0.25, `recovered: ${pct(recovered[0]!)}`)
})

t.test('an endpoint without samples starts at the median: a fair share, no flood', async (t) => {
  for (const seed of [1, 2, 3]) {
    const sim = simulation([1, 1, 1, 1], defaults, seed)
    const newcomer = sim.eps[3]!
    newcomer.healthy = false
    run(sim, 3000, 2, { latency: fastLatency(sim) })
    t.match(sim.balancer.describe(newcomer), { errorRate: 0, utilization: 0 })
    newcomer.healthy = true
    const firstTenth = run(sim, 100, 2, { latency: fastLatency(sim) })
    t.ok(firstTenth[3]! > 0.1 && firstTenth[3]! < 0.6, `first 100 ms, seed ${seed}: ${pct(firstTenth[3]!)}`)
    const firstSecond = run(sim, 1000, 2, { latency: fastLatency(sim) })
    t.ok(firstSecond[3]! > 0.15 && firstSecond[3]! < 0.4, `first second, seed ${seed}: ${pct(firstSecond[3]!)}`)
  }
})

t.test('failures shift traffic away, even when they are fast', async (t) => {
  const sim = simulation([1, 1, 1])
  run(sim, 1000, 2, { latency: fastLatency(sim) })
  const halfFailing = run(sim, 5000, 2, { latency: fastLatency(sim), failed: (i) => i === 0 && sim.random() < 0.5 })
  t.ok(halfFailing[0]! < 0.05, `failing half the time: ${pct(halfFailing[0]!)}`)
  const errorRate = sim.balancer.describe(sim.eps[0]!)['errorRate'] as number
  t.ok(errorRate > 0, `errorRate ${errorRate}`)

  // Refused connections answer in 0.1 ms: faster than anyone, and no better for it.
  const refusing = run(sim, 5000, 2, { latency: (i) => (i === 0 ? 0.1 : 0.5 + sim.random()), failed: (i) => i === 0 })
  t.ok(refusing[0]! < 0.02, `refusing: ${pct(refusing[0]!)}`)
})

t.test('an endpoint reporting high ORCA utilization sheds traffic before its latency shows it', async (t) => {
  const orca = (i: number) => (i === 0 ? 'TEXT cpu_utilization=0.95' : 'JSON {"cpu_utilization":0.1}')
  const sim = simulation([1, 1])
  const latency = () => 4.5 + sim.random()
  run(sim, 1000, 2, { latency, orca })
  const hot = run(sim, 5000, 2, { latency, orca })
  t.ok(hot[0]! < 0.1, `hot: ${pct(hot[0]!)}`)
  t.ok((sim.balancer.describe(sim.eps[0]!)['utilization'] as number) > 0.5)

  // The load report is stale evidence once it stops: without it the two are equal again.
  const quiet = run(sim, 15_000, 2, { latency })
  t.ok(quiet[0]! > 0.3, `reports stopped: ${pct(quiet[0]!)}`)

  const ignoring = simulation([1, 1], { ...defaults, useOrca: false })
  const ignored = run(ignoring, 5000, 2, { latency: () => 4.5 + ignoring.random(), orca })
  t.ok(ignored[0]! > 0.45 && ignored[0]! < 0.55, `useOrca: false: ${pct(ignored[0]!)}`)
})

t.test('weights 1:3 at equal latency share traffic about 1:3 under load', async (t) => {
  const sim = simulation([1, 3])
  const latency = () => 49.5 + sim.random() // ~50 requests in flight at 1000/s
  run(sim, 1000, 1, { latency })
  const shares = run(sim, 5000, 1, { latency })
  t.ok(shares[0]! > 0.2 && shares[0]! < 0.3, `weight 1: ${pct(shares[0]!)}`)
})

t.test('weight hints override configured weights until cleared', async (t) => {
  const sim = simulation([1, 3])
  const latency = () => 49.5 + sim.random()
  sim.balancer.setWeightHint(sim.eps[0]!.id, 3)
  sim.balancer.setWeightHint(sim.eps[1]!.id, 1)
  run(sim, 1000, 1, { latency })
  const hinted = run(sim, 5000, 1, { latency })
  t.ok(hinted[0]! > 0.7 && hinted[0]! < 0.8, `hinted to 3:1: ${pct(hinted[0]!)}`)
  t.match(sim.balancer.describe(sim.eps[0]!), { weight: 1, weightHint: 3 })

  // Nonsense and unknown ids change nothing.
  for (const bad of [0, -1, Number.NaN, Infinity]) sim.balancer.setWeightHint(sim.eps[0]!.id, bad)
  sim.balancer.setWeightHint('http://10.9.9.9:80', undefined)
  t.match(sim.balancer.describe(sim.eps[0]!), { weightHint: 3 })

  sim.balancer.setWeightHint(sim.eps[0]!.id, undefined)
  sim.balancer.setWeightHint(sim.eps[1]!.id, undefined)
  t.match(sim.balancer.describe(sim.eps[0]!), { weight: 1, weightHint: null })
  run(sim, 1000, 1, { latency })
  const cleared = run(sim, 5000, 1, { latency })
  t.ok(cleared[0]! > 0.2 && cleared[0]! < 0.3, `cleared, back to 1:3: ${pct(cleared[0]!)}`)
})

t.test('unhealthy endpoints are never picked, however cheap', async (t) => {
  const eps = endpoints(1, 1, 1, 1, 1)
  const balancer = new PeakEwma(eps, defaults, { random: seeded(7) })
  for (const [i, e] of eps.entries()) balancer.observe(e, { latencyMs: i === 0 ? 0.1 : 100, failed: false, orca: undefined, now: 0 })
  eps[0]!.healthy = false
  eps[3]!.healthy = false
  const seen = new Set<BalancedEndpoint | undefined>()
  for (let i = 0; i < 5000; i++) seen.add(balancer.pick(undefined))
  t.same([...seen].sort((a, b) => eps.indexOf(a!) - eps.indexOf(b!)), [eps[1], eps[2], eps[4]])

  eps[1]!.healthy = false
  eps[2]!.healthy = false
  for (let i = 0; i < 100; i++) t.equal(balancer.pick(undefined), eps[4])
  eps[4]!.healthy = false
  t.equal(balancer.pick(undefined), undefined)

  const [single] = endpoints(1)
  const one = new PeakEwma([single!], defaults)
  t.equal(one.pick(undefined), single)
  single!.healthy = false
  t.equal(one.pick(undefined), undefined)
  t.equal(new PeakEwma([], defaults).pick(undefined), undefined)
})

t.test('latency is peak-sensitive and decays with time', async (t) => {
  const clock = { now: 0 }
  const eps = endpoints(1, 1)
  const balancer = new PeakEwma(eps, defaults, { now: () => clock.now })
  const latencyOf = (e: BalancedEndpoint) => balancer.describe(e)['latencyEwmaMs'] as number
  const observe = (e: BalancedEndpoint, latencyMs: number) => balancer.observe(e, { latencyMs, failed: false, orca: undefined, now: clock.now })

  observe(eps[0]!, 10)
  t.equal(latencyOf(eps[0]!), 10, 'the first sample is the estimate')
  t.equal(latencyOf(eps[1]!), 10, 'an endpoint without samples reads as the median')
  clock.now = 1
  observe(eps[0]!, 100)
  t.equal(latencyOf(eps[0]!), 100, 'a slower sample replaces the estimate at once')
  clock.now = 2
  observe(eps[0]!, 10)
  t.ok(latencyOf(eps[0]!) > 99.9, 'a faster one 1 ms later barely moves it')

  // 10 s (one decay) of 10 ms answers leave under 1% of the spike.
  for (let i = 0; i < 1000; i++) {
    clock.now += 10
    observe(eps[0]!, 10)
  }
  const settled = latencyOf(eps[0]!)
  t.ok(settled > 10 && settled < 10 + 90 * 0.011, `after one decay: ${settled}`)

  // Unobserved for a decay period, an estimate drifts to the cluster's lowest.
  observe(eps[1]!, 500)
  t.equal(latencyOf(eps[1]!), 500)
  clock.now += 200 // past the reference refresh
  const lowest = latencyOf(eps[0]!)
  clock.now += 10_000
  const drifted = latencyOf(eps[1]!)
  t.ok(Math.abs(drifted - (lowest + (500 - lowest) * Math.exp(-LN100 * 10_200 / 10_000))) < 1e-6, `drifted to ${drifted}`)
})

t.test('describe shows the score and every input to it', async (t) => {
  const clock = { now: 0 }
  const eps = endpoints(1, 2)
  const balancer = new PeakEwma(eps, defaults, { now: () => clock.now })
  balancer.observe(eps[0]!, { latencyMs: 20, failed: false, orca: 'TEXT cpu_utilization=0.9, application_utilization=0.5', now: 0 })
  t.same(balancer.describe(eps[0]!), { score: 40, latencyEwmaMs: 20, inflight: 0, errorRate: 0, utilization: 0.5, weight: 1, weightHint: null })

  eps[0]!.inflight = 2
  balancer.setWeightHint(eps[0]!.id, 4)
  t.match(balancer.describe(eps[0]!), { score: 20 * 3 / (4 * 0.5), inflight: 2, weightHint: 4 })
  t.same(balancer.describe(eps[1]!), { score: 10, latencyEwmaMs: 20, inflight: 0, errorRate: 0, utilization: 0, weight: 2, weightHint: null })

  // A 10 ms failure 1 s later: blended with weight 1 − e^(−1s/τ), charged the 1 s penalty.
  clock.now = 1000
  balancer.observe(eps[0]!, { latencyMs: 10, failed: true, orca: 'garbage', now: 1000 })
  const keep = Math.exp(-LN100 * 1000 / 10_000)
  const d = balancer.describe(eps[0]!)
  t.ok(Math.abs((d['latencyEwmaMs'] as number) - (20 * keep + 1010 * (1 - keep))) < 1e-9, `latency ${d['latencyEwmaMs']}`)
  t.ok(Math.abs((d['errorRate'] as number) - (1 - keep)) < 1e-12, `errorRate ${d['errorRate']}`)
  t.ok(Math.abs((d['utilization'] as number) - 0.5 * keep) < 1e-12, `an unreadable report leaves utilization decaying: ${d['utilization']}`)
  const expected = (d['latencyEwmaMs'] as number) * 3 / (4 * keep * (1 - 0.5 * keep))
  t.ok(Math.abs((d['score'] as number) - expected) < 1e-9, `score ${d['score']}`)

  // After a decay period without samples, errors and load are 1% of what they were.
  clock.now = 11_000
  const later = balancer.describe(eps[0]!)
  t.ok(Math.abs((later['errorRate'] as number) - (1 - keep) / 100) < 1e-12)
  t.ok(Math.abs((later['utilization'] as number) - 0.5 * keep / 100) < 1e-12)

  t.same(balancer.describe(endpoints(1)[0]!), {}, 'a foreign endpoint has nothing to show')
  balancer.observe(endpoints(1)[0]!, { latencyMs: 1, failed: false, orca: undefined, now: 0 })
})

t.test('ORCA utilization rises at once and falls smoothly', async (t) => {
  const clock = { now: 0 }
  const [e] = endpoints(1)
  const balancer = new PeakEwma([e!], defaults, { now: () => clock.now })
  const report = (u: number) => balancer.observe(e!, { latencyMs: 1, failed: false, orca: `TEXT cpu_utilization=${u}`, now: clock.now })
  const utilization = () => balancer.describe(e!)['utilization'] as number
  report(0.2)
  clock.now = 1
  report(0.9)
  t.equal(utilization(), 0.9)
  clock.now = 1001
  report(0.1)
  const keep = Math.exp(-LN100 * 1000 / 10_000)
  t.ok(Math.abs(utilization() - (0.9 * keep + 0.1 * (1 - keep))) < 1e-12, `${utilization()}`)
})

t.test('decay 0 keeps no memory: each sample is the estimate', async (t) => {
  const clock = { now: 0 }
  const [e] = endpoints(1)
  const balancer = new PeakEwma([e!], { ...defaults, decay: 0 }, { now: () => clock.now })
  balancer.observe(e!, { latencyMs: 50, failed: false, orca: undefined, now: 0 })
  clock.now = 1
  balancer.observe(e!, { latencyMs: 2, failed: false, orca: undefined, now: 1 })
  t.match(balancer.describe(e!), { latencyEwmaMs: 2, score: 2 })
})
