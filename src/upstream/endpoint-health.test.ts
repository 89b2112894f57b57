import t from 'tap'
import { EndpointHealth, type HealthTarget } from './endpoint-health.ts'

const endpoints = (n: number): HealthTarget[] =>
  Array.from({ length: n }, (_, i) => ({ id: `http://10.0.0.${i + 1}:80`, healthy: false }))

const flags = (eps: readonly HealthTarget[]): boolean[] => eps.map((e) => e.healthy)

t.test('every endpoint starts healthy and unchecked', async (t) => {
  const eps = endpoints(3)
  const h = new EndpointHealth(eps)
  t.same(flags(eps), [true, true, true])
  t.same(h.describe(0), { active: 'unchecked', ejections: 0, healthy: true, panic: false })
  t.equal(h.size, 3)
  t.equal(h.healthyCount, 3)
})

t.test('healthy = active ok && not ejected; the two signals do not clear each other', async (t) => {
  const eps = endpoints(4)
  const changes: Array<[number, boolean, string]> = []
  const h = new EndpointHealth(eps, { onChange: (i, healthy, reason) => changes.push([i, healthy, reason]) })

  h.setActive(0, false)
  t.same(flags(eps), [false, true, true, true])
  h.eject(0, Date.UTC(2030, 0, 1))
  t.same(h.describe(0), { active: 'unhealthy', ejectedUntil: '2030-01-01T00:00:00.000Z', ejections: 1, healthy: false, panic: false })
  h.setActive(0, true)
  t.equal(eps[0]!.healthy, false, 'still ejected')
  h.readmit(0)
  t.equal(eps[0]!.healthy, true)
  t.same(h.describe(0), { active: 'healthy', ejections: 1, healthy: true, panic: false })

  h.eject(1, 1_000, 'consecutive-5xx')
  h.eject(1, 2_000, 'consecutive-5xx')
  t.equal(h.describe(1).ejections, 1, 'ejecting an ejected endpoint only moves its deadline')
  t.equal(h.describe(1).ejectedUntil, new Date(2_000).toISOString())
  h.readmit(1, 'ejection-expired')
  h.readmit(1, 'ejection-expired')

  t.same(changes, [
    [0, false, 'active-check-failed'],
    [0, true, 'readmitted'],
    [1, false, 'consecutive-5xx'],
    [1, true, 'ejection-expired'],
  ], 'onChange fires on verdict changes only')
})

t.test('repeated verdicts and bad indexes are no-ops', async (t) => {
  const eps = endpoints(2)
  let calls = 0
  const h = new EndpointHealth(eps, { onChange: () => { calls++ } })
  h.setActive(0, true)
  h.setActive(0, true)
  h.readmit(0)
  h.setActive(5, false)
  h.eject(-1, 10)
  h.setActive(1.5, false)
  t.equal(calls, 0)
  t.same(flags(eps), [true, true])
})

t.test('panic mode: below the threshold every endpoint takes traffic, and it clears on recovery', async (t) => {
  const eps = endpoints(4)
  const panics: boolean[] = []
  const h = new EndpointHealth(eps, { panicThreshold: 50, onPanic: (p) => panics.push(p) })

  h.setActive(0, false)
  h.eject(1, 10_000)
  // 2 of 4 healthy = 50 %: not below the threshold.
  t.equal(h.panic, false)
  t.same(flags(eps), [false, false, true, true])

  h.setActive(2, false)
  t.equal(h.panic, true, '1 of 4 < 50 %')
  t.same(flags(eps), [true, true, true, true])
  t.equal(h.describe(0).panic, true)
  t.equal(h.describe(0).healthy, false, 'describe keeps the real verdict')
  t.equal(h.isHealthy(3), true)
  t.equal(h.isHealthy(2), false)

  h.setActive(3, false)
  t.same(flags(eps), [true, true, true, true], 'none healthy: still all')

  h.setActive(3, true)
  h.readmit(1)
  t.equal(h.panic, false)
  t.same(flags(eps), [false, true, false, true], 'the real verdicts are back')
  t.same(panics, [true, false])
})

t.test('a panic threshold of 0 disables panic mode', async (t) => {
  const eps = endpoints(2)
  const h = new EndpointHealth(eps, { panicThreshold: 0 })
  h.setActive(0, false)
  h.setActive(1, false)
  t.equal(h.panic, false)
  t.same(flags(eps), [false, false])
})

t.test('a threshold of 100 panics as soon as one endpoint fails', async (t) => {
  const eps = endpoints(3)
  const h = new EndpointHealth(eps, { panicThreshold: 100 })
  h.eject(2, 1)
  t.equal(h.panic, true)
  t.same(flags(eps), [true, true, true])
  h.readmit(2)
  t.equal(h.panic, false)
})

t.test('a single endpoint under the default threshold: failing it means panic', async (t) => {
  const eps = endpoints(1)
  const h = new EndpointHealth(eps)
  h.setActive(0, false)
  t.equal(h.panic, true)
  t.equal(eps[0]!.healthy, true)
})

t.test('a throwing callback is logged and does not undo the change', async (t) => {
  const eps = endpoints(2)
  const errors: string[] = []
  const logger = { debug () {}, info () {}, warn () {}, error (msg: string) { errors.push(msg) }, child () { return logger }, setLevel () {}, level: 'debug' as const }
  const h = new EndpointHealth(eps, { onChange: () => { throw new Error('boom') }, logger })
  h.eject(0, 1)
  t.equal(eps[0]!.healthy, false)
  t.same(errors, ['endpoint health callback failed'])
})

t.test('an empty cluster is never in panic', async (t) => {
  const h = new EndpointHealth([])
  t.equal(h.panic, false)
  t.equal(h.size, 0)
})
