import t from 'tap'
import type { HealthCheckConfig } from '../config/schema.ts'
import { startChaosUpstream, type ChaosUpstream } from '../../test/helpers/chaos-upstream.ts'
import { EndpointHealth, type HealthTarget } from './endpoint-health.ts'
import { ActiveHealthChecker, type ActiveHealthCheckerOptions } from './health-check.ts'

const config = (o: Partial<HealthCheckConfig> = {}): HealthCheckConfig => ({
  path: '/healthz',
  interval: 20,
  timeout: 2000,
  expectedStatuses: [200],
  healthyThreshold: 2,
  unhealthyThreshold: 2,
  jitter: 0.1,
  ...o,
})

/** Polls until `cond` holds; fails the test (rather than hanging) after `ms`. */
async function until (cond: () => boolean, ms = 5_000): Promise<boolean> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) return false
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  return true
}

interface Setup {
  ups: ChaosUpstream[]
  endpoints: Array<HealthTarget & { url: string }>
  health: EndpointHealth
  checker: ActiveHealthChecker
  changes: string[]
  /** The checker's view of the endpoint at each verdict change. */
  atChange: Array<ReturnType<ActiveHealthChecker['describe']>>
}

async function setup (t: { teardown (fn: () => unknown): void }, n: number, o: Partial<HealthCheckConfig> = {}, options: ActiveHealthCheckerOptions = {}): Promise<Setup> {
  const ups: ChaosUpstream[] = []
  for (let i = 0; i < n; i++) {
    const up = await startChaosUpstream()
    t.teardown(() => up.close())
    ups.push(up)
  }
  const endpoints = ups.map((u) => ({ id: u.url, url: u.url, healthy: true }))
  const changes: string[] = []
  const atChange: Setup['atChange'] = []
  // Panic mode off: these tests look at each endpoint's own flag.
  const health = new EndpointHealth(endpoints, {
    panicThreshold: 0,
    onChange: (i, healthy, reason) => {
      changes.push(`${i} ${healthy ? 'up' : 'down'} ${reason}`)
      atChange.push(checker.describe(i))
    },
  })
  const checker = new ActiveHealthChecker(endpoints, config(o), health, options)
  t.teardown(() => checker.stop())
  checker.start()
  return { ups, endpoints, health, checker, changes, atChange }
}

t.test('a healthy endpoint turns healthy after its first passing probe', async (t) => {
  const { health, checker, ups } = await setup(t, 2)
  t.ok(await until(() => health.describe(0).active === 'healthy' && health.describe(1).active === 'healthy'))
  t.equal(checker.describe(0)?.state, 'healthy')
  t.equal(checker.describe(0)?.last, '200')
  t.equal(ups[0]!.count, 0, 'probes are not traffic')
  const probe = ups[0]!.healthSeen[0]!
  t.equal(probe.method, 'GET')
  t.equal(probe.url, '/healthz')
  t.equal(probe.headers['user-agent'], 'outrider-health-check')
  t.equal(probe.headers.host, `127.0.0.1:${ups[0]!.port}`)
})

t.test('unhealthy after the threshold of 503s, healthy again once it recovers', async (t) => {
  const { endpoints, health, ups, changes, atChange } = await setup(t, 2, { unhealthyThreshold: 3, healthyThreshold: 2 })
  ups[0]!.healthy = false
  t.ok(await until(() => !endpoints[0]!.healthy), 'marked unhealthy')
  t.equal(health.describe(0).active, 'unhealthy')
  t.match(atChange[0], { state: 'unhealthy', consecutiveFailures: 3, last: '503' }, 'after exactly unhealthyThreshold failures')
  t.equal(endpoints[1]!.healthy, true, 'the other endpoint is untouched')

  ups[0]!.healthy = true
  t.ok(await until(() => endpoints[0]!.healthy), 'healthy again')
  t.match(atChange[1], { state: 'healthy', consecutivePasses: 2, consecutiveFailures: 0 }, 'after exactly healthyThreshold passes')
  t.same(changes, ['0 down active-check-failed', '0 up active-check-passed'])
})

t.test('a stopped (refusing) endpoint becomes unhealthy, and healthy when it listens again', async (t) => {
  const { endpoints, checker, ups } = await setup(t, 2)
  t.ok(await until(() => checker.describe(0)?.state === 'healthy'))
  await ups[0]!.stop()
  t.ok(await until(() => !endpoints[0]!.healthy))
  t.equal(checker.describe(0)?.last, 'ECONNREFUSED')
  await ups[0]!.start()
  t.ok(await until(() => endpoints[0]!.healthy))
})

t.test('a probe slower than the timeout fails', async (t) => {
  const { endpoints, checker, ups } = await setup(t, 1, { timeout: 50 })
  ups[0]!.healthDelayMs = 10_000
  t.ok(await until(() => !endpoints[0]!.healthy))
  t.equal(checker.describe(0)?.last, 'timeout')
  ups[0]!.healthDelayMs = 0
  t.ok(await until(() => endpoints[0]!.healthy), 'recovers after the slowness ends')
})

t.test('statuses outside expectedStatuses fail; listed ones pass', async (t) => {
  const { endpoints, ups } = await setup(t, 1, { expectedStatuses: [503] })
  ups[0]!.healthy = true
  t.ok(await until(() => !endpoints[0]!.healthy), '200 is not expected')
  ups[0]!.healthy = false
  t.ok(await until(() => endpoints[0]!.healthy), '503 is')
})

t.test('the host option sets the probe\'s Host header; onProbe sees every probe', async (t) => {
  const probes: string[] = []
  const { ups } = await setup(t, 1, { host: 'svc.internal' }, { onProbe: (i, ok, detail) => probes.push(`${i} ${ok} ${detail}`) })
  t.ok(await until(() => probes.length >= 2))
  t.equal(probes[0], '0 true 200')
  t.equal(ups[0]!.healthSeen[0]?.headers.host, 'svc.internal')
})

t.test('stop() cancels probes in flight and timers; nothing runs afterwards', async (t) => {
  const { checker, ups } = await setup(t, 2, { timeout: 5_000 })
  ups[0]!.healthDelayMs = 60_000
  t.ok(await until(() => ups[0]!.healthChecks >= 1 && ups[1]!.healthChecks >= 1))
  await checker.stop()
  const seen = ups[1]!.healthChecks
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(ups[1]!.healthChecks, seen, 'no probe after stop')
  t.equal(checker.describe(0)?.state, 'unchecked', 'the aborted probe was not counted')
  await checker.stop()
  checker.start()
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(ups[1]!.healthChecks, seen, 'a stopped checker stays stopped')
})

t.test('a throwing sink never escapes the timer; probing goes on', async (t) => {
  const ups = await startChaosUpstream()
  t.teardown(() => ups.close())
  let calls = 0
  const sink = { setActive: () => { calls++; throw new Error('boom') } }
  const errors: string[] = []
  const logger = { debug () {}, info () {}, warn () {}, error (msg: string) { errors.push(msg) }, child () { return logger }, setLevel () {}, level: 'debug' as const }
  const checker = new ActiveHealthChecker([{ url: ups.url }], config({ unhealthyThreshold: 1, healthyThreshold: 1 }), sink, { logger })
  t.teardown(() => checker.stop())
  checker.start()
  t.ok(await until(() => calls >= 1))
  ups.healthy = false
  t.ok(await until(() => calls >= 2), 'still probing after a throw')
  t.ok(errors.length >= 2)
})
