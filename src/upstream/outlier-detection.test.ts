import t from 'tap'
import type { OutlierDetectionConfig } from '../config/schema.ts'
import { EndpointHealth, type HealthTarget } from './endpoint-health.ts'
import { OutlierDetector, type Clock } from './outlier-detection.ts'

/** A clock whose time moves only when told to; due timers fire in order. */
class ManualClock implements Clock {
  #now = 1_000_000
  #seq = 0
  readonly timers = new Map<number, { at: number, fn: () => void }>()
  now (): number { return this.#now }
  setTimeout (fn: () => void, ms: number): unknown {
    const id = ++this.#seq
    this.timers.set(id, { at: this.#now + ms, fn })
    return id
  }

  clearTimeout (handle: unknown): void { this.timers.delete(handle as number) }
  advance (ms: number): void {
    const end = this.#now + ms
    for (;;) {
      let next: [number, { at: number, fn: () => void }] | undefined
      for (const e of this.timers) if (e[1].at <= end && (next === undefined || e[1].at < next[1].at)) next = e
      if (next === undefined) break
      this.timers.delete(next[0])
      this.#now = next[1].at
      next[1].fn()
    }
    this.#now = end
  }
}

const config = (o: Partial<OutlierDetectionConfig> = {}): OutlierDetectionConfig => ({
  enabled: true,
  consecutive5xx: 5,
  consecutiveGatewayFailures: 3,
  baseEjectionTime: 10_000,
  maxEjectionTime: 300_000,
  maxEjectionPercent: 50,
  ...o,
})

function setup (n: number, o: Partial<OutlierDetectionConfig> = {}, panicThreshold = 0) {
  const endpoints: HealthTarget[] = Array.from({ length: n }, (_, i) => ({ id: `http://10.0.0.${i + 1}:80`, healthy: true }))
  const clock = new ManualClock()
  const changes: string[] = []
  const health = new EndpointHealth(endpoints, { panicThreshold, onChange: (i, healthy, reason) => changes.push(`${i} ${healthy ? 'up' : 'down'} ${reason}`) })
  const detector = new OutlierDetector(config(o), health, { clock })
  return { endpoints, clock, health, detector, changes }
}

const repeat = (n: number, fn: () => void): void => { for (let i = 0; i < n; i++) fn() }

t.test('ejects after N consecutive 5xx', async (t) => {
  const { endpoints, detector, health, changes } = setup(4)
  repeat(4, () => detector.record(0, '5xx'))
  t.equal(endpoints[0]!.healthy, true)
  t.equal(detector.describe(0).consecutive5xx, 4)
  detector.record(0, '5xx')
  t.equal(endpoints[0]!.healthy, false)
  t.equal(health.describe(0).ejectedUntil, new Date(1_000_000 + 10_000).toISOString())
  t.same(changes, ['0 down consecutive-5xx'])
  t.equal(detector.stats.ejectionsActive, 1)
  t.equal(detector.stats.ejectionsEnforced, 1)
  t.equal(detector.stats.ejectionsDetectedConsecutive5xx, 1)
})

t.test('ejects after N consecutive gateway failures, which also count as 5xx', async (t) => {
  const { endpoints, detector } = setup(4)
  repeat(3, () => detector.record(1, 'gateway-failure'))
  t.equal(endpoints[1]!.healthy, false)
  t.equal(detector.stats.ejectionsDetectedConsecutiveGatewayFailure, 1)

  // 5xx, 5xx, gateway, gateway, 5xx: five 5xx-class failures in a row, as in Envoy.
  for (const o of ['5xx', '5xx', 'gateway-failure', 'gateway-failure', '5xx'] as const) detector.record(2, o)
  t.equal(endpoints[2]!.healthy, false)
  t.equal(detector.stats.ejectionsDetectedConsecutive5xx, 1)
})

t.test('a success resets both counters; a plain 5xx ends a run of gateway failures', async (t) => {
  const { endpoints, detector } = setup(2, { maxEjectionPercent: 100 })
  repeat(4, () => detector.record(0, '5xx'))
  detector.record(0, 'success')
  repeat(4, () => detector.record(0, '5xx'))
  t.equal(endpoints[0]!.healthy, true)
  t.same(detector.describe(0), { consecutive5xx: 4, consecutiveGatewayFailures: 0, ejectionMultiplier: 0, ejected: false })


  // Five 5xx-class failures would eject by consecutive5xx; raise it to see the gateway run alone.
  const g = setup(2, { maxEjectionPercent: 100, consecutive5xx: 10 })
  repeat(2, () => g.detector.record(1, 'gateway-failure'))
  g.detector.record(1, '5xx')
  repeat(2, () => g.detector.record(1, 'gateway-failure'))
  t.equal(g.endpoints[1]!.healthy, true, 'gateway run broken by the 5xx')
  t.same(g.detector.describe(1), { consecutive5xx: 5, consecutiveGatewayFailures: 2, ejectionMultiplier: 0, ejected: false })
  g.detector.record(1, 'success')
  t.same(g.detector.describe(1), { consecutive5xx: 0, consecutiveGatewayFailures: 0, ejectionMultiplier: 0, ejected: false })
})

t.test('readmitted when the ejection time elapses, with fresh counters', async (t) => {
  const { endpoints, detector, clock, changes } = setup(2)
  repeat(3, () => detector.record(0, 'gateway-failure'))
  clock.advance(9_999)
  t.equal(endpoints[0]!.healthy, false)
  clock.advance(1)
  t.equal(endpoints[0]!.healthy, true)
  t.same(changes, ['0 down consecutive-gateway-failure', '0 up ejection-expired'])
  t.equal(detector.stats.ejectionsActive, 0)
  t.same(detector.describe(0), { consecutive5xx: 0, consecutiveGatewayFailures: 0, ejectionMultiplier: 1, ejected: false })
})

t.test('records of an ejected endpoint are ignored', async (t) => {
  const { detector, clock } = setup(2)
  repeat(3, () => detector.record(0, 'gateway-failure'))
  repeat(20, () => detector.record(0, 'gateway-failure'))
  t.equal(detector.stats.ejectionsEnforced, 1)
  t.equal(clock.timers.size, 1)
})

t.test('ejection time grows base × n up to the max, and n decays while healthy', async (t) => {
  const { detector, clock, health } = setup(2, { baseEjectionTime: 10_000, maxEjectionTime: 25_000 })
  const ejectFor = (): number => {
    repeat(3, () => detector.record(0, 'gateway-failure'))
    const until = Date.parse(health.describe(0).ejectedUntil!)
    const ms = until - clock.now()
    clock.advance(ms)
    t.equal(health.isEjected(0), false)
    return ms
  }
  t.same([ejectFor(), ejectFor(), ejectFor(), ejectFor()], [10_000, 20_000, 25_000, 25_000])
  t.equal(detector.describe(0).ejectionMultiplier, 3, 'n stops where base × n reaches the max')

  // Healthy for one decay period (base time): n drops by one.
  clock.advance(10_000)
  t.equal(detector.describe(0).ejectionMultiplier, 2)
  t.equal(ejectFor(), 25_000)
  // Healthy long enough: back to the base ejection time.
  clock.advance(10 * 10_000)
  t.equal(detector.describe(0).ejectionMultiplier, 0)
  t.equal(ejectFor(), 10_000)
})

t.test('never ejects beyond maxEjectionPercent', async (t) => {
  const { endpoints, detector, clock } = setup(4, { maxEjectionPercent: 50 })
  for (const i of [0, 1, 2]) repeat(3, () => detector.record(i, 'gateway-failure'))
  t.same(endpoints.map((e) => e.healthy), [false, false, true, true], '2 of 4 = 50 % allowed, the third refused')
  t.equal(detector.stats.ejectionsOverflow, 1)
  t.equal(detector.describe(2).consecutiveGatewayFailures, 0, 'the counter that fired is reset, as in Envoy')

  clock.advance(10_000)
  t.same(endpoints.map((e) => e.healthy), [true, true, true, true])
  repeat(3, () => detector.record(2, 'gateway-failure'))
  t.equal(endpoints[2]!.healthy, false, 'room again after readmission')
})

t.test('a single endpoint is never ejected at 50 %, and 0 % disables ejection', async (t) => {
  const one = setup(1)
  repeat(10, () => one.detector.record(0, 'gateway-failure'))
  t.equal(one.endpoints[0]!.healthy, true)

  const none = setup(3, { maxEjectionPercent: 0 })
  repeat(10, () => none.detector.record(0, '5xx'))
  t.equal(none.endpoints[0]!.healthy, true)
  t.equal(none.detector.stats.ejectionsOverflow, 2)
})

t.test('disabled: records are ignored', async (t) => {
  const { endpoints, detector } = setup(2, { enabled: false })
  repeat(10, () => detector.record(0, 'gateway-failure'))
  t.equal(endpoints[0]!.healthy, true)
})

t.test('readmit ends an ejection early and cancels its timer', async (t) => {
  const { endpoints, detector, clock, changes } = setup(2)
  repeat(3, () => detector.record(0, 'gateway-failure'))
  detector.readmit(0)
  detector.readmit(0)
  t.equal(endpoints[0]!.healthy, true)
  t.equal(clock.timers.size, 0)
  t.same(changes, ['0 down consecutive-gateway-failure', '0 up readmitted'])
})

t.test('close cancels pending readmissions and ignores later records', async (t) => {
  const { endpoints, detector, clock } = setup(4)
  repeat(3, () => detector.record(0, 'gateway-failure'))
  detector.close()
  t.equal(clock.timers.size, 0)
  repeat(3, () => detector.record(1, 'gateway-failure'))
  t.same(endpoints.map((e) => e.healthy), [false, true, true, true])
})

t.test('with panic mode: ejections past the threshold put the cluster in panic', async (t) => {
  const { endpoints, detector, health, clock } = setup(3, { maxEjectionPercent: 100 }, 50)
  repeat(3, () => detector.record(0, 'gateway-failure'))
  t.equal(health.panic, false)
  repeat(3, () => detector.record(1, 'gateway-failure'))
  t.equal(health.panic, true, '1 of 3 < 50 %')
  t.same(endpoints.map((e) => e.healthy), [true, true, true])
  clock.advance(10_000)
  t.equal(health.panic, false)
  t.same(endpoints.map((e) => e.healthy), [true, true, true])
})

t.test('the default clock uses unref\'d timers and close() clears them', async (t) => {
  const endpoints: HealthTarget[] = [{ id: 'a', healthy: true }, { id: 'b', healthy: true }]
  const health = new EndpointHealth(endpoints)
  const detector = new OutlierDetector(config({ baseEjectionTime: 20, maxEjectionTime: 20 }), health)
  repeat(3, () => detector.record(0, 'gateway-failure'))
  t.equal(endpoints[0]!.healthy, false)
  const end = Date.now() + 2_000
  while (!endpoints[0]!.healthy && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 5))
  t.equal(endpoints[0]!.healthy, true, 'readmitted by a real timer')
  repeat(3, () => detector.record(1, 'gateway-failure'))
  detector.close()
})
