import t from 'tap'
import { Registry } from 'prom-client'
import { request } from 'undici'
import { noSubrequests, startUpstream, type Upstream } from '../../test/helpers/upstream.ts'
import { startTestProxy, simpleDoc, testLogger, type TestProxy } from '../../test/helpers/proxy.ts'
import { redisUnavailable, startRedis, type TestRedis } from '../../test/helpers/redis.ts'
import { freePort } from '../../test/helpers/cli.ts'
import { createLogger } from '../../src/log.ts'
import { RateLimitedError } from '../../src/errors.ts'
import type { PluginHooks, RequestContext } from '../../src/plugin.ts'
import plugin from './plugin.ts'
import { defaultScope } from './keys.ts'
import { schema } from './schema.ts'

const skip = redisUnavailable()

/**
 * A rate-limit plugin. A Redis store gets a generous command timeout unless
 * the test sets one: a reply slowed by a busy machine must not turn into a
 * local decision where the test counts Redis's.
 */
function limited (config: Record<string, unknown>): Record<string, unknown> {
  const store = config.store as Record<string, unknown> | undefined
  const withTimeout = store?.type === 'redis' ? { ...config, store: { commandTimeout: '5s', ...store } } : config
  return { plugins: [{ name: 'rate-limit', config: withTimeout }] }
}

async function status (proxy: TestProxy, headers: Record<string, string> = {}): Promise<number> {
  const res = await request(`${proxy.url}/x`, { headers })
  await res.body.dump()
  return res.statusCode
}

async function statuses (proxy: TestProxy, n: number): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) out.push(await status(proxy))
  return out
}

async function upstream (t: { teardown (fn: () => unknown): void }): Promise<Upstream> {
  const up = await startUpstream()
  t.teardown(up.close)
  return up
}

/** Connections Redis has from clients other than the one asking. */
async function clients (redis: TestRedis): Promise<number> {
  const list = String(await redis.command('CLIENT', 'LIST'))
  return list.split('\n').filter((l) => l.includes('cmd=') && !l.includes('cmd=client|list')).length
}

async function waitFor (what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

async function metric (proxy: TestProxy, name: string): Promise<number> {
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(await proxy.metrics.registry.metrics())
  return m === null ? 0 : Number(m[1])
}

/** The plugin's hooks over a Redis store, driven without a proxy; closed in teardown. */
async function hooksOn (t: { teardown (fn: () => unknown): void }, redis: TestRedis, config: Record<string, unknown>): Promise<PluginHooks> {
  const hooks = await plugin.create(schema.parse({ ...config, store: { type: 'redis', url: redis.url, commandTimeout: '5s' } }), { routeName: 'direct', metrics: new Registry(), log: testLogger(), upstream: noSubrequests })
  t.teardown(() => hooks.close?.())
  return hooks
}

/** One request from 192.0.2.1: 'allow', or the name of the limit that refused it. */
async function decide (hooks: PluginHooks): Promise<string> {
  const ctx = { clientIp: '192.0.2.1', req: { headers: {} }, identity: undefined, state: {}, annotate () {} } as unknown as RequestContext
  try {
    await hooks.onRequest?.(ctx)
    return 'allow'
  } catch (err) {
    if (err instanceof RateLimitedError) return (err.extensions?.['violated-policies'] as string[]).join()
    throw err
  }
}

/** Scripts Redis ran since the last CONFIG RESETSTAT: one a round trip (rate-limiter-flexible counts with Lua). */
async function scriptsRun (redis: TestRedis): Promise<number> {
  const stats = String(await redis.command('INFO', 'commandstats'))
  let n = 0
  for (const m of stats.matchAll(/^cmdstat_(?:eval|evalsha):calls=(\d+)/gm)) n += Number(m[1])
  return n
}

t.test('several limits: a burst the short limit refuses leaves the long window alone', { skip }, async (t) => {
  const redis = await startRedis(t)
  // The long window first: the limits are asked shortest window first all the same.
  const hooks = await hooksOn(t, redis, { scope: 'burst', limits: [{ points: 10, duration: '1h' }, { points: 3, duration: 1 }] })
  const burst = await Promise.all(Array.from({ length: 30 }, () => decide(hooks)))
  const served = burst.filter((d) => d === 'allow').length
  t.ok(served >= 3 && served < 10, `the 1s limit served ${served} (3 a second)`)
  t.same(new Set(burst.filter((d) => d !== 'allow')), new Set(['1s']), 'every refusal is the 1s limit\'s')
  t.equal(await redis.command('GET', 'outrider:rl:burst:3600:ip=192.0.2.1'), String(served), 'the hour counted the served requests only')
  // Had the refused requests filled the hour, the key would be blocked (in memory) for the hour.
  await waitFor('the next second to serve the client', async () => await decide(hooks) === 'allow')
  t.pass('served again once the 1s window ends')
})

t.test('several limits: a flood refused from memory by the short limit costs Redis nothing', { skip }, async (t) => {
  const redis = await startRedis(t)
  const hooks = await hooksOn(t, redis, { scope: 'flood', limits: [{ points: 5, duration: '1m' }, { points: 1000, duration: '1d' }] })
  t.equal(await redis.command('CONFIG', 'RESETSTAT'), 'OK')
  const decisions: string[] = []
  for (let i = 0; i < 200; i++) decisions.push(await decide(hooks))
  t.same(decisions.slice(0, 7), ['allow', 'allow', 'allow', 'allow', 'allow', '1m', '1m'])
  t.equal(decisions.filter((d) => d === 'allow').length, 5)
  // 5 served × 2 limits and the refusal that blocks the key.
  t.equal(await scriptsRun(redis), 11, 'Redis round trips for 200 requests')
  t.equal(await redis.command('GET', 'outrider:rl:flood:86400:ip=192.0.2.1'), '5')
})

t.test('two proxies share the counters in Redis', { skip }, async (t) => {
  const redis = await startRedis(t)
  const up = await upstream(t)
  const doc = simpleDoc(up.url, limited({ points: 4, duration: 60, store: { type: 'redis', url: redis.url } }))
  const a = await startTestProxy(doc, t)
  const b = await startTestProxy(doc, t)
  const seen: number[] = []
  for (let i = 0; i < 6; i++) seen.push(await status(i % 2 === 0 ? a : b))
  t.same(seen, [200, 200, 200, 200, 429, 429], 'one limit for both')
  t.match(await redis.command('KEYS', 'outrider:rl:*'), [/^outrider:rl:all~[\w-]{8}:60:ip=127\.0\.0\.1$/], 'prefix, scope (the route\'s and its key\'s), window and key')
  const ttl = await redis.command('PTTL', `outrider:rl:${defaultScope('all', [{ by: 'ip' }])}:60:ip=127.0.0.1`) as number
  t.ok(ttl > 50_000 && ttl <= 60_000, 'the window is the key\'s TTL')

  t.equal(await redis.command('FLUSHALL'), 'OK')
  // A key over its limit is refused from memory until its window ends: a
  // fresh key (another client) shows that the count itself lived in Redis.
  t.equal(await status(a, {}), 429, 'the over-limit key stays blocked locally for its window')
  const fresh = simpleDoc(up.url, limited({ points: 4, duration: 60, key: { by: 'header', name: 'x-client' }, store: { type: 'redis', url: redis.url } }))
  await a.reload(fresh)
  await b.reload(fresh)
  const byClient: number[] = []
  for (let i = 0; i < 5; i++) byClient.push(await status(i % 2 === 0 ? a : b, { 'x-client': 'c1' }))
  t.same(byClient, [200, 200, 200, 200, 429])
  const keys = await redis.command('KEYS', 'outrider:rl:*') as string[]
  t.match(keys, [/^outrider:rl:all~[\w-]{8}:60:h=[\w-]{22}$/], 'a header value is a digest in the key')
  t.equal(await redis.command('GET', keys[0] as string), '5')
})

t.test('one connection per Redis, shared by routes and snapshots, closed with the last', { skip }, async (t) => {
  const redis = await startRedis(t)
  const up = await upstream(t)
  const store = { type: 'redis', url: redis.url }
  const route = (name: string): Record<string, unknown> => ({ name, match: { pathPrefix: `/${name}` }, cluster: 'up', plugins: [{ name: 'rate-limit', config: { points: 5, duration: 1, store } }] })
  const doc = { clusters: [{ name: 'up', endpoints: [{ url: up.url }] }], routes: [route('a'), route('b'), route('c')] }
  const proxy = await startTestProxy(doc, t)
  t.equal(await clients(redis), 1, 'three routes, one connection')
  await proxy.reload(doc)
  t.equal(await clients(redis), 1, 'the next snapshot joins it')
  await proxy.reload(simpleDoc(up.url))
  await waitFor('the connection to close', async () => await clients(redis) === 0)
  t.pass('the last user closed it')
})

t.test('Redis Cluster', { skip }, async (t) => {
  const redis = await startRedis(t, { cluster: true })
  const up = await upstream(t)
  const proxy = await startTestProxy(simpleDoc(up.url, limited({ points: 2, duration: 60, store: { type: 'redis', cluster: [{ host: '127.0.0.1', port: redis.port }] } })), t)
  t.same(await statuses(proxy, 3), [200, 200, 429])
  t.same(await redis.command('KEYS', '*'), [`outrider:rl:${defaultScope('all', [{ by: 'ip' }])}:60:ip=127.0.0.1`])
  t.equal(await metric(proxy, 'outrider_ratelimit_store_errors_total\\{route="all"\\}'), 0)
})

t.test('Redis down: the local limiter keeps limiting, then Redis comes back', { skip }, async (t) => {
  const redis = await startRedis(t)
  const up = await upstream(t)
  const proxy = await startTestProxy(simpleDoc(up.url, limited({
    points: 6,
    duration: 60,
    store: { type: 'redis', url: redis.url, expectedInstances: 2 },
  })), t)
  t.same(await statuses(proxy, 2), [200, 200], 'counted in Redis')
  t.equal(await metric(proxy, 'outrider_ratelimit_store_errors_total\\{route="all"\\}'), 0)

  await redis.stop()
  t.same(await statuses(proxy, 4), [200, 200, 200, 429], 'locally: 6 / 2 instances = 3 per process')
  t.equal(await metric(proxy, 'outrider_ratelimit_store_errors_total\\{route="all"\\}'), 4, 'every decision made without Redis is counted')

  await redis.start()
  await waitFor('the client to reconnect', async () => await clients(redis) === 1)
  t.same(await statuses(proxy, 7), [200, 200, 200, 200, 200, 200, 429], 'back on the (restarted, empty) Redis: the global limit again')
  t.equal(await metric(proxy, 'outrider_ratelimit_store_errors_total\\{route="all"\\}'), 4)
  t.equal(await redis.command('GET', `outrider:rl:${defaultScope('all', [{ by: 'ip' }])}:60:ip=127.0.0.1`), '7')
})

t.test('Redis down with onStoreError allow and deny', { skip }, async (t) => {
  const redis = await startRedis(t)
  const up = await upstream(t)
  const key = { by: 'header', name: 'x-client' }
  const allow = await startTestProxy(simpleDoc(up.url, limited({ points: 1, duration: 60, key, store: { type: 'redis', url: redis.url, onStoreError: 'allow' }, headersOnAllowed: true })), t)
  const deny = await startTestProxy({
    clusters: [{ name: 'up', endpoints: [{ url: up.url }] }],
    routes: [{ name: 'strict', cluster: 'up', plugins: [{ name: 'rate-limit', config: { points: 1, duration: 60, key, store: { type: 'redis', url: redis.url, onStoreError: 'deny' } } }] }],
  }, t)
  t.same([await status(allow, { 'x-client': 'c1' }), await status(allow, { 'x-client': 'c1' })], [200, 429], 'Redis up: limited')
  await redis.stop()

  const open: number[] = []
  for (let i = 0; i < 5; i++) open.push(await status(allow, { 'x-client': 'c2' }))
  t.same(open, [200, 200, 200, 200, 200], 'allow: fail open')
  t.equal(await status(allow, { 'x-client': 'c1' }), 429, 'a key already refused in this window stays refused (from memory)')
  const res = await request(`${allow.url}/x`, { headers: { 'x-client': 'c3' } })
  await res.body.dump()
  t.equal(res.headers['ratelimit-policy'], '"default";q=1;w=60')
  t.equal(res.headers.ratelimit, undefined, 'nothing is claimed about a count nobody could read')

  const refused = await request(`${deny.url}/x`, { headers: { 'x-client': 'c4' } })
  const body = await refused.body.json() as Record<string, unknown>
  t.equal(refused.statusCode, 429, 'deny: fail closed')
  t.equal(refused.headers['retry-after'], '1')
  t.equal(body.code, 'RATE_LIMITED')
  t.equal(await metric(deny, 'outrider_ratelimit_store_errors_total\\{route="strict"\\}'), 1)
  t.equal(await metric(allow, 'outrider_ratelimit_store_errors_total\\{route="all"\\}'), 6)
  t.equal(up.seen.length, 7)
})

t.test('Redis unreachable at start: the proxy starts and limits locally', { skip }, async (t) => {
  const up = await upstream(t)
  const port = await freePort()
  const proxy = await startTestProxy(simpleDoc(up.url, limited({ points: 2, duration: 60, store: { type: 'redis', url: `redis://127.0.0.1:${port}`, connectTimeout: '200ms' } })), t)
  t.same(await statuses(proxy, 3), [200, 200, 429])
  t.equal(await metric(proxy, 'outrider_ratelimit_store_errors_total\\{route="all"\\}'), 3)
})

t.test('a stalled Redis costs a request at most the command timeout', { skip }, async (t) => {
  const redis = await startRedis(t)
  t.teardown(() => { redis.resume() })
  const up = await upstream(t)
  const proxy = await startTestProxy(simpleDoc(up.url, limited({ points: 5, duration: 60, store: { type: 'redis', url: redis.url, commandTimeout: '500ms' } })), t)
  t.equal(await status(proxy), 200)
  redis.pause()
  const started = performance.now()
  t.same(await statuses(proxy, 3), [200, 200, 200], 'decided locally')
  const perRequest = (performance.now() - started) / 3
  t.ok(perRequest < 2_000, `a stalled Redis does not stall requests (${Math.round(perRequest)} ms each, commandTimeout 500 ms)`)
  t.equal(await metric(proxy, 'outrider_ratelimit_store_errors_total\\{route="all"\\}'), 3)
  redis.resume()
  t.equal(await status(proxy), 200)
  t.equal(await metric(proxy, 'outrider_ratelimit_store_errors_total\\{route="all"\\}'), 3, 'Redis answers again')
})

t.test('store failures are logged at most every 10 s, with what decided', { skip }, async (t) => {
  const redis = await startRedis(t)
  const lines: Array<Record<string, unknown>> = []
  const log = createLogger({ level: 'debug', write: (line) => { lines.push(JSON.parse(line) as Record<string, unknown>) } })
  const metrics = new Registry()
  const hooks = await plugin.create(schema.parse({ points: 3, duration: 60, store: { type: 'redis', url: redis.url } }), { routeName: 'direct', metrics, log, upstream: noSubrequests })
  t.teardown(() => hooks.close?.())
  const ctx = (): RequestContext => ({ clientIp: '192.0.2.1', req: { headers: {} }, identity: undefined, state: {}, annotate () {} }) as unknown as RequestContext
  const decide = async (): Promise<string> => {
    try {
      await hooks.onRequest?.(ctx())
      return 'allow'
    } catch (err) {
      if (err instanceof RateLimitedError) return 'deny'
      throw err
    }
  }
  t.equal(await decide(), 'allow')
  await redis.stop()
  const decisions: string[] = []
  for (let i = 0; i < 50; i++) decisions.push(await decide())
  t.same(decisions.slice(0, 4), ['allow', 'allow', 'allow', 'deny'], 'the local limiter counts from zero')
  const fallback = lines.filter((l) => l.msg === 'rate-limit: redis unavailable, deciding by onStoreError')
  t.equal(fallback.length, 1, 'one warning for 50 decisions')
  t.match(fallback[0], { level: 'warn', onStoreError: 'local', redis: `redis://127.0.0.1:${redis.port}` })
  t.notMatch(JSON.stringify(lines), /password/)
  t.match(await metrics.metrics(), /outrider_ratelimit_store_errors_total\{route="direct"\} 50/)
})
