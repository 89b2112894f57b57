import t from 'tap'
import { Client, request } from 'undici'
import { startChaosUpstream, type ChaosUpstream } from './chaos-upstream.ts'

async function chaos (t: { teardown (fn: () => unknown): void }, options: Parameters<typeof startChaosUpstream>[0] = {}): Promise<ChaosUpstream> {
  const up = await startChaosUpstream(options)
  t.teardown(() => up.close())
  return up
}

/** Status, or the error code when the request failed. */
async function outcome (url: string, headers: Record<string, string> = {}, timeoutMs = 2_000): Promise<{ status?: number, body?: string, code?: string, headers?: Record<string, unknown> }> {
  try {
    const res = await request(url, { headers, signal: AbortSignal.timeout(timeoutMs), reset: true })
    const body = await res.body.text()
    return { status: res.statusCode, body, headers: res.headers }
  } catch (err) {
    // An AbortSignal.timeout() rejection is a DOMException whose numeric code says little.
    const e = err as { code?: unknown, name: string }
    return { code: e.name === 'TimeoutError' || typeof e.code !== 'string' ? e.name : e.code }
  }
}

/** Polls until `cond` holds (bounded), so tests wait on state, not on sleeps. */
async function until (cond: () => boolean, ms = 2_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached in time')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

t.test('answers 200 with its name by default, counts and records heads', async (t) => {
  const up = await chaos(t, { name: 'alpha' })
  const r = await outcome(`${up.url}/a?b=1`, { 'x-test': 'yes' })
  t.equal(r.status, 200)
  t.equal(r.body, 'alpha\n')
  t.equal(r.headers?.['x-chaos-upstream'], 'alpha')
  t.equal(up.count, 1)
  t.equal(up.seen[0]?.url, '/a?b=1')
  t.equal(up.seen[0]?.headers['x-test'], 'yes')
  up.reset()
  t.equal(up.count, 0)
  t.same(up.seen, [])
})

t.test('behave sets status, body and headers; failRatio spreads failures exactly', async (t) => {
  const up = await chaos(t)
  up.behave({ status: 418, body: 'teapot', headers: { 'endpoint-load-metrics': 'JSON {"cpu_utilization": 0.3}' } })
  const r = await outcome(up.url)
  t.equal(r.status, 418)
  t.equal(r.body, 'teapot')
  t.equal(r.headers?.['endpoint-load-metrics'], 'JSON {"cpu_utilization": 0.3}')

  up.behave({ failRatio: 0.25 })
  const statuses: number[] = []
  for (let i = 0; i < 8; i++) statuses.push((await outcome(up.url)).status ?? 0)
  t.same(statuses, [200, 200, 200, 503, 200, 200, 200, 503])

  up.behave({ failRatio: 0.5, status: 500 })
  const more: number[] = []
  for (let i = 0; i < 4; i++) more.push((await outcome(up.url)).status ?? 0)
  t.same(more, [200, 500, 200, 500])
})

t.test('reset, hang and closeMidBody fail the request', async (t) => {
  const up = await chaos(t)
  up.behave({ reset: true })
  t.equal((await outcome(up.url)).code, 'ECONNRESET')

  up.behave({ hang: true })
  t.equal((await outcome(up.url, {}, 500)).code, 'TimeoutError')

  up.behave({ closeMidBody: true, body: 'x'.repeat(1000) })
  const r = await outcome(up.url)
  t.ok(r.code !== undefined, `mid-body close fails the body: ${r.code}`)
  t.equal(up.count, 3)
})

t.test('per-request headers override the behaviour', async (t) => {
  const up = await chaos(t)
  t.equal((await outcome(up.url, { 'x-chaos-status': '502' })).status, 502)
  t.equal((await outcome(up.url, { 'x-chaos-reset': '1' })).code, 'ECONNRESET')
  t.equal((await outcome(up.url, { 'x-chaos-hang': '1' }, 500)).code, 'TimeoutError')
  t.equal((await outcome(up.url, { 'x-chaos-delay': '5000' }, 500)).code, 'TimeoutError')
  t.equal((await outcome(up.url, { 'x-chaos-delay': '10' })).status, 200)
  t.ok((await outcome(up.url, { 'x-chaos-close-mid-body': '1' })).code !== undefined)
  up.behave({ status: 500 })
  t.equal((await outcome(up.url, { 'x-chaos-status': '200' })).status, 200)
})

t.test('/healthz follows the healthy flag and is counted apart', async (t) => {
  const up = await chaos(t)
  up.behave({ status: 500 })
  t.equal((await outcome(`${up.url}/healthz`)).status, 200)
  up.healthy = false
  t.equal((await outcome(`${up.url}/healthz`)).status, 503)
  up.healthy = true
  up.healthDelayMs = 5_000
  t.equal((await outcome(`${up.url}/healthz`, {}, 500)).code, 'TimeoutError')
  t.equal(up.healthChecks, 3)
  t.equal(up.count, 0)
})

t.test('stop refuses connections, drops kept-alive ones, start listens on the same port', async (t) => {
  const up = await chaos(t)
  const client = new Client(up.url)
  t.teardown(() => client.destroy())
  t.equal((await (await client.request({ method: 'GET', path: '/' })).body.text()).length > 0, true)
  const hanging = outcome(up.url, { 'x-chaos-hang': '1' }, 5_000)
  await until(() => up.count === 2)

  await up.stop()
  t.equal((await hanging).code, 'UND_ERR_SOCKET', 'a hanging request is cut by stop()')
  t.equal((await outcome(up.url)).code, 'ECONNREFUSED')
  await t.rejects(client.request({ method: 'GET', path: '/' }), { code: 'ECONNREFUSED' })

  await up.start()
  t.equal((await outcome(up.url)).status, 200)
  t.equal((await client.request({ method: 'GET', path: '/' })).statusCode, 200)
})

t.test('close ends hanging sockets, so nothing outlives the test', async (t) => {
  const up = await startChaosUpstream({ behaviour: { hang: true } })
  const pending = outcome(up.url, {}, 5_000)
  const delayed = outcome(up.url, { 'x-chaos-delay': '60000' }, 5_000)
  await until(() => up.count === 2)
  await up.close()
  t.equal((await pending).code, 'UND_ERR_SOCKET')
  t.equal((await delayed).code, 'UND_ERR_SOCKET')
})
