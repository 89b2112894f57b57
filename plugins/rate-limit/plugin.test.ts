import t from 'tap'
import { request } from 'undici'
import { startUpstream, type Upstream } from '../../test/helpers/upstream.ts'
import { startTestProxy, simpleDoc, type TestProxy } from '../../test/helpers/proxy.ts'
import { sign } from '../jwt-auth/fixtures.ts'
import { hashApiKey } from '../api-key/hash.ts'

type Headers = Record<string, string | string[] | undefined>

interface Reply {
  status: number
  headers: Headers
  body: Record<string, unknown>
}

async function setup (t: { teardown (fn: () => unknown): void }, route: Record<string, unknown>): Promise<{ up: Upstream, proxy: TestProxy }> {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url, route), t)
  return { up, proxy }
}

function limited (config: Record<string, unknown>, before: Array<Record<string, unknown>> = []): Record<string, unknown> {
  return { plugins: [...before, { name: 'rate-limit', config }] }
}

async function get (proxy: TestProxy, headers: Record<string, string> = {}, path = '/items'): Promise<Reply> {
  const res = await request(`${proxy.url}${path}`, { headers })
  const text = await res.body.text()
  return { status: res.statusCode, headers: res.headers as Headers, body: text === '' ? {} : JSON.parse(text) as Record<string, unknown> }
}

/** Sends `n` requests one after the other; returns the statuses. */
async function statuses (proxy: TestProxy, n: number, headers: Record<string, string> = {}): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) out.push((await get(proxy, headers)).status)
  return out
}

function retryAfter (r: Reply): number {
  return Number(r.headers['retry-after'])
}

t.test('allows points per window, then 429 with Retry-After, RateLimit fields and a problem body', async (t) => {
  const { up, proxy } = await setup(t, limited({ points: 3, duration: 60 }))
  t.same(await statuses(proxy, 3), [200, 200, 200])
  const r = await get(proxy)
  t.equal(r.status, 429)
  t.equal(r.headers['content-type'], 'application/problem+json')
  t.equal(r.body.code, 'RATE_LIMITED')
  t.equal(r.body.status, 429)
  t.same(r.body['violated-policies'], ['default'], 'draft §5.1 member')
  const wait = retryAfter(r)
  t.ok(Number.isInteger(wait) && wait >= 59 && wait <= 60, `Retry-After is delay-seconds to the window's end (${wait})`)
  t.equal(r.headers['ratelimit-policy'], '"default";q=3;w=60')
  t.equal(r.headers.ratelimit, `"default";r=0;t=${wait}`, 'same moment as Retry-After')
  t.equal(up.seen.length, 3, 'refused requests never reach the upstream')
  t.equal((await get(proxy)).status, 429, 'still refused')

  const allowed = await get(proxy, {}, '/items')
  t.equal(allowed.headers.ratelimit, `"default";r=0;t=${retryAfter(allowed)}`)

  const metrics = await proxy.metrics.registry.metrics()
  t.match(metrics, /outrider_ratelimit_decisions_total\{route="all",decision="allow"\} 3/)
  t.match(metrics, /outrider_ratelimit_decisions_total\{route="all",decision="deny"\} 3/)
})

t.test('headersOnAllowed: the fields on allowed responses too, counting down', async (t) => {
  const { proxy } = await setup(t, limited({ points: 3, duration: '1m', headersOnAllowed: true }))
  const seen: Array<string | string[] | undefined> = []
  for (let i = 0; i < 3; i++) {
    const r = await get(proxy)
    t.equal(r.status, 200)
    t.equal(r.headers['ratelimit-policy'], '"default";q=3;w=60')
    seen.push(r.headers.ratelimit)
  }
  t.match(seen, [/^"default";r=2;t=(59|60)$/, /^"default";r=1;t=(59|60)$/, /^"default";r=0;t=(59|60)$/])
  const refused = await get(proxy)
  t.equal(refused.status, 429)
  t.equal(refused.headers.ratelimit, `"default";r=0;t=${retryAfter(refused)}`, 'one RateLimit field, not two')
})

t.test('allowed responses carry no RateLimit fields by default', async (t) => {
  const { proxy } = await setup(t, limited({ points: 3, duration: 60 }))
  const r = await get(proxy)
  t.equal(r.status, 200)
  t.equal(r.headers.ratelimit, undefined)
  t.equal(r.headers['ratelimit-policy'], undefined)
})

t.test('the upstream\'s own RateLimit fields are kept and ours added to the list', async (t) => {
  const up = await startUpstream((_req, res) => {
    res.writeHead(200, { ratelimit: '"origin";r=50;t=30', 'ratelimit-policy': '"origin";q=100;w=60' })
    res.end('{}')
  })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url, limited({ points: 5, duration: 10, headersOnAllowed: true })), t)
  const res = await request(proxy.url)
  await res.body.dump()
  // A list may be split over several field lines (RFC 9651 §3.1; draft §3, §4).
  t.match(res.headers.ratelimit, ['"origin";r=50;t=30', /^"default";r=4;t=(9|10)$/])
  t.same(res.headers['ratelimit-policy'], ['"origin";q=100;w=60', '"default";q=5;w=10'])
})

t.test('several limits: all must allow; the one refusing is named', async (t) => {
  const { proxy } = await setup(t, limited({ limits: [{ points: 5, duration: 60 }, { points: 3, duration: '1h' }], headersOnAllowed: true }))
  const first = await get(proxy)
  t.equal(first.headers['ratelimit-policy'], '"1m";q=5;w=60, "1h";q=3;w=3600')
  t.match(first.headers.ratelimit, /^"1h";r=2;t=3(59\d|600)$/, 'the limit closest to exhaustion')
  t.same(await statuses(proxy, 2), [200, 200])
  const r = await get(proxy)
  t.equal(r.status, 429)
  t.same(r.body['violated-policies'], ['1h'])
  t.ok(retryAfter(r) > 3500, 'waits for the hour')
  t.match(r.headers.ratelimit, /^"1h";r=0;t=3\d{3}$/)
})

t.test('a request one limit refuses is not charged to the others', async (t) => {
  // Two routes in one scope share the counter of their common 1-day window.
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy({
    clusters: [{ name: 'up', endpoints: [{ url: up.url }] }],
    routes: [
      { name: 'burst', match: { pathPrefix: '/burst' }, cluster: 'up', plugins: [{ name: 'rate-limit', config: { scope: 'acct', limits: [{ points: 2, duration: '1h' }, { points: 5, duration: '1d' }] } }] },
      { name: 'daily', match: { pathPrefix: '/daily' }, cluster: 'up', plugins: [{ name: 'rate-limit', config: { scope: 'acct', limits: [{ points: 5, duration: '1d' }] } }] },
    ],
  }, t)
  const burst: number[] = []
  for (let i = 0; i < 4; i++) burst.push((await get(proxy, {}, '/burst')).status)
  t.same(burst, [200, 200, 429, 429], 'the hourly limit refuses')
  const daily: number[] = []
  for (let i = 0; i < 4; i++) daily.push((await get(proxy, {}, '/daily')).status)
  t.same(daily, [200, 200, 200, 429], 'the day counted the 2 served requests, not the 2 refused ones')
})

t.test('a request a longer window refuses is given back to the shorter ones', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy({
    clusters: [{ name: 'up', endpoints: [{ url: up.url }] }],
    routes: [
      { name: 'daily', match: { pathPrefix: '/daily' }, cluster: 'up', plugins: [{ name: 'rate-limit', config: { scope: 'acct', limits: [{ points: 1, duration: '1d' }, { points: 3, duration: '1h' }] } }] },
      { name: 'hourly', match: { pathPrefix: '/hourly' }, cluster: 'up', plugins: [{ name: 'rate-limit', config: { scope: 'acct', limits: [{ points: 3, duration: '1h' }] } }] },
    ],
  }, t)
  const daily: number[] = []
  for (let i = 0; i < 3; i++) daily.push((await get(proxy, {}, '/daily')).status)
  t.same(daily, [200, 429, 429], 'the day refuses')
  const hourly: number[] = []
  for (let i = 0; i < 3; i++) hourly.push((await get(proxy, {}, '/hourly')).status)
  t.same(hourly, [200, 200, 429], 'the hour kept 1 request, the served one')
})

t.test('keys by header: one counter per value, the address when absent', async (t) => {
  const { proxy } = await setup(t, limited({ points: 2, duration: 60, key: { by: 'header', name: 'X-User' } }))
  t.same(await statuses(proxy, 3, { 'x-user': 'alice' }), [200, 200, 429])
  t.same(await statuses(proxy, 3, { 'x-user': 'bob' }), [200, 200, 429], 'bob has his own counter')
  t.same(await statuses(proxy, 3), [200, 200, 429], 'no header: counted by client address')
  t.same(await statuses(proxy, 1, { 'x-user': 'carol' }), [200])
})

t.test('the memory store keeps maxKeys clients per counter; one forgotten starts a new window', async (t) => {
  const { proxy } = await setup(t, limited({ points: 1, duration: 60, key: { by: 'header', name: 'x-client' }, store: { type: 'memory', maxKeys: 2 } }))
  t.same(await statuses(proxy, 2, { 'x-client': 'c1' }), [200, 429])
  t.same(await statuses(proxy, 2, { 'x-client': 'c2' }), [200, 429])
  t.same(await statuses(proxy, 1, { 'x-client': 'c3' }), [200], 'c1, the least recent, is forgotten')
  t.same(await statuses(proxy, 1, { 'x-client': 'c2' }), [429], 'c2 is still counted')
  t.same(await statuses(proxy, 2, { 'x-client': 'c1' }), [200, 429], 'c1 counts from zero again')
})

t.test('keys by client address: X-Forwarded-For only from trusted proxies', async (t) => {
  await t.test('no trusted proxy: a forged X-Forwarded-For does not buy a new counter', async (t) => {
    const { proxy } = await setup(t, limited({ points: 2, duration: 60 }))
    const seen = []
    for (const xff of ['198.51.100.1', '198.51.100.2', '198.51.100.3']) seen.push((await get(proxy, { 'x-forwarded-for': xff })).status)
    t.same(seen, [200, 200, 429])
  })

  await t.test('behind a trusted proxy: the client it names, never what the client wrote before it', async (t) => {
    // The test client plays the load balancer at 127.0.0.1.
    const { proxy } = await setup(t, limited({ points: 2, duration: 60, trustedProxies: ['127.0.0.0/8'] }))
    t.same(await statuses(proxy, 3, { 'x-forwarded-for': '198.51.100.1' }), [200, 200, 429])
    t.same(await statuses(proxy, 2, { 'x-forwarded-for': '198.51.100.2' }), [200, 200], 'another client, another counter')
    const spoofs = []
    for (const forged of ['6.6.6.6', '7.7.7.7', '127.0.0.9']) spoofs.push((await get(proxy, { 'x-forwarded-for': `${forged}, 198.51.100.2` })).status)
    t.same(spoofs, [429, 429, 429], 'addresses the client prepends are ignored')
  })

  await t.test('a peer outside trustedProxies cannot use the header', async (t) => {
    const { proxy } = await setup(t, limited({ points: 2, duration: 60, trustedProxies: ['10.0.0.0/8'] }))
    const seen = []
    for (const xff of ['198.51.100.1', '198.51.100.2', '10.0.0.1']) seen.push((await get(proxy, { 'x-forwarded-for': xff })).status)
    t.same(seen, [200, 200, 429])
  })
})

const READER = 'rk_3f9c2a7e6b1d4058a9e0c7b2d1f4e8a6'
const WRITER = 'wk_8b1e4d2c9f0a4e7b8c3d6a1f2e9b0c47'
const apiKey = { name: 'api-key', config: { keys: [{ id: 'reader', hash: hashApiKey(READER) }, { id: 'writer', hash: hashApiKey(WRITER) }] } }

t.test('keys by identity from the api-key plugin before it on the route', async (t) => {
  const { up, proxy } = await setup(t, limited({ points: 2, duration: 60, key: 'identity' }, [apiKey]))
  t.same(await statuses(proxy, 3, { 'x-api-key': READER }), [200, 200, 429])
  t.same(await statuses(proxy, 2, { 'x-api-key': WRITER }), [200, 200], 'the other consumer is unaffected')
  t.equal((await get(proxy)).status, 401, 'no key: api-key answers first')
  t.equal(up.seen.length, 4)
})

t.test('identity falls back to the client address, or skips, when no plugin set one', async (t) => {
  const { proxy } = await setup(t, limited({ points: 1, duration: 60, key: 'identity' }))
  t.same(await statuses(proxy, 2), [200, 429])
  const { proxy: open } = await setup(t, limited({ points: 1, duration: 60, key: { by: 'identity', missing: 'skip' } }))
  t.same(await statuses(open, 3), [200, 200, 200])
})

t.test('keys by a JWT claim from jwt-auth', async (t) => {
  const secret = 'a-long-random-secret-of-32-bytes!'
  const jwt = { name: 'jwt-auth', config: { keys: [{ type: 'secret', secret }], algorithms: ['HS256'] } }
  const { proxy } = await setup(t, limited({ points: 2, duration: 60, key: { by: 'claim', claim: 'org' } }, [jwt]))
  const token = (sub: string, org: string): Promise<string> => sign({ alg: 'HS256', privateKey: Buffer.from(secret) }, { sub, org })
  t.same(await statuses(proxy, 1, { authorization: `Bearer ${await token('u1', 'acme')}` }), [200])
  t.same(await statuses(proxy, 2, { authorization: `Bearer ${await token('u2', 'acme')}` }), [200, 429], 'two users of one org share its counter')
  t.same(await statuses(proxy, 1, { authorization: `Bearer ${await token('u3', 'globex')}` }), [200])
})

t.test('keys by route and composite keys', async (t) => {
  const { proxy } = await setup(t, limited({ points: 2, duration: 60, key: 'route', trustedProxies: ['127.0.0.1'] }))
  const seen = []
  for (const xff of ['198.51.100.1', '198.51.100.2', '198.51.100.3']) seen.push((await get(proxy, { 'x-forwarded-for': xff })).status)
  t.same(seen, [200, 200, 429], 'one counter for the whole route')

  const { proxy: composite } = await setup(t, limited({ points: 1, duration: 60, key: ['identity', { by: 'header', name: 'x-region' }] }, [apiKey]))
  t.equal((await get(composite, { 'x-api-key': READER, 'x-region': 'eu' })).status, 200)
  t.equal((await get(composite, { 'x-api-key': READER, 'x-region': 'us' })).status, 200, 'same consumer, other region')
  t.equal((await get(composite, { 'x-api-key': WRITER, 'x-region': 'eu' })).status, 200, 'other consumer, same region')
  t.equal((await get(composite, { 'x-api-key': READER, 'x-region': 'eu' })).status, 429)
})

t.test('overrides: other limits for some consumers, the first match wins', async (t) => {
  const { proxy } = await setup(t, limited({
    points: 1,
    duration: 60,
    key: 'identity',
    headersOnAllowed: true,
    overrides: [
      { match: { identity: 'writer' }, limits: [{ points: 3, duration: 60, name: 'partner' }] },
      { match: { header: { name: 'x-plan', value: 'gold' } }, limits: [{ points: 2, duration: 60 }] },
    ],
  }, [apiKey]))
  t.same(await statuses(proxy, 2, { 'x-api-key': READER }), [200, 429])
  const w = await get(proxy, { 'x-api-key': WRITER, 'x-plan': 'gold' })
  t.equal(w.headers['ratelimit-policy'], '"partner";q=3;w=60', 'the consumer sees its own policy')
  t.same(await statuses(proxy, 3, { 'x-api-key': WRITER, 'x-plan': 'gold' }), [200, 200, 429], 'identity matched first')
  const { proxy: byHeader } = await setup(t, limited({ points: 1, duration: 60, overrides: [{ match: { header: { name: 'x-plan', value: 'gold' } }, limits: [{ points: 2, duration: 60 }] }] }))
  t.same(await statuses(byHeader, 3, { 'x-plan': 'gold' }), [200, 200, 429], 'an override with a higher limit on the same counter')
})

t.test('routes count apart unless they share a scope', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const route = (name: string, config: Record<string, unknown>): Record<string, unknown> => ({ name, match: { pathPrefix: `/${name}` }, cluster: 'up', plugins: [{ name: 'rate-limit', config }] })
  const proxy = await startTestProxy({
    clusters: [{ name: 'up', endpoints: [{ url: up.url }] }],
    routes: [
      route('a', { points: 1, duration: 60 }),
      route('b', { points: 1, duration: 60 }),
      route('c', { points: 1, duration: 60, scope: 'a' }),
      route('d', { points: 1, duration: 60, scope: 'a' }),
    ],
  }, t)
  t.equal((await get(proxy, {}, '/a')).status, 200)
  t.equal((await get(proxy, {}, '/b')).status, 200, 'b has its own counter')
  t.equal((await get(proxy, {}, '/c')).status, 200, 'a route\'s own counters are not a named scope')
  t.equal((await get(proxy, {}, '/d')).status, 429, 'd counts in the scope c names')
})

t.test('two rate-limit plugins of one route count apart', async (t) => {
  // No auth plugin: the identity is missing, so both key the request by its address.
  const { proxy } = await setup(t, { plugins: [{ name: 'rate-limit', config: { key: 'identity', points: 4, duration: 60 } }, { name: 'rate-limit', config: { key: 'ip', points: 4, duration: 60 } }] })
  t.same(await statuses(proxy, 5), [200, 200, 200, 200, 429], 'each counts a request once')
  const key = { by: 'header', name: 'x-client' }
  const { proxy: same } = await setup(t, { plugins: [{ name: 'rate-limit', config: { key, points: 4, duration: 60 } }, { name: 'rate-limit', config: { key, points: 4, duration: 60, scope: 'second' } }] })
  t.same(await statuses(same, 5, { 'x-client': 'c1' }), [200, 200, 200, 200, 429], 'the same key apart with a scope')
})

t.test('a reload keeps the counts', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const doc = simpleDoc(up.url, limited({ points: 2, duration: 60 }))
  const proxy = await startTestProxy(doc, t)
  t.same(await statuses(proxy, 2), [200, 200])
  await proxy.reload(doc)
  t.equal((await get(proxy)).status, 429, 'a config push is no fresh window')
  // The window has counted 3 requests, the refused one included.
  await proxy.reload(simpleDoc(up.url, limited({ points: 4, duration: 60 })))
  t.equal((await get(proxy)).status, 200, 'a raised limit applies to the same count')
  t.equal((await get(proxy)).status, 429)
})
