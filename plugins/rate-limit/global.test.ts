import t from 'tap'
import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { Agent, request } from 'undici'
import { startUpstream } from '../../test/helpers/upstream.ts'
import { freePort, runCli, type CliProcess } from '../../test/helpers/cli.ts'
import { redisUnavailable, startRedis } from '../../test/helpers/redis.ts'
import { defaultScope } from './keys.ts'

/**
 * The accuracy requirement, end to end: three real Outrider
 * processes (the CLI, as deployed) share one real Redis and together keep
 * one global limit.
 */

const POINTS = 50
const WINDOW_S = 1
const TEST_MS = 10_000
/** Offered load: three times the limit, so every window fills. */
const OFFERED_PER_S = 3 * POINTS / WINDOW_S
const WORKERS = 6
const PROCESSES = 3

const skip = redisUnavailable()

function config (port: number, admin: number, upstream: string, redis: string): string {
  // A generous command timeout: this test is about the shared count, and a
  // Redis reply slowed by a busy machine must not turn into a local decision.
  const store = `{ type: redis, url: "${redis}", expectedInstances: ${PROCESSES}, commandTimeout: 5s }`
  return `listen: { host: 127.0.0.1, port: ${port} }
admin: { host: 127.0.0.1, port: ${admin} }
shutdown: { drainTimeout: 1s }
clusters:
  - name: up
    endpoints: [{ url: ${upstream} }]
routes:
  - name: steady
    match: { pathPrefix: /steady }
    cluster: up
    plugins:
      - name: rate-limit
        config: { points: ${POINTS}, duration: ${WINDOW_S}, key: route, store: ${store} }
  - name: burst
    match: { pathPrefix: /burst }
    cluster: up
    plugins:
      - name: rate-limit
        config: { points: ${POINTS}, duration: 60, key: route, store: ${store} }
`
}

async function stop (proc: CliProcess): Promise<void> {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return
  proc.child.kill('SIGTERM')
  await proc.exited
}

/** How many of the requests sent at `times` (ms) a fixed-window limit of `points` per `windowMs` admits. */
function fixedWindowAllowed (times: readonly number[], points: number, windowMs: number): number {
  let allowed = 0
  let opened = -Infinity
  let used = 0
  for (const at of [...times].sort((a, b) => a - b)) {
    if (at >= opened + windowMs) { opened = at; used = 0 }
    if (used < points) { used++; allowed++ }
  }
  return allowed
}

function metricValue (text: string, name: string): number {
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text)
  return m === null ? 0 : Number(m[1])
}

t.test('three processes sharing one Redis keep one global limit', { skip }, async (t) => {
  const redis = await startRedis(t)
  const up = await startUpstream((_req, res) => { res.end('ok') })
  t.teardown(up.close)
  const dir = t.testdir()
  const agent = new Agent({ connections: 16 })
  t.teardown(() => agent.close())

  const procs: Array<{ url: string, admin: string, proc: CliProcess }> = []
  for (let i = 0; i < PROCESSES; i++) {
    const [port, admin] = [await freePort(), await freePort()]
    const file = path.join(dir, `outrider-${i}.yaml`)
    await writeFile(file, config(port, admin, up.url, redis.url))
    const proc = runCli(['--config', file], { OUTRIDER_LOG_LEVEL: 'info' })
    t.teardown(() => stop(proc))
    procs.push({ url: `http://127.0.0.1:${port}`, admin: `http://127.0.0.1:${admin}`, proc })
  }
  await Promise.all(procs.map((p) => p.proc.waitForLog('proxy listening')))

  const send = async (url: string): Promise<number> => {
    const res = await request(url, { dispatcher: agent })
    await res.body.dump()
    return res.statusCode
  }

  await t.test(`${OFFERED_PER_S} req/s offered for ${TEST_MS / 1000} s against ${POINTS} per ${WINDOW_S} s`, async (t) => {
    // Round-robin over the processes at a fixed schedule (request n is due
    // at n / OFFERED_PER_S), ending TEST_MS after the first: a bounded loop
    // of at most OFFERED_PER_S × TEST_MS / 1000 requests, on loopback.
    const gapMs = 1000 / OFFERED_PER_S
    const total = Math.floor(TEST_MS / gapMs)
    const counts = { allowed: 0, refused: 0, other: 0 }
    const sentAt: number[] = []
    const t0 = performance.now() + 20
    let next = 0
    const worker = async (): Promise<void> => {
      for (;;) {
        const n = next++
        if (n >= total) return
        const wait = t0 + n * gapMs - performance.now()
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
        sentAt.push(performance.now())
        const status = await send(`${(procs[n % PROCESSES] as (typeof procs)[number]).url}/steady`)
        if (status === 200) counts.allowed++
        else if (status === 429) counts.refused++
        else counts.other++
      }
    }
    await Promise.all(Array.from({ length: WORKERS }, worker))

    // rate-limiter-flexible's fixed window: a key's window opens with the
    // first request that finds no counter (SET NX EX) and lasts WINDOW_S;
    // the first request after it expired opens the next, and each window
    // admits the first POINTS. On schedule that is ten full windows (500, the
    // configured rate × 10 s), but a busy machine can send the tail late, into
    // an eleventh. So the expectation is the limit applied to the requests as
    // they were actually sent; ±5 % absorbs the few that sit within a
    // round trip of a window's edge.
    const expected = fixedWindowAllowed(sentAt, POINTS, WINDOW_S * 1000)
    t.equal(fixedWindowAllowed(Array.from({ length: total }, (_, n) => n * gapMs), POINTS, WINDOW_S * 1000), POINTS * TEST_MS / (WINDOW_S * 1000),
      'on schedule, the expectation is the configured rate × the test\'s length')
    t.equal(counts.other, 0, 'every answer is 200 or 429')
    t.equal(counts.allowed + counts.refused, total, `all ${total} requests answered`)
    t.ok(Math.abs(counts.allowed - expected) <= expected * 0.05,
      `allowed ${counts.allowed} of ${total}: ${(counts.allowed / (TEST_MS / 1000)).toFixed(1)} req/s for a limit of ${POINTS / WINDOW_S} req/s (within ±5 % of ${expected})`)

    let allowedByMetrics = 0
    for (const p of procs) {
      const text = await (await request(`${p.admin}/metrics`, { dispatcher: agent })).body.text()
      t.equal(metricValue(text, 'outrider_ratelimit_store_errors_total\\{route="steady"\\}'), 0, 'decided by Redis, never the local fallback')
      const share = metricValue(text, 'outrider_ratelimit_decisions_total\\{route="steady",decision="allow"\\}')
      t.ok(share > 0, `this process allowed ${share}`)
      allowedByMetrics += share
    }
    t.equal(allowedByMetrics, counts.allowed, 'the processes\' metrics add up to what the clients saw')
  })

  await t.test('a burst beyond the limit is cut at the limit', async (t) => {
    // 150 requests at once, 50 to each process, within one 60 s window.
    const statuses = await Promise.all(Array.from({ length: 3 * POINTS }, (_, i) => send(`${(procs[i % PROCESSES] as (typeof procs)[number]).url}/burst`)))
    t.equal(statuses.filter((s) => s === 200).length, POINTS, `exactly ${POINTS} allowed`)
    t.equal(statuses.filter((s) => s === 429).length, 2 * POINTS, 'the rest refused')
    // Once a process has seen the counter pass the limit it refuses the key
    // from memory until the window ends, without asking Redis again.
    const counted = Number(await redis.command('GET', `outrider:rl:${defaultScope('burst', [{ by: 'route' }])}:60:route`))
    t.ok(counted > POINTS && counted <= 3 * POINTS, `Redis counted ${counted}: past the limit, then spared`)
  })
})
