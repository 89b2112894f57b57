import t from 'tap'
import { request } from 'undici'
import { redisUnavailable, startRedis } from '../../test/helpers/redis.ts'
import { ScriptedOrigin, get, sleep, startCachingProxy, uniquePath } from './test-origin.ts'

const skip = redisUnavailable()

/** Polls until `check` holds (L2 writes and purge broadcasts are asynchronous). */
async function eventually (check: () => Promise<boolean>, ms = 5_000): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await check()) return true
    await sleep(20)
  }
  return false
}

t.test('L2: two proxies share stored responses through Redis', { skip }, async (t) => {
  const redis = await startRedis(t)
  const origin = await ScriptedOrigin.start()
  t.teardown(() => origin.close())
  const l2 = { type: 'redis', url: redis.url }
  const a = await startCachingProxy(origin, { l2, tagHeader: 'surrogate-key' }, t)
  const b = await startCachingProxy(origin, { l2, tagHeader: 'surrogate-key' }, t)
  const path = uniquePath('l2')
  const big = 'json '.repeat(2000)
  origin.on(path, () => ({ headers: { 'cache-control': 'max-age=100', 'surrogate-key': 'k1 k2', vary: 'accept-language' }, body: big }))

  const first = await get(a, path, { 'accept-language': 'en' })
  t.equal(first.headers['x-cache'], 'MISS')
  t.ok(await eventually(async () => Number(await redis.command('EXISTS', `outrider:cache:u:127.0.0.1:${a.port}${path}`)) === 1), 'written to Redis')

  // b has a different port, so the same URL is another host: ask b for a's host.
  const viaB = await request(`${b.url}${path}`, { headers: { host: `127.0.0.1:${a.port}`, 'accept-language': 'en' } })
  const body = await viaB.body.text()
  t.equal(viaB.headers['x-cache'], 'HIT', 'b answers from L2')
  t.equal(body, big, 'the compressed value round-trips')
  t.ok(Number(viaB.headers.age) >= 0)
  t.equal(origin.hits(path), 1)

  const otherVariant = await request(`${b.url}${path}`, { headers: { host: `127.0.0.1:${a.port}`, 'accept-language': 'fr' } })
  await otherVariant.body.text()
  t.equal(otherVariant.headers['x-cache'], 'MISS', 'another Vary value is another variant')

  // Purge by tag on b: gone from Redis and from a's L1 (broadcast).
  const purge = await request(`${b.adminUrl}/cache/purge`, { method: 'POST', body: JSON.stringify({ tag: 'k2' }) })
  t.equal(purge.statusCode, 200)
  await purge.body.text()
  t.ok(await eventually(async () => (await get(a, path, { 'accept-language': 'en', 'cache-control': 'only-if-cached' })).status === 504), 'a dropped it from L1 too')
})

t.test('L2: Redis down is a miss, never an error; back up, it is used again', { skip }, async (t) => {
  const redis = await startRedis(t)
  const origin = await ScriptedOrigin.start()
  t.teardown(() => origin.close())
  const p = await startCachingProxy(origin, { l2: { type: 'redis', url: redis.url, commandTimeout: 100 }, maxSize: 1 }, t)
  const path = uniquePath('l2-down')
  origin.on(path, () => ({ headers: { 'cache-control': 'max-age=100' } }))
  await redis.stop()
  const r = await get(p, path)
  t.equal(r.status, 200)
  t.equal(r.headers['x-cache'], 'MISS')
  await redis.start()
  // maxSize 1 keeps nothing in L1: a HIT can only come from L2 once it is back.
  t.ok(await eventually(async () => (await get(p, path)).headers['x-cache'] === 'HIT', 10_000), 'served from L2 after Redis came back')
  const text = await (await request(`${p.adminUrl}/metrics`)).body.text()
  t.match(text, /outrider_cache_l2_errors_total\{route="all",op="(get|put)"\} [1-9]/)
})

t.test('L2 writes: one field per variant, variants of an old Vary dropped, tag sets never shortened', { skip }, async (t) => {
  const redis = await startRedis(t)
  const origin = await ScriptedOrigin.start()
  t.teardown(() => origin.close())
  // keepStale 0: an entry is kept for its freshness only, so lifetimes differ as much as max-ages do.
  const p = await startCachingProxy(origin, { l2: { type: 'redis', url: redis.url }, tagHeader: 'surrogate-key', keepStale: '0s' }, t)
  const path = uniquePath('l2-writes')
  const urlKey = `outrider:cache:u:127.0.0.1:${p.port}${path}`
  let vary = 'accept-language'
  origin.on(path, (_req, n) => ({ headers: { 'cache-control': 'max-age=3600', vary, 'surrogate-key': 'long' }, body: `v${n}` }))
  const fields = async (): Promise<number> => Number(await redis.command('HLEN', urlKey))

  await get(p, path, { 'accept-language': 'en' })
  t.ok(await eventually(async () => await fields() === 1), 'the first variant is stored')
  // A forced refresh stores the same variant again: it replaces the field.
  await get(p, path, { 'accept-language': 'en', 'cache-control': 'no-cache' })
  await get(p, path, { 'accept-language': 'fr' })
  t.ok(await eventually(async () => await fields() === 2), 'en and fr')
  await sleep(100)
  t.equal(await fields(), 2, 'still one field per variant after the refresh')

  // The upstream now varies on something else: the old variants cannot be selected any more.
  vary = 'accept-encoding'
  await get(p, path, { 'accept-language': 'en', 'cache-control': 'no-cache' })
  t.ok(await eventually(async () => {
    const names = await redis.command('HKEYS', urlKey) as string[]
    return names.length === 1 && names[0]?.startsWith('[["accept-encoding"],') === true
  }), 'only the new Vary\'s variant is left')

  // A tag set lives as long as its longest-lived entry.
  const tagKey = 'outrider:cache:t:long'
  const short = uniquePath('l2-short')
  origin.on(short, () => ({ headers: { 'cache-control': 'max-age=60', 'surrogate-key': 'long' }, body: 'short' }))
  await get(p, short)
  t.ok(await eventually(async () => Number(await redis.command('SISMEMBER', tagKey, `127.0.0.1:${p.port}${short}`)) === 1), 'the short-lived entry joined the tag')
  const ttl = Number(await redis.command('PTTL', tagKey))
  t.ok(ttl > 3_000_000, `the tag set keeps the hour of its longest entry (PTTL ${ttl} ms)`)
})

t.test('L2: parts stay in their process; a part in L1 that cannot answer looks in L2; a POST\'s new representation outlives its own purge', { skip }, async (t) => {
  const redis = await startRedis(t)
  const origin = await ScriptedOrigin.start()
  t.teardown(() => origin.close())
  const l2 = { type: 'redis', url: redis.url }
  const a = await startCachingProxy(origin, { l2 }, t)
  // Another maxSize: another L1 store, as another process would have (one per route and size).
  const b = await startCachingProxy(origin, { l2, maxSize: 50_000_000 }, t)
  const host = `127.0.0.1:${a.port}`
  const key = `outrider:cache:u:${host}`
  const whole = '0123456789'
  const path = uniquePath('l2-part')
  origin.on(path, (req) => {
    const m = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers.range ?? ''))
    return m === null
      ? { headers: { 'cache-control': 'max-age=100' }, body: whole }
      : { status: 206, headers: { 'cache-control': 'max-age=100', 'content-range': `bytes ${m[1]}-${m[2]}/10` }, body: whole.slice(Number(m[1]), Number(m[2]) + 1) }
  })
  const viaB = async (headers: Record<string, string>): Promise<{ cache: unknown, body: string }> => {
    const r = await request(`${b.url}${path}`, { headers: { host, ...headers } })
    return { cache: r.headers['x-cache'], body: await r.body.text() }
  }
  t.same(await viaB({ range: 'bytes=0-1' }), { cache: 'MISS', body: '01' })
  t.same(await viaB({ range: 'bytes=0-1' }), { cache: 'HIT', body: '01' }, 'b keeps the part in L1')
  await sleep(100)
  t.equal(Number(await redis.command('EXISTS', `${key}${path}`)), 0, 'and not in Redis')
  await get(a, path)
  t.ok(await eventually(async () => Number(await redis.command('EXISTS', `${key}${path}`)) === 1), 'a stored the complete response in Redis')
  t.same(await viaB({ range: 'bytes=5-6' }), { cache: 'HIT', body: '56' }, 'b\'s part cannot answer: the complete response from L2 does')
  t.equal(origin.hits(path), 2)
  t.same(await viaB({}), { cache: 'HIT', body: whole })

  // And a request without Range, where L1 holds only a part, asks L2 too.
  const second = uniquePath('l2-part-full')
  origin.on(second, (req) => req.headers.range !== undefined
    ? { status: 206, headers: { 'cache-control': 'max-age=100', 'content-range': 'bytes 0-1/10' }, body: '01' }
    : { headers: { 'cache-control': 'max-age=100' }, body: whole })
  await request(`${b.url}${second}`, { headers: { host, range: 'bytes=0-1' } }).then((r) => r.body.text())
  await get(a, second)
  t.ok(await eventually(async () => Number(await redis.command('EXISTS', `${key}${second}`)) === 1))
  const full = await request(`${b.url}${second}`, { headers: { host } })
  t.same([full.headers['x-cache'], await full.body.text()], ['HIT', whole], 'from L2, past b\'s part')
  t.equal(origin.hits(second), 2)

  // A POST answered with its own new representation: stored after the purge it sent.
  const posted = uniquePath('l2-post')
  origin.on(posted, (req, n) => req.method === 'POST'
    ? { headers: { 'content-location': posted, 'cache-control': 'max-age=100' }, body: `posted ${n}` }
    : { headers: { 'cache-control': 'max-age=100' }, body: `got ${n}` })
  await get(a, posted)
  await get(a, posted, {}, 'POST')
  await sleep(200) // the purge broadcast comes back to a
  await redis.command('DEL', `${key}${posted}`)
  const after = await get(a, posted)
  t.same([after.headers['x-cache'], after.body], ['HIT', 'posted 2'], 'still in a\'s L1')
})
