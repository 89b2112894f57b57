import t from 'tap'
import { request } from 'undici'
import { ScriptedOrigin, get, httpDate, sleep, startCachingProxy, uniquePath } from './test-origin.ts'
import type { TestProxy } from '../../test/helpers/proxy.ts'

let origin: ScriptedOrigin
let proxy: TestProxy

t.before(async () => {
  origin = await ScriptedOrigin.start()
  proxy = await startCachingProxy(origin, { tagHeader: 'cache-tag' })
})
t.teardown(async () => { await proxy.shutdown(); await origin.close() })

/** Two requests; was the second answered by the cache? */
async function reused (headers: Record<string, string | string[]>, opts: { status?: number, req?: Record<string, string>, req2?: Record<string, string>, pause?: number } = {}): Promise<boolean> {
  const path = uniquePath('reuse')
  origin.on(path, () => ({ status: opts.status ?? 200, headers }))
  await get(proxy, path, opts.req)
  if (opts.pause !== undefined) await sleep(opts.pause)
  await get(proxy, path, opts.req2 ?? opts.req)
  return origin.hits(path) === 1
}

t.test('freshness: explicit lifetimes are honoured, absent ones are not invented', async (t) => {
  const cases: Array<[string, Record<string, string | string[]>, boolean, number?]> = [
    ['max-age', { 'cache-control': 'max-age=100' }, true],
    ['s-maxage wins over max-age=0', { 'cache-control': 'max-age=0, s-maxage=100' }, true],
    ['max-age=0', { 'cache-control': 'max-age=0' }, false],
    ['Expires in the future', { expires: httpDate(100), date: httpDate() }, true],
    ['Expires in the past', { expires: httpDate(-100), date: httpDate() }, false],
    ['Expires: 0 means expired', { expires: '0' }, false],
    ['invalid Expires means expired', { expires: 'soon' }, false],
    ['max-age beats Expires', { 'cache-control': 'max-age=100', expires: httpDate(-100) }, true],
    ['no freshness and no Last-Modified: not reused', {}, false],
    ['heuristic from Last-Modified', { 'last-modified': httpDate(-100_000), date: httpDate() }, true],
    ['no-store', { 'cache-control': 'max-age=100, no-store' }, false],
    ['private', { 'cache-control': 'max-age=100, private' }, false],
    ['no-cache needs validation', { 'cache-control': 'max-age=100, no-cache' }, false],
    ['quoted max-age', { 'cache-control': 'max-age="100"' }, true],
    ['upper-case directive', { 'cache-control': 'MAX-AGE=100' }, true],
    ['max-age with a fraction is invalid', { 'cache-control': 'max-age=1.5' }, false],
    ['negative max-age is invalid', { 'cache-control': 'max-age=-100' }, false],
    ['max-age past the 2^31 cap', { 'cache-control': 'max-age=99999999999999999999' }, true],
    ['conflicting max-age: stale', { 'cache-control': ['max-age=100', 'max-age=0'] }, false],
    ['Age beyond max-age: stale', { 'cache-control': 'max-age=100', age: '200' }, false],
    ['invalid Age ignored', { 'cache-control': 'max-age=100', age: 'abc' }, true],
    ['Vary: * never reused', { 'cache-control': 'max-age=100', vary: '*' }, false],
    ['Set-Cookie bypasses by default', { 'cache-control': 'max-age=100', 'set-cookie': 'a=b' }, false],
  ]
  for (const [name, headers, expected] of cases) t.equal(await reused(headers), expected, name)
})

t.test('heuristic freshness only for cacheable-by-default statuses', async (t) => {
  t.equal(await reused({ 'last-modified': httpDate(-100_000) }, { status: 404 }), true, '404 heuristically cacheable')
  t.equal(await reused({ 'last-modified': httpDate(-100_000) }, { status: 302 }), false, '302 is not')
  t.equal(await reused({ 'cache-control': 'max-age=100' }, { status: 302 }), true, '302 with max-age is')
  t.equal(await reused({ 'cache-control': 'max-age=100' }, { status: 500 }), true, 'any final status with explicit freshness')
})

t.test('Age is computed and sent on hits', async (t) => {
  const path = uniquePath('age')
  origin.on(path, () => ({ headers: { 'cache-control': 'max-age=100', age: '30', date: httpDate() } }))
  const first = await get(proxy, path)
  t.equal(first.headers['x-cache'], 'MISS')
  const second = await get(proxy, path)
  t.equal(second.headers['x-cache'], 'HIT')
  t.ok(Number(second.headers.age) >= 30, `Age ${String(second.headers.age)} includes the upstream's`)
  t.equal(second.body, first.body)
})

t.test('request directives', async (t) => {
  const h = { 'cache-control': 'max-age=100' }
  t.equal(await reused(h, { req2: { 'cache-control': 'no-cache' } }), false, 'no-cache goes upstream')
  t.equal(await reused(h, { req2: { pragma: 'no-cache' } }), false, 'Pragma: no-cache without Cache-Control')
  t.equal(await reused(h, { req2: { 'cache-control': 'max-age=0' } }), false, 'max-age=0')
  t.equal(await reused({ 'cache-control': 'max-age=100', age: '50' }, { req2: { 'cache-control': 'max-age=10' } }), false, 'older than request max-age')
  t.equal(await reused({ 'cache-control': 'max-age=100', age: '95' }, { req2: { 'cache-control': 'min-fresh=10' } }), false, 'min-fresh')
  t.equal(await reused({ 'cache-control': 'max-age=1', age: '30' }, { req2: { 'cache-control': 'max-stale=100' } }), true, 'max-stale accepts stale')
  t.equal(await reused({ 'cache-control': 'max-age=1, must-revalidate', age: '30' }, { req2: { 'cache-control': 'max-stale=100' } }), false, 'must-revalidate beats max-stale')
  t.equal(await reused(h, { req: { 'cache-control': 'no-store' } }), false, 'request no-store: not stored')

  const path = uniquePath('oic')
  origin.on(path, () => ({ headers: h }))
  const miss = await get(proxy, path, { 'cache-control': 'only-if-cached' })
  t.equal(miss.status, 504, 'only-if-cached with nothing stored')
  t.equal(origin.hits(path), 0)
  await get(proxy, path)
  const hit = await get(proxy, path, { 'cache-control': 'only-if-cached' })
  t.equal(hit.status, 200)
  t.equal(origin.hits(path), 1)
})

t.test('Authorization: shared only when the origin says so', async (t) => {
  const auth = { authorization: 'Bearer x' }
  t.equal(await reused({ 'cache-control': 'max-age=100' }, { req: auth }), false)
  t.equal(await reused({ 'cache-control': 'max-age=100, public' }, { req: auth }), true)
  t.equal(await reused({ 'cache-control': 's-maxage=100' }, { req: auth }), true)
  t.equal(await reused({ 'cache-control': 'max-age=100, must-revalidate' }, { req: auth }), true)
})

t.test('Vary selects variants', async (t) => {
  const path = uniquePath('vary')
  origin.on(path, (req) => ({ headers: { 'cache-control': 'max-age=100', vary: 'Accept-Language' }, body: `lang ${req.headers['accept-language'] ?? 'none'}` }))
  const en = await get(proxy, path, { 'accept-language': 'en' })
  const fr = await get(proxy, path, { 'accept-language': 'fr' })
  const en2 = await get(proxy, path, { 'accept-language': 'en' })
  const none = await get(proxy, path)
  const fr2 = await get(proxy, path, { 'accept-language': 'fr' })
  t.equal(en.body, 'lang en')
  t.equal(fr.body, 'lang fr')
  t.equal(en2.body, 'lang en')
  t.equal(en2.headers['x-cache'], 'HIT')
  t.equal(none.body, 'lang none')
  t.equal(fr2.headers['x-cache'], 'HIT')
  t.equal(origin.hits(path), 3, 'one upstream request per variant')
  const spelled = await get(proxy, path, { 'accept-language': 'EN' })
  t.equal(spelled.headers['x-cache'], 'HIT', 'language tags match case-insensitively')
  const reordered = await get(proxy, path, { 'accept-language': 'fr, en' })
  t.equal(reordered.headers['x-cache'], 'MISS', 'their order is kept: it can mean priority')
})

t.test('Accept-Encoding variants are matched by the coding they select', async (t) => {
  const path = uniquePath('vary-ae')
  origin.on(path, () => ({ headers: { 'cache-control': 'max-age=100', vary: 'accept-encoding' } }))
  await get(proxy, path, { 'accept-encoding': 'gzip, deflate' })
  const other = await get(proxy, path, { 'accept-encoding': 'deflate,gzip' })
  t.equal(other.headers['x-cache'], 'HIT')
  t.equal(origin.hits(path), 1)
})

t.test('validation: stale entries are revalidated and a 304 refreshes them', async (t) => {
  const path = uniquePath('etag')
  origin.on(path, (req, n) => {
    if (req.headers['if-none-match'] === '"v1"') return { status: 304, headers: { etag: '"v1"', 'cache-control': 'max-age=100', 'x-version': String(n) } }
    return { headers: { etag: '"v1"', 'cache-control': 'max-age=0', 'x-version': String(n) }, body: 'payload' }
  })
  await get(proxy, path)
  const second = await get(proxy, path)
  t.equal(second.status, 200)
  t.equal(second.body, 'payload')
  t.equal(second.headers['x-cache'], 'REVALIDATED')
  t.equal(second.headers['x-version'], '2', 'stored headers updated from the 304')
  t.equal(origin.requests.at(-1)?.headers['if-none-match'], '"v1"')
  const third = await get(proxy, path)
  t.equal(third.headers['x-cache'], 'HIT', 'fresh again after the 304 said max-age=100')
  t.equal(origin.hits(path), 2)
})

t.test('a 304 for another representation updates nothing and never reaches an unconditional client', async (t) => {
  // The origin changed representation, yet answers our validator with a 304
  // carrying the new strong ETag (RFC 9111 §4.3.4: it matches no stored
  // response). The client asked plainly, so it gets the full new response.
  const path = uniquePath('etag-moved')
  let current = '"old"'
  origin.on(path, (req) => req.headers['if-none-match'] !== undefined && req.headers['if-none-match'] !== '"mine"'
    ? { status: 304, headers: { etag: current, 'cache-control': 'max-age=100' } }
    : req.headers['if-none-match'] === current
      ? { status: 304, headers: { etag: current } }
      : { headers: { etag: current, 'cache-control': current === '"old"' ? 'max-age=0' : 'max-age=100' }, body: `body ${current}` })
  await get(proxy, path)
  current = '"new"'
  const plain = await get(proxy, path)
  t.equal(plain.status, 200, 'a full response, not the 304')
  t.equal(plain.body, 'body "new"')
  t.equal(plain.headers.etag, '"new"')
  t.equal(plain.headers['x-cache'], 'MISS')
  t.equal(origin.requests.at(-2)?.headers['if-none-match'], '"old"', 'revalidated with the stored validator first')
  t.equal(origin.requests.at(-1)?.headers['if-none-match'], undefined, 'then asked again as the client did: unconditionally')
  const hit = await get(proxy, path)
  t.equal(hit.headers['x-cache'], 'HIT', 'the new representation is stored')
  t.equal(hit.body, 'body "new"')
  t.equal(origin.hits(path), 3)

  // A client with a conditional of its own gets the origin's answer to it.
  const other = uniquePath('etag-moved-conditional')
  current = '"old"'
  origin.on(other, (req) => req.headers['if-none-match'] === '"old"'
    ? { status: 304, headers: { etag: '"mine"', 'cache-control': 'max-age=100' } }
    : req.headers['if-none-match'] === '"mine"'
      ? { status: 304, headers: { etag: '"mine"' } }
      : { headers: { etag: '"old"', 'cache-control': 'max-age=0' }, body: 'old' })
  await get(proxy, other)
  const conditional = await get(proxy, other, { 'if-none-match': '"mine"' })
  t.equal(conditional.status, 304, 'the origin says the client\'s copy is current')
  t.equal(conditional.headers.etag, '"mine"')
  t.equal(origin.requests.at(-1)?.headers['if-none-match'], '"mine"', 'asked with the client\'s own validator')
})

t.test('a 304 with a weak ETag updates the stored response it names weakly', async (t) => {
  // Origins that compress on the fly often weaken their tags (W/"x" for "x").
  const path = uniquePath('etag-weak')
  origin.on(path, (req) => req.headers['if-none-match'] === '"x"'
    ? { status: 304, headers: { etag: 'W/"x"', 'cache-control': 'max-age=100' } }
    : { headers: { etag: '"x"', 'cache-control': 'max-age=0' }, body: 'x body' })
  await get(proxy, path)
  const second = await get(proxy, path)
  t.same([second.status, second.body, second.headers['x-cache']], [200, 'x body', 'REVALIDATED'])
  t.equal((await get(proxy, path)).headers['x-cache'], 'HIT', 'fresh again from the 304\'s max-age')
  t.equal(origin.hits(path), 2)

  // The other way round, a strong tag never names a stored weak one.
  const strong = uniquePath('etag-strong-for-weak')
  origin.on(strong, (req) => req.headers['if-none-match'] === 'W/"y"'
    ? { status: 304, headers: { etag: '"y"', 'cache-control': 'max-age=100' } }
    : { headers: { etag: 'W/"y"', 'cache-control': 'max-age=0' }, body: 'y body' })
  await get(proxy, strong)
  const again = await get(proxy, strong)
  t.same([again.status, again.body, again.headers['x-cache']], [200, 'y body', 'MISS'], 'asked again as the client did')
  t.equal(origin.hits(strong), 3)
})

t.test('a weak 304 refreshes freshness but never relabels the stored bytes', async (t) => {
  const path = uniquePath('weak-encoding')
  origin.on(path, (req) => req.headers['if-none-match'] === '"z"'
    ? { status: 304, headers: { etag: 'W/"z"', 'cache-control': 'max-age=100', 'content-encoding': 'gzip', 'content-type': 'application/octet-stream' } }
    : { headers: { etag: '"z"', 'cache-control': 'max-age=0', 'content-type': 'text/plain' }, body: 'plain bytes' })
  await get(proxy, path)
  const revalidated = await get(proxy, path)
  t.same([revalidated.headers['x-cache'], revalidated.headers['content-encoding'], revalidated.headers['content-type'], revalidated.body], ['REVALIDATED', undefined, 'text/plain', 'plain bytes'])
  const hit = await get(proxy, path)
  t.same([hit.headers['x-cache'], hit.headers['content-encoding']], ['HIT', undefined], 'fresh from the 304, still identity')
})

t.test('a 304 to a revalidation: its Set-Cookie and private fields go to the client that asked, never into the shared copy', async (t) => {
  const path = uniquePath('reval-cookie')
  origin.on(path, (req) => req.headers['if-none-match'] === '"c1"'
    ? { status: 304, headers: { etag: '"c1"', 'cache-control': 'max-age=100, private="x-user"', 'set-cookie': 'session=BOB', 'x-user': 'bob' } }
    : { headers: { etag: '"c1"', 'cache-control': 'max-age=0' }, body: 'shared' })
  await get(proxy, path)
  const bob = await get(proxy, path)
  t.same([bob.headers['x-cache'], bob.headers['set-cookie'], bob.headers['x-user'], bob.body], ['REVALIDATED', 'session=BOB', 'bob', 'shared'], 'Bob gets his cookie and his private field')
  const next = await get(proxy, path)
  t.same([next.headers['x-cache'], next.headers['set-cookie'], next.headers['x-user']], ['HIT', undefined, undefined], 'the next client gets neither')

  const now = uniquePath('reval-private')
  origin.on(now, (req) => req.headers['if-none-match'] === '"p1"'
    ? { status: 304, headers: { etag: '"p1"', 'cache-control': 'private, max-age=100', 'x-user': 'bob' } }
    : { headers: { etag: '"p1"', 'cache-control': 'max-age=0' }, body: 'was shared' })
  await get(proxy, now)
  const first = await get(proxy, now)
  t.same([first.headers['x-cache'], first.headers['x-user'], first.body], ['REVALIDATED', 'bob', 'was shared'], 'the client that asked gets the answer')
  const after = await get(proxy, now)
  t.equal(after.headers['x-cache'], 'MISS', 'a response now private is not kept for others')
  t.equal(after.headers['x-user'], undefined)
})

t.test('two revalidations at once: one client\'s private 304 never reaches the other', async (t) => {
  const path = uniquePath('reval-race')
  origin.on(path, (req) => {
    if (req.headers['if-none-match'] !== '"r1"') return { headers: { etag: '"r1"', 'cache-control': 'max-age=0' }, body: 'shared' }
    return req.headers['x-who'] === 'bob'
      ? { status: 304, headers: { etag: '"r1"', 'cache-control': 'private, max-age=100', 'x-user': 'bob' } }
      : { status: 304, headers: { etag: '"r1"', 'cache-control': 'max-age=100' }, delayMs: 250 }
  })
  await get(proxy, path)
  const alice = get(proxy, path, { 'x-who': 'alice' })
  await sleep(50)
  const bob = await get(proxy, path, { 'x-who': 'bob' })
  t.equal(bob.headers['x-user'], 'bob')
  const a = await alice
  t.same([a.headers['x-cache'], a.headers['x-user'], a.body], ['REVALIDATED', undefined, 'shared'], 'Alice gets nothing of Bob\'s')
})

t.test('a purge while a revalidation is on its way is not undone by its 304', async (t) => {
  const path = uniquePath('purge-during-revalidation')
  origin.on(path, (req) => req.headers['if-none-match'] === '"g1"'
    ? { status: 304, headers: { etag: '"g1"', 'cache-control': 'max-age=100' }, delayMs: 300 }
    : { headers: { etag: '"g1"', 'cache-control': 'max-age=0' }, body: 'purged by the operator' })
  await get(proxy, path)
  const revalidation = get(proxy, path)
  await sleep(100)
  const purge = await request(`${proxy.adminUrl}/cache/purge`, { method: 'POST', body: JSON.stringify({ url: `127.0.0.1:${proxy.port}${path}` }) })
  t.equal(purge.statusCode, 200)
  await purge.body.text()
  t.equal((await revalidation).body, 'purged by the operator', 'the client that asked is still answered')
  t.equal((await get(proxy, path, { 'cache-control': 'only-if-cached' })).status, 504, 'and the purge stands')
})

t.test('an entry evicted for room while its revalidation is on its way is stored again by the 304', async (t) => {
  const small = await startCachingProxy(origin, { maxSize: 6000 }, t)
  const path = uniquePath('evicted-during-revalidation')
  origin.on(path, (req) => req.headers['if-none-match'] === '"e1"'
    ? { status: 304, headers: { etag: '"e1"', 'cache-control': 'max-age=100' }, delayMs: 300 }
    : { headers: { etag: '"e1"', 'cache-control': 'max-age=0' }, body: 'kept after all' })
  const filler = uniquePath('filler')
  origin.on(filler, () => ({ headers: { 'cache-control': 'max-age=100' }, body: 'x'.repeat(4000) }))
  await get(small, path)
  const revalidation = get(small, path)
  await sleep(100)
  t.equal((await get(small, filler)).status, 200)
  t.equal((await get(small, filler, { 'cache-control': 'only-if-cached' })).status, 200, 'the filler is stored')
  t.equal((await get(small, `${filler}?again`, {})).status, 200)
  t.equal((await revalidation).headers['x-cache'], 'REVALIDATED')
  const after = await get(small, path, { 'cache-control': 'only-if-cached' })
  t.same([after.status, after.body], [200, 'kept after all'], 'the refreshed response is in the cache again')
  t.equal(origin.hits(path), 2)
})

t.test('validation with Last-Modified', async (t) => {
  const path = uniquePath('lm')
  const lm = httpDate(-1000)
  origin.on(path, (req) => req.headers['if-modified-since'] === lm
    ? { status: 304, headers: { 'last-modified': lm } }
    : { headers: { 'last-modified': lm, 'cache-control': 'no-cache' }, body: 'lm body' })
  await get(proxy, path)
  const second = await get(proxy, path)
  t.equal(second.body, 'lm body')
  t.equal(second.headers['x-cache'], 'REVALIDATED')
  t.equal(origin.hits(path), 2)
})

t.test('client conditionals are answered 304 by the cache', async (t) => {
  const path = uniquePath('inm')
  const lm = httpDate(-1000)
  origin.on(path, () => ({ headers: { etag: 'W/"abc"', 'last-modified': lm, 'cache-control': 'max-age=100' } }))
  await get(proxy, path)
  const inm = await get(proxy, path, { 'if-none-match': '"x", "abc"' })
  t.equal(inm.status, 304, 'weak comparison')
  t.equal(inm.headers.etag, 'W/"abc"')
  const star = await get(proxy, path, { 'if-none-match': '*' })
  t.equal(star.status, 304)
  const other = await get(proxy, path, { 'if-none-match': '"nope"' })
  t.equal(other.status, 200)
  const ims = await get(proxy, path, { 'if-modified-since': httpDate() })
  t.equal(ims.status, 304)
  const older = await get(proxy, path, { 'if-modified-since': httpDate(-5000) })
  t.equal(older.status, 200)
  t.equal(origin.hits(path), 1)
})

t.test('a client conditional on a stale entry: revalidated with our validator, answered 304', async (t) => {
  const path = uniquePath('inm-stale')
  origin.on(path, (req) => req.headers['if-none-match'] === '"s1"'
    ? { status: 304, headers: { etag: '"s1"', 'cache-control': 'max-age=100' } }
    : { headers: { etag: '"s1"', 'cache-control': 'max-age=0' } })
  await get(proxy, path)
  const r = await get(proxy, path, { 'if-none-match': '"s1"' })
  t.equal(r.status, 304)
  t.equal(r.headers['x-cache'], 'REVALIDATED')
})

t.test('stale-while-revalidate serves stale and refreshes once in the background', async (t) => {
  const path = uniquePath('swr')
  origin.on(path, (_req, n) => ({ headers: { 'cache-control': 'max-age=1, stale-while-revalidate=60', age: '5' }, body: `v${n}` }))
  await get(proxy, path)
  const stale = await get(proxy, path)
  t.equal(stale.headers['x-cache'], 'STALE')
  t.equal(stale.body, 'v1')
  await get(proxy, path)
  for (let i = 0; i < 100 && origin.hits(path) < 2; i++) await sleep(20)
  t.equal(origin.hits(path), 2, 'one background refresh for two stale hits')
  // The refreshed copy came with Age: 5 again, so it is stale at once: still v2 is served.
  for (let i = 0; i < 100; i++) { if ((await get(proxy, path)).body === 'v2') break; await sleep(20) }
  t.pass('the refreshed response replaced the stale one')
})

t.test('stale-if-error hides a failing upstream', async (t) => {
  const path = uniquePath('sie')
  origin.on(path, (_req, n) => n === 1
    ? { headers: { 'cache-control': 'max-age=1, stale-if-error=60', age: '5' }, body: 'good' }
    : { status: 503, body: 'down' })
  await get(proxy, path)
  const r = await get(proxy, path)
  t.equal(r.status, 200)
  t.equal(r.body, 'good')
  t.equal(r.headers['x-cache'], 'STALE')

  const path2 = uniquePath('sie-none')
  origin.on(path2, (_req, n) => n === 1 ? { headers: { 'cache-control': 'max-age=1', age: '5' }, body: 'good' } : { status: 503, body: 'down' })
  await get(proxy, path2)
  t.equal((await get(proxy, path2)).status, 503, 'without stale-if-error the failure goes through')
})

t.test('unsafe methods invalidate the URL and the Location it names', async (t) => {
  const path = uniquePath('inv')
  const other = uniquePath('inv-loc')
  origin.on(path, (req) => req.method === 'POST'
    ? { status: 201, headers: { location: other } }
    : { headers: { 'cache-control': 'max-age=100' } })
  origin.on(other, () => ({ headers: { 'cache-control': 'max-age=100' } }))
  await get(proxy, path)
  await get(proxy, other)
  t.equal((await get(proxy, path)).headers['x-cache'], 'HIT')
  const post = await get(proxy, path, {}, 'POST')
  t.equal(post.status, 201)
  t.equal(post.headers['x-cache'], 'BYPASS')
  t.equal((await get(proxy, path)).headers['x-cache'], 'MISS', 'the URL was invalidated')
  t.equal((await get(proxy, other)).headers['x-cache'], 'MISS', 'the Location was invalidated')

  const failing = uniquePath('inv-fail')
  origin.on(failing, (req) => req.method === 'DELETE' ? { status: 500 } : { headers: { 'cache-control': 'max-age=100' } })
  await get(proxy, failing)
  await get(proxy, failing, {}, 'DELETE')
  t.equal((await get(proxy, failing)).headers['x-cache'], 'HIT', 'an error response invalidates nothing')
})

t.test('a POST answered with its own URL in Content-Location and explicit freshness is stored for GETs (RFC 9110 §9.3.3)', async (t) => {
  const cases: Array<[string, (path: string) => Record<string, string>, boolean]> = [
    ['relative Content-Location, max-age', (path) => ({ 'content-location': path, 'cache-control': 'max-age=100' }), true],
    ['absolute Content-Location, Expires', (path) => ({ 'content-location': `${proxy.url}${path}`, expires: httpDate(100), date: httpDate() }), true],
    ['another URL in Content-Location', (path) => ({ 'content-location': `${path}-other`, 'cache-control': 'max-age=100' }), false],
    ['another host in Content-Location', (path) => ({ 'content-location': `http://elsewhere.example${path}`, 'cache-control': 'max-age=100' }), false],
    ['no Content-Location', () => ({ 'cache-control': 'max-age=100' }), false],
    ['only heuristic freshness', (path) => ({ 'content-location': path, 'last-modified': httpDate(-100_000) }), false],
    ['no-store', (path) => ({ 'content-location': path, 'cache-control': 'max-age=100, no-store' }), false],
  ]
  for (const [name, headers, stored] of cases) {
    const path = uniquePath('post-stored')
    origin.on(path, (req, n) => req.method === 'POST'
      ? { headers: headers(path), body: `posted ${n}` }
      : { headers: { 'cache-control': 'max-age=100' }, body: `got ${n}` })
    const post = await get(proxy, path, { 'content-type': 'text/plain' }, 'POST')
    t.equal(post.headers['x-cache'], 'BYPASS', `${name}: the POST itself went upstream`)
    const after = await get(proxy, path)
    t.same([after.headers['x-cache'], after.body], stored ? ['HIT', 'posted 1'] : ['MISS', 'got 2'], name)
  }
})

t.test('a POST on a route that rewrites the path is not stored: its Content-Location is in the origin\'s URL space', async (t) => {
  const o = await ScriptedOrigin.start()
  const { startTestProxy } = await import('../../test/helpers/proxy.ts')
  const p = await startTestProxy({
    clusters: [{ name: 'up', endpoints: [{ url: o.upstream.url }] }],
    routes: [{ name: 'api', match: { pathPrefix: '/api/' }, rewrite: { pathPrefix: '/api/v2/' }, cluster: 'up', plugins: [{ name: 'cache', config: {} }] }],
  })
  t.teardown(async () => { await p.shutdown(); await o.close() })
  // The origin's own /api/items (v1) is another resource than the client's /api/items (v2 here).
  o.on('/api/v2/items', (req, n) => req.method === 'POST'
    ? { headers: { 'content-location': '/api/items', 'cache-control': 'max-age=100' }, body: 'v1 list' }
    : { headers: { 'cache-control': 'max-age=100' }, body: `v2 list ${n}` })
  await get(p, '/api/items', {}, 'POST')
  const after = await get(p, '/api/items')
  t.same([after.headers['x-cache'], after.body], ['MISS', 'v2 list 2'])
})

t.test('every method is forwarded; PUT and PATCH invalidate', async (t) => {
  const path = uniquePath('put')
  origin.on(path, (req) => ({ headers: req.method === 'GET' ? { 'cache-control': 'max-age=100' } : {} }))
  await get(proxy, path)
  const put = await get(proxy, path, {}, 'PUT')
  t.equal(put.status, 200)
  t.equal((await get(proxy, path)).headers['x-cache'], 'MISS')
  await get(proxy, path, {}, 'PATCH')
  t.equal((await get(proxy, path)).headers['x-cache'], 'MISS')
  t.equal(origin.requests.filter((r) => r.path === path && r.method === 'PATCH').length, 1)
})

t.test('HEAD is answered from a stored GET', async (t) => {
  const path = uniquePath('head')
  origin.on(path, () => ({ headers: { 'cache-control': 'max-age=100' }, body: 'twelve bytes' }))
  await get(proxy, path)
  const head = await get(proxy, path, {}, 'HEAD')
  t.equal(head.status, 200)
  t.equal(head.body, '')
  t.equal(head.headers['content-length'], '12')
  t.equal(head.headers['x-cache'], 'HIT')
  t.equal(origin.hits(path), 1)
})

t.test('request collapsing: 50 concurrent misses make one upstream request', async (t) => {
  const path = uniquePath('collapse')
  origin.on(path, () => ({ headers: { 'cache-control': 'max-age=100' }, body: 'once', delayMs: 100 }))
  const replies = await Promise.all(Array.from({ length: 50 }, async () => get(proxy, path)))
  t.equal(origin.hits(path), 1)
  t.ok(replies.every((r) => r.status === 200 && r.body === 'once'))
})

t.test('collapsed requests go upstream themselves when the first response is not storable', async (t) => {
  const path = uniquePath('collapse-private')
  origin.on(path, (_req, n) => ({ headers: { 'cache-control': 'private' }, body: `p${n}`, delayMs: 50 }))
  const replies = await Promise.all(Array.from({ length: 5 }, async () => get(proxy, path)))
  t.equal(origin.hits(path), 5)
  t.equal(new Set(replies.map((r) => r.body)).size, 5, 'nobody got another client’s private response')
})

t.test('bodies over maxEntrySize stream through and are not stored', async (t) => {
  const o = await ScriptedOrigin.start()
  const p = await startCachingProxy(o, { maxEntrySize: 1000 })
  t.teardown(async () => { await p.shutdown(); await o.close() })
  o.on('/big', () => ({ headers: { 'cache-control': 'max-age=100' }, body: 'x'.repeat(5000) }))
  t.equal((await get(p, '/big')).body.length, 5000)
  t.equal((await get(p, '/big')).headers['x-cache'], 'MISS')
  t.equal(o.hits('/big'), 2)
})

t.test('a 200 to a range request is stored like any complete response', async (t) => {
  const path = uniquePath('range')
  origin.on(path, (req) => ({ headers: { 'cache-control': 'max-age=100', 'x-range-seen': String(req.headers.range) } }))
  const r = await get(proxy, path, { range: 'bytes=0-1' })
  t.equal(r.status, 200, 'the origin ignored the range')
  t.equal(r.headers['x-range-seen'], 'bytes=0-1', 'the range went upstream as the client sent it')
  t.equal(r.headers['x-cache'], 'MISS')
  const again = await get(proxy, path)
  t.equal(again.headers['x-cache'], 'HIT')
  t.equal(again.body, r.body)
  t.equal((await get(proxy, path, { range: 'bytes=0-1' })).status, 206, 'later ranges are cut from it')
  t.equal(origin.hits(path), 1)
})

t.test('a 206 is kept as a part: ranges inside it are served, anything else goes upstream', async (t) => {
  const path = uniquePath('part')
  const whole = '0123456789'
  origin.on(path, (req) => {
    const m = /^bytes=(\d*)-(\d*)$/.exec(String(req.headers.range ?? ''))
    if (m === null) return { headers: { 'cache-control': 'max-age=3600', etag: '"v1"' }, body: whole }
    const first = m[1] === '' ? whole.length - Number(m[2]) : Number(m[1])
    const last = m[1] === '' || m[2] === '' ? whole.length - 1 : Number(m[2])
    return { status: 206, headers: { 'cache-control': 'max-age=3600', etag: '"v1"', 'content-range': `bytes ${first}-${last}/${whole.length}` }, body: whole.slice(first, last + 1) }
  })
  const first = await get(proxy, path, { range: 'bytes=-5' })
  t.equal(first.status, 206)
  t.equal(first.body, '56789')
  t.equal(first.headers['x-cache'], 'MISS')
  const cases: Array<[string, string, string]> = [
    ['bytes=-5', '56789', 'bytes 5-9/10'],
    ['bytes=6-8', '678', 'bytes 6-8/10'],
    ['bytes=6-', '6789', 'bytes 6-9/10'],
    ['bytes=-1', '9', 'bytes 9-9/10'],
    ['bytes=5-5', '5', 'bytes 5-5/10'],
  ]
  for (const [range, body, contentRange] of cases) {
    const r = await get(proxy, path, { range })
    t.same([r.status, r.body, r.headers['content-range'], r.headers['x-cache'], r.headers['content-length']], [206, body, contentRange, 'HIT', String(body.length)], range)
  }
  t.equal((await get(proxy, path, { range: 'bytes=10-' })).status, 416, 'past the known length: unsatisfiable, from the part')
  t.equal(origin.hits(path), 1)

  const outside = await get(proxy, path, { range: 'bytes=2-6' })
  t.same([outside.status, outside.body, outside.headers['x-cache']], [206, '23456', 'MISS'], 'a range reaching outside the part goes upstream')
  t.equal(origin.hits(path), 2)
  t.equal((await get(proxy, path, { range: 'bytes=8-9', 'if-range': '"v0"' })).headers['x-cache'], 'MISS', 'If-Range for another representation: not from the part')
  t.equal(origin.hits(path), 3)

  const full = await get(proxy, path)
  t.same([full.status, full.body, full.headers['x-cache']], [200, whole, 'MISS'], 'a request without Range is never answered from a part')
  t.equal((await get(proxy, path)).headers['x-cache'], 'HIT', 'the complete response replaced the part')
  const cut = await get(proxy, path, { range: 'bytes=0-1' })
  t.same([cut.status, cut.body, cut.headers['x-cache']], [206, '01', 'HIT'])
  t.equal(origin.hits(path), 4)
  await get(proxy, path, { range: 'bytes=0-1', 'cache-control': 'no-cache' })
  t.equal((await get(proxy, path)).headers['x-cache'], 'HIT', 'a part never replaces a stored complete response')
})

t.test('a part never replaces a complete response: not one stored while the part was on its way, not one with another Vary', async (t) => {
  const raced = uniquePath('part-race')
  origin.on(raced, (req) => req.headers.range !== undefined
    ? { status: 206, headers: { 'cache-control': 'max-age=3600', 'content-range': 'bytes 0-1/10' }, body: '01', delayMs: 300 }
    : { headers: { 'cache-control': 'max-age=3600' }, body: '0123456789' })
  const slowPart = get(proxy, raced, { range: 'bytes=0-1' })
  await sleep(50)
  await get(proxy, raced)
  t.equal((await get(proxy, raced)).headers['x-cache'], 'HIT', 'the complete response is stored')
  t.equal((await slowPart).status, 206)
  await sleep(50)
  const after = await get(proxy, raced)
  t.same([after.headers['x-cache'], after.body], ['HIT', '0123456789'], 'the late part did not replace it')

  // nginx's gzip adds Vary only to what it compresses: the 206 comes without.
  const varied = uniquePath('part-vary')
  origin.on(varied, (req) => req.headers.range !== undefined
    ? { status: 206, headers: { 'cache-control': 'max-age=3600', 'content-range': 'bytes 0-1/10' }, body: '01' }
    : { headers: { 'cache-control': 'max-age=3600', vary: 'accept-encoding' }, body: '0123456789' })
  await get(proxy, varied, { 'accept-encoding': 'gzip' })
  await get(proxy, varied, { 'accept-encoding': 'identity', range: 'bytes=0-1' })
  t.equal((await get(proxy, varied, { 'accept-encoding': 'gzip' })).headers['x-cache'], 'HIT', 'the Vary-ed variant stays')
})

t.test('parts: If-Range, only-if-cached, no generated ETag', async (t) => {
  const o = await ScriptedOrigin.start()
  const p = await startCachingProxy(o, { generateEtag: true })
  t.teardown(async () => { await p.shutdown(); await o.close() })
  o.on('/part', () => ({ status: 206, headers: { 'cache-control': 'max-age=3600', 'content-range': 'bytes 0-4/10' }, body: '01234' }))
  await get(p, '/part', { range: 'bytes=0-4' })
  const hit = await get(p, '/part', { range: 'bytes=1-2' })
  t.same([hit.status, hit.body, hit.headers['x-cache']], [206, '12', 'HIT'])
  t.equal(hit.headers.etag, undefined, 'a part gets no ETag of its own')
  t.equal(o.hits('/part'), 1)

  o.on('/tagged', () => ({ status: 206, headers: { 'cache-control': 'max-age=3600', 'content-range': 'bytes 0-4/10', etag: '"t1"' }, body: '01234' }))
  await get(p, '/tagged', { range: 'bytes=0-4' })
  const holds = await get(p, '/tagged', { range: 'bytes=2-3', 'if-range': '"t1"' })
  t.same([holds.status, holds.body, holds.headers['x-cache']], [206, '23', 'HIT'], 'If-Range naming the part\'s tag: served from it')
  t.equal(o.hits('/tagged'), 1)

  const none = await get(p, '/tagged', { range: 'bytes=6-7', 'cache-control': 'only-if-cached' })
  t.same([none.status, none.headers['x-cache']], [504, 'MISS'], 'only-if-cached and a range nothing stored holds: 504, not the origin')
  t.equal(o.hits('/tagged'), 1)
  t.equal((await get(p, '/nothing', { range: 'bytes=0-1', 'cache-control': 'only-if-cached' })).status, 504)
  t.equal(o.hits('/nothing'), 0)
})

t.test('parts that cannot be kept: no known length, several ranges, a body that does not match its Content-Range', async (t) => {
  const cases: Array<[string, Record<string, string>, string]> = [
    ['unknown complete length', { 'content-range': 'bytes 0-4/*' }, '01234'],
    ['body shorter than the range', { 'content-range': 'bytes 4-9/10' }, '01234'],
    ['body longer than the range', { 'content-range': 'bytes 0-1/10' }, '0123'],
    ['range past the length', { 'content-range': 'bytes 0-10/10' }, '01234567890'],
    ['no Content-Range', {}, '01'],
    ['several ranges', { 'content-type': 'multipart/byteranges; boundary=x' }, '--x--'],
  ]
  for (const [name, headers, body] of cases) {
    const path = uniquePath('bad-part')
    origin.on(path, () => ({ status: 206, headers: { 'cache-control': 'max-age=3600', ...headers }, body }))
    await get(proxy, path, { range: 'bytes=0-1' })
    await get(proxy, path, { range: 'bytes=0-1' })
    t.equal(origin.hits(path), 2, name)
  }
})

t.test('private="field" and no-cache="field"', async (t) => {
  const path = uniquePath('fields')
  origin.on(path, () => ({ headers: { 'cache-control': 'max-age=100, private="x-secret", no-cache="x-fresh"', 'x-secret': 's', 'x-fresh': 'f' } }))
  const first = await get(proxy, path)
  t.equal(first.headers['x-secret'], 's', 'the first client still gets everything')
  const hit = await get(proxy, path)
  t.equal(hit.headers['x-cache'], 'HIT')
  t.equal(hit.headers['x-secret'], undefined)
  t.equal(hit.headers['x-fresh'], undefined)
})

t.test('purge by URL, prefix and tag', async (t) => {
  const base = uniquePath('purge')
  const a = `${base}/a`
  const b = `${base}/b`
  const c = `${base}-other`
  for (const p of [a, b, c]) origin.on(p, () => ({ headers: { 'cache-control': 'max-age=100', 'cache-tag': p === c ? 'special, all' : 'all' } }))
  const warm = async (): Promise<void> => { for (const p of [a, b, c]) await get(proxy, p) }
  const hitOf = async (p: string): Promise<boolean> => (await get(proxy, p)).headers['x-cache'] === 'HIT'
  const purge = async (body: unknown): Promise<{ status: number, json: { purged: number } }> => {
    const r = await request(`${proxy.adminUrl}/cache/purge`, { method: 'POST', body: JSON.stringify(body) })
    return { status: r.statusCode, json: await r.body.json() as { purged: number } }
  }
  await warm()
  const host = `127.0.0.1:${proxy.port}`
  const one = await purge({ url: `${host}${a}` })
  t.equal(one.json.purged, 1)
  t.notOk(await hitOf(a))
  t.ok(await hitOf(b))

  const prefix = await purge({ prefix: `${host}${base}/` })
  t.equal(prefix.json.purged, 2)
  t.notOk(await hitOf(b))
  t.ok(await hitOf(c))

  const tag = await purge({ tag: 'special' })
  t.equal(tag.json.purged, 1)
  t.notOk(await hitOf(c))

  t.equal((await purge({ nope: 1 })).status, 400)
})

t.test('metrics: lookups by result and stored bytes', async (t) => {
  const text = await (await request(`${proxy.adminUrl}/metrics`)).body.text()
  t.match(text, /outrider_cache_lookups_total\{route="all",result="hit"\} [1-9]/)
  t.match(text, /outrider_cache_lookups_total\{route="all",result="miss"\} [1-9]/)
  t.match(text, /outrider_cache_stored_bytes\{route="all",layer="l1"\} [1-9]/)
})

t.test('a reload that keeps the route keeps what is stored', async (t) => {
  const o = await ScriptedOrigin.start()
  const doc = { clusters: [{ name: 'up', endpoints: [{ url: o.upstream.url }] }], routes: [{ name: 'kept', match: { pathPrefix: '/' }, cluster: 'up', plugins: [{ name: 'cache', config: {} }] }] }
  const { startTestProxy } = await import('../../test/helpers/proxy.ts')
  const p = await startTestProxy(doc)
  t.teardown(async () => { await p.shutdown(); await o.close() })
  o.on('/k', () => ({ headers: { 'cache-control': 'max-age=100' } }))
  await get(p, '/k')
  await p.reload({ ...doc, limits: { maxBodySize: 12345 } })
  t.equal((await get(p, '/k')).headers['x-cache'], 'HIT')
})

t.test('Age and Expires parsing as the RFCs (and the conformance suites) read them', async (t) => {
  const base = { date: httpDate(), 'cache-control': 'max-age=3600' }
  const ages: Array<[string | string[], boolean]> = [
    ['abc', true], ['-7200', true], ['7200.0', true], ['2147483648', false], ['7200, 0', false], ['0, 7200', true],
    [['7200', '0'], false], [['0', '7200'], true],
  ]
  for (const [age, expected] of ages) t.equal(await reused({ ...base, age }), expected, `Age: ${JSON.stringify(age)}`)
  t.equal(await reused({ date: httpDate(), 'cache-control': 'max-age=10000', age: ['3600', '3600'] }), true, 'two Age lines are not added up')
  const invalid = ['Thu, 18 Aug 2050 02:01:18 UTC', 'Thu, 18 Aug 50 02:01:18 GMT', 'Thu 18 Aug 2050 02:01:18 GMT', 'Thu, 18  Aug  2050 02:01:18 GMT', 'Thu, 18-Aug-2050 02:01:18 GMT', 'Thu, 18 Aug 2050 2:01:18 GMT']
  for (const expires of invalid) t.equal(await reused({ date: httpDate(), expires }), false, `invalid Expires ${expires}`)
  t.equal(await reused({ date: httpDate(), expires: 'Thursday, 18-Aug-50 02:01:18 GMT' }), true, 'RFC 850 form')
  t.equal(await reused({ date: httpDate(), expires: 'Thu Aug 18 02:01:18 2050' }), true, 'asctime form')
  t.equal(await reused({ date: httpDate(), expires: 'THU, 18 AUG 2050 02:01:18 GMT' }), true, 'names in any case')
  t.equal(await reused({ 'cache-control': 'extension="max-age=3600", max-age=1', age: '5' }), false, 'quoted text is not a directive')
  t.equal(await reused({ 'cache-control': 'max-age=003600' }), true, 'leading zeros')
})

t.test('any final status with explicit freshness is stored; must-understand', async (t) => {
  for (const status of [203, 299, 302, 404, 410, 499, 503, 599]) t.equal(await reused({ 'cache-control': 'max-age=3600' }, { status }), true, `status ${status}`)
  t.equal(await reused({ 'cache-control': 'max-age=3600, no-store, must-understand' }, { status: 599 }), false, 'must-understand, unknown status')
  t.equal(await reused({ 'cache-control': 'max-age=3600, no-store, must-understand' }), true, 'must-understand overrides no-store for 200')
  t.equal(await reused({ 'last-modified': httpDate(-86400), 'cache-control': 'public' }, { status: 599 }), true, 'public allows heuristics')
})

t.test('CDN-Cache-Control overrides Cache-Control and Expires when it parses (RFC 9213)', async (t) => {
  t.equal(await reused({ 'cdn-cache-control': 'max-age=3600' }), true)
  t.equal(await reused({ 'cdn-cache-control': 'max-age=10000', 'cache-control': 'no-store' }), true, 'CDN-CC fresh beats CC no-store')
  t.equal(await reused({ 'cdn-cache-control': 'no-store', 'cache-control': 'max-age=10000' }), false)
  t.equal(await reused({ 'cdn-cache-control': 'max-age=0', expires: httpDate(10000) }), false, 'Expires is ignored too')
  t.equal(await reused({ 'cdn-cache-control': 'max-age=10000, &&&&&', 'cache-control': 'no-store' }), false, 'invalid field: Cache-Control applies')
  t.equal(await reused({ 'cdn-cache-control': 'max-age="10000"', 'cache-control': 'no-store' }), false, 'a string max-age is ignored')
  t.equal(await reused({ 'cdn-cache-control': 'private', 'cache-control': 'max-age=10000' }), false)
})

t.test('ranges of a stored 200 are served from the cache', async (t) => {
  const path = uniquePath('range-hit')
  origin.on(path, () => ({ headers: { 'cache-control': 'max-age=3600', etag: '"r1"', a: '1' }, body: '01234567890' }))
  await get(proxy, path)
  const first = await get(proxy, path, { range: 'bytes=0-1' })
  t.equal(first.status, 206)
  t.equal(first.body, '01')
  t.equal(first.headers['content-range'], 'bytes 0-1/11')
  t.equal(first.headers.a, '1')
  t.equal((await get(proxy, path, { range: 'bytes=1-' })).body, '1234567890')
  t.equal((await get(proxy, path, { range: 'bytes=-1' })).body, '0')
  t.equal((await get(proxy, path, { range: 'bytes=50-' })).status, 416)
  t.equal((await get(proxy, path, { range: 'bytes=0-1', 'if-range': '"other"' })).status, 200, 'If-Range mismatch: the whole thing')
  t.equal(origin.hits(path), 1)
})

t.test('an unreachable upstream: stale is served unless the response forbids it', async (t) => {
  for (const [cc, servesStale] of [['max-age=1', true], ['max-age=1, must-revalidate', false], ['max-age=1, no-cache', false], ['max-age=1, proxy-revalidate', false], ['max-age=1, s-maxage=1', false]] as const) {
    const path = uniquePath('close')
    origin.on(path, (req, n) => {
      if (n > 1) { req.socket.destroy(); return { delayMs: 5 } }
      return { headers: { 'cache-control': cc, age: '10', 'server-request-count': String(n) } }
    })
    await get(proxy, path)
    const r = await get(proxy, path)
    if (servesStale) {
      t.equal(r.status, 200, cc)
      t.equal(r.headers['x-cache'], 'STALE')
    } else {
      t.ok(r.status === 502 || r.status === 504, `${cc}: a proxy-made error (${r.status})`)
      t.equal(r.headers['server-request-count'], undefined, 'none of the origin’s headers')
    }
  }
})

t.test('a 304 updates every stored header but Content-Length', async (t) => {
  const path = uniquePath('update304')
  origin.on(path, (req) => req.headers['if-none-match'] === '"u"'
    ? { status: 304, headers: { etag: '"u"', 'cache-control': 'max-age=3600', 'content-type': 'text/x-new', 'test-header': 'B', 'content-length': '10' } }
    : { headers: { etag: '"u"', 'cache-control': 'max-age=1', 'content-type': 'text/x-old', 'test-header': 'A', age: '5' }, body: 'x'.repeat(36) })
  await get(proxy, path)
  const r = await get(proxy, path)
  t.equal(r.headers['test-header'], 'B')
  t.equal(r.headers['content-type'], 'text/x-new')
  t.equal(r.headers['content-length'], '36')
  t.equal(r.body.length, 36)
  const again = await get(proxy, path)
  t.equal(again.headers['x-cache'], 'HIT', 'the 304 made it fresh again')
})

t.test('Set-Cookie: strip and store modes', async (t) => {
  const o = await ScriptedOrigin.start()
  const strip = await startCachingProxy(o, { setCookie: 'strip' })
  t.teardown(async () => { await strip.shutdown(); await o.close() })
  o.on('/c', () => ({ headers: { 'cache-control': 'max-age=100', 'set-cookie': 'a=b' } }))
  t.equal((await get(strip, '/c')).headers['set-cookie'], 'a=b', 'the first client gets its cookie')
  const hit = await get(strip, '/c')
  t.equal(hit.headers['x-cache'], 'HIT')
  t.equal(hit.headers['set-cookie'], undefined, 'nobody else does')
  const store = await startCachingProxy(o, { setCookie: 'store' })
  t.teardown(() => store.shutdown())
  o.on('/s', () => ({ headers: { 'cache-control': 'max-age=100', 'set-cookie': 'a=c' } }))
  await get(store, '/s')
  t.equal((await get(store, '/s')).headers['set-cookie'], 'a=c')
})

t.test('103 Early Hints are relayed on a miss and never replayed on a hit', async (t) => {
  const path = uniquePath('hints')
  origin.upstream.server.prependListener('request', (req, res) => {
    if (req.url?.startsWith(path) === true) res.writeEarlyHints({ link: '</s.css>; rel=preload; as=style' })
  })
  origin.on(path, () => ({ headers: { 'cache-control': 'max-age=100' } }))
  const net = await import('node:net')
  const fetchRaw = (): Promise<string> => new Promise((resolve, reject) => {
    const sock = net.connect(proxy.port, '127.0.0.1')
    let out = ''
    sock.on('data', (d) => { out += d.toString('latin1'); if (/\r\n\r\n[^]*x-cache[^]*\r\n\r\n/i.test(out) || out.includes('body 1 of')) { sock.end(); resolve(out) } })
    sock.on('error', reject)
    sock.on('end', () => resolve(out))
    sock.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`)
  })
  const miss = await fetchRaw()
  t.match(miss, /^HTTP\/1\.1 103 Early Hints\r\nlink: <\/s\.css>; rel=preload; as=style\r\n/i)
  t.match(miss, /HTTP\/1\.1 200 OK/)
  const hit = await fetchRaw()
  t.notMatch(hit, /103/)
  t.match(hit, /x-cache: HIT/i)
})

t.test('odd but legal traffic passes: M-SEARCH invalidates, 999 is relayed unstored, 102 is relayed', async (t) => {
  const path = uniquePath('msearch')
  origin.on(path, (req, n) => req.method === 'M-SEARCH' ? { status: 200 } : n === 1 ? { headers: { 'cache-control': 'max-age=100' } } : { status: 999, headers: { 'cache-control': 'max-age=100' } })
  await get(proxy, path)
  t.equal((await get(proxy, path, {}, 'M-SEARCH')).status, 200)
  const after = await get(proxy, path)
  t.equal(after.status, 999, 'the URL was invalidated; a 999 goes through')
  t.equal((await get(proxy, path)).status, 999)
  t.equal(origin.hits(path), 4, 'a 999 is never stored')

  const p102 = uniquePath('processing')
  origin.upstream.server.prependListener('request', (req, res) => { if (req.url?.startsWith(p102) === true) res.writeProcessing() })
  origin.on(p102, () => ({ headers: { 'cache-control': 'max-age=100' } }))
  const net = await import('node:net')
  const raw = await new Promise<string>((resolve, reject) => {
    const sock = net.connect(proxy.port, '127.0.0.1')
    let out = ''
    sock.on('data', (d) => { out += d.toString('latin1') })
    sock.on('error', reject)
    sock.on('end', () => resolve(out))
    sock.write(`GET ${p102} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`)
  })
  t.match(raw, /^HTTP\/1\.1 102 Processing\r\n\r\nHTTP\/1\.1 200 OK/)
})

t.test('a HEAD refreshes the stored GET, or retires it when the representation changed', async (t) => {
  const path = uniquePath('head-update')
  origin.on(path, (req, n) => req.method === 'HEAD'
    ? { headers: { 'cache-control': 'max-age=100', etag: n === 2 ? '"h1"' : '"h2"', 'x-seen': `head ${n}` }, body: 'same length!' }
    : { headers: { 'cache-control': 'max-age=1', etag: '"h1"', age: '5', 'x-seen': 'get' }, body: 'same length!' })
  await get(proxy, path)
  await get(proxy, path, {}, 'HEAD')
  const hit = await get(proxy, path)
  t.equal(hit.headers['x-cache'], 'HIT', 'fresh again after the HEAD said max-age=100')
  t.equal(hit.headers['x-seen'], 'head 2')
  t.equal(hit.body, 'same length!')
  t.equal(origin.requests.filter((r) => r.path === path).map((r) => r.method).join(), 'GET,HEAD', 'HEAD went upstream as HEAD')
})
