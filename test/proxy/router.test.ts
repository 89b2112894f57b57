import t from 'tap'
import { Router, normalizeHost } from '../../src/router.ts'
import type { RouteEntry, RouteRequest } from '../../src/router.ts'
import type { MatchConfig } from '../../src/config/schema.ts'

function req (over: Partial<RouteRequest> = {}): RouteRequest {
  return { method: 'GET', host: 'example.com', path: '/', query: '', headers: {}, ...over }
}

function routes (...matches: MatchConfig[]): Router<number> {
  return new Router(matches.map((match, value): RouteEntry<number> => ({ match, value })))
}

/** Router with one route: does it take this request? */
function takes (match: MatchConfig, r: Partial<RouteRequest>): boolean {
  return routes(match).match(req(r)) === 0
}

t.test('empty match matches everything, even without a host', async (t) => {
  const router = routes({})
  t.equal(router.match(req()), 0)
  t.equal(router.match(req({ host: undefined, method: 'DELETE', path: '/x/y', query: 'a=b' })), 0)
})

t.test('no routes or no match → undefined', async (t) => {
  t.equal(routes().match(req()), undefined)
  t.equal(routes({ path: '/a' }, { host: 'other.com' }).match(req({ path: '/b' })), undefined)
})

t.test('host: exact, case, port, trailing dot, list', async (t) => {
  const m = { host: 'api.example.com' }
  t.ok(takes(m, { host: 'api.example.com' }))
  t.ok(takes(m, { host: 'API.Example.COM' }))
  t.ok(takes(m, { host: 'api.example.com:8080' }))
  t.ok(takes(m, { host: 'api.example.com.' }))
  t.ok(takes(m, { host: 'Api.Example.Com.:443' }))
  t.notOk(takes(m, { host: 'example.com' }))
  t.notOk(takes(m, { host: 'xapi.example.com' }))
  t.notOk(takes(m, { host: 'a.api.example.com' }))
  t.notOk(takes(m, { host: undefined }))
  t.notOk(takes(m, { host: '' }))
  t.ok(takes({ host: 'API.example.com:9000' }, { host: 'api.example.com' }), 'config host normalised too')
  const list = { host: ['a.com', 'b.com'] }
  t.ok(takes(list, { host: 'a.com' }))
  t.ok(takes(list, { host: 'B.COM:80' }))
  t.notOk(takes(list, { host: 'c.com' }))
})

t.test('host: wildcard matches every subdomain depth but not the apex', async (t) => {
  const m = { host: '*.example.com' }
  t.ok(takes(m, { host: 'a.example.com' }))
  t.ok(takes(m, { host: 'a.b.example.com' }))
  t.ok(takes(m, { host: 'A.B.C.EXAMPLE.COM:8443' }))
  t.ok(takes(m, { host: 'a.example.com.' }))
  t.notOk(takes(m, { host: 'example.com' }))
  t.notOk(takes(m, { host: 'badexample.com' }))
  t.notOk(takes(m, { host: 'a.example.org' }))
  t.notOk(takes(m, { host: undefined }))
  const both = { host: ['example.com', '*.example.com'] }
  t.ok(takes(both, { host: 'example.com' }))
  t.ok(takes(both, { host: 'x.example.com' }))
})

t.test('host: IPv6 literals', async (t) => {
  t.ok(takes({ host: '::1' }, { host: '[::1]:8080' }))
  t.ok(takes({ host: '[::1]' }, { host: '[::1]' }))
  t.ok(takes({ host: '[2001:DB8::1]' }, { host: '[2001:db8::1]:443' }))
  t.notOk(takes({ host: '::1' }, { host: '[::2]:8080' }))
  t.ok(takes({ host: '127.0.0.1' }, { host: '127.0.0.1:3000' }))
})

t.test('normalizeHost', async (t) => {
  t.equal(normalizeHost('API.Example.com.:8443'), 'api.example.com')
  t.equal(normalizeHost('[::1]:8080'), '::1')
  t.equal(normalizeHost('[::1]'), '::1')
  t.equal(normalizeHost('::1'), '::1', 'bare IPv6 keeps its colons')
  t.equal(normalizeHost('[broken'), '[broken')
  t.equal(normalizeHost(':8080'), undefined)
  t.equal(normalizeHost(''), undefined)
  t.equal(normalizeHost(undefined), undefined)
})

t.test('path: exact, prefix, regex', async (t) => {
  t.ok(takes({ path: '/users' }, { path: '/users' }))
  t.notOk(takes({ path: '/users' }, { path: '/users/' }))
  t.notOk(takes({ path: '/users' }, { path: '/Users' }), 'paths are case-sensitive')
  t.ok(takes({ pathPrefix: '/api' }, { path: '/api' }))
  t.ok(takes({ pathPrefix: '/api' }, { path: '/api/v1' }))
  t.ok(takes({ pathPrefix: '/api' }, { path: '/apis' }), 'plain prefix, not segment-aware')
  t.notOk(takes({ pathPrefix: '/api' }, { path: '/ap' }))
  t.ok(takes({ pathPrefix: '/a%20b' }, { path: '/a%20b/c' }), 'matched as sent, percent-encoded')
  t.notOk(takes({ pathPrefix: '/a b' }, { path: '/a%20b/c' }))
  t.ok(takes({ pathRegex: '^/users/\\d+$' }, { path: '/users/42' }))
  t.notOk(takes({ pathRegex: '^/users/\\d+$' }, { path: '/users/42/x' }))
  t.ok(takes({ pathRegex: '/v\\d/' }, { path: '/api/v2/x' }), 'unanchored as written')
  t.notOk(takes({ pathRegex: '/v\\d/' }, { path: '/api/vx/x' }))
  // The same compiled regex, many times in a row: no lastIndex carried over.
  const router = routes({ pathRegex: 'a' })
  for (let i = 0; i < 5; i++) t.equal(router.match(req({ path: '/a' })), 0)
})

t.test('methods: exact membership, HEAD does not ride on GET', async (t) => {
  const m: MatchConfig = { methods: ['GET', 'POST'] }
  t.ok(takes(m, { method: 'GET' }))
  t.ok(takes(m, { method: 'POST' }))
  t.notOk(takes(m, { method: 'HEAD' }))
  t.notOk(takes(m, { method: 'DELETE' }))
  t.ok(takes({ methods: ['GET', 'HEAD'] }, { method: 'HEAD' }))
})

t.test('methods: a route with cors takes the preflight for a method it serves', async (t) => {
  const preflight = (method: string, origin: string | undefined): RouteRequest =>
    req({ method: 'OPTIONS', headers: { origin, 'access-control-request-method': method } })
  const APP = 'https://app.example'
  const router = new Router<string>([
    { match: { pathPrefix: '/api', methods: ['GET', 'PUT'] }, value: 'api', answersPreflight: true },
    { match: { pathPrefix: '/plain', methods: ['GET', 'PUT'] }, value: 'plain' },
    { match: { pathPrefix: '/', methods: ['GET', 'DELETE', 'OPTIONS'] }, value: 'open', answersPreflight: true },
  ])
  t.equal(router.match({ ...preflight('PUT', APP), path: '/api/x' }), 'api', 'its own policy answers, not the catch-all')
  t.equal(router.match({ ...preflight('GET', APP), path: '/api/x' }), 'api')
  t.equal(router.match({ ...preflight('DELETE', APP), path: '/api/x' }), 'open', 'goes where the DELETE itself would go')
  t.equal(router.match({ ...preflight('put', APP), path: '/api/x' }), 'open', 'methods compare case-sensitively, as Fetch does')
  t.equal(router.match({ ...preflight('PUT', undefined), path: '/api/x' }), 'open', 'no Origin: not a preflight')
  t.equal(router.match(req({ method: 'OPTIONS', path: '/api/x', headers: { origin: 'https://app.example' } })), 'open', 'no Access-Control-Request-Method: not a preflight')
  t.equal(router.match({ ...preflight('PUT', APP), path: '/plain/x' }), 'open', 'a route without cors keeps exact membership')
  t.equal(router.match({ ...preflight('PATCH', APP), path: '/plain/x' }), 'open')
  const alone = new Router([{ match: { methods: ['GET', 'PUT'] }, value: 0, answersPreflight: true }])
  t.equal(alone.match(preflight('DELETE', APP)), undefined, 'a method no route serves: 404, which fails the preflight')
  t.equal(alone.match(req({ method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': ['PUT', 'PUT'] } })), undefined, 'a repeated request method is no preflight')
})

t.test('headers: string, exact, prefix, regex, present', async (t) => {
  const h = (headers: RouteRequest['headers']): Partial<RouteRequest> => ({ headers })
  t.ok(takes({ headers: { 'x-env': 'prod' } }, h({ 'x-env': 'prod' })))
  t.notOk(takes({ headers: { 'x-env': 'prod' } }, h({ 'x-env': 'Prod' })), 'values are case-sensitive')
  t.notOk(takes({ headers: { 'x-env': 'prod' } }, h({})))
  t.ok(takes({ headers: { 'x-env': { exact: 'prod' } } }, h({ 'x-env': 'prod' })))
  t.notOk(takes({ headers: { 'x-env': { exact: 'prod' } } }, h({ 'x-env': 'production' })))
  t.ok(takes({ headers: { accept: { prefix: 'application/' } } }, h({ accept: 'application/json' })))
  t.notOk(takes({ headers: { accept: { prefix: 'application/' } } }, h({ accept: 'text/html' })))
  t.ok(takes({ headers: { 'user-agent': { regex: 'curl/\\d' } } }, h({ 'user-agent': 'curl/8.1' })))
  t.notOk(takes({ headers: { 'user-agent': { regex: '^curl' } } }, h({ 'user-agent': 'x curl' })))
  t.notOk(takes({ headers: { 'x-a': { regex: '.*' } } }, h({})), 'regex needs the header')
  t.ok(takes({ headers: { 'x-debug': { present: true } } }, h({ 'x-debug': '' })), 'empty value is present')
  t.notOk(takes({ headers: { 'x-debug': { present: true } } }, h({})))
  t.ok(takes({ headers: { 'x-debug': { present: false } } }, h({})))
  t.ok(takes({ headers: { 'x-debug': { present: false } } }, h({ 'x-debug': undefined })))
  t.notOk(takes({ headers: { 'x-debug': { present: false } } }, h({ 'x-debug': '1' })))
  t.ok(takes({ headers: { 'X-Env': 'prod' } }, h({ 'x-env': 'prod' })), 'configured names lower-cased')
  const all = { headers: { 'x-a': '1', 'x-b': { present: true } } }
  t.ok(takes(all, h({ 'x-a': '1', 'x-b': 'y' })))
  t.notOk(takes(all, h({ 'x-a': '1' })), 'all must match')
})

t.test('headers: multi-valued match if any value does', async (t) => {
  const headers = { 'set-cookie': ['a=1', 'session=xyz', 'b=2'] }
  t.ok(takes({ headers: { 'set-cookie': 'session=xyz' } }, { headers }))
  t.ok(takes({ headers: { 'set-cookie': { prefix: 'session=' } } }, { headers }))
  t.ok(takes({ headers: { 'set-cookie': { regex: '^b=' } } }, { headers }))
  t.notOk(takes({ headers: { 'set-cookie': { exact: 'c=3' } } }, { headers }))
  t.ok(takes({ headers: { 'set-cookie': { present: true } } }, { headers }))
  t.notOk(takes({ headers: { 'set-cookie': { present: false } } }, { headers }))
  t.ok(takes({ headers: { 'set-cookie': { present: false } } }, { headers: { 'set-cookie': [] } }), 'no values = absent')
})

t.test('query: matchers, repeats, + and percent-decoding', async (t) => {
  const q = (query: string): Partial<RouteRequest> => ({ query })
  t.ok(takes({ query: { v: '2' } }, q('v=2')))
  t.ok(takes({ query: { v: '2' } }, q('a=1&v=2&b=3')))
  t.notOk(takes({ query: { v: '2' } }, q('v=3')))
  t.notOk(takes({ query: { v: '2' } }, q('')))
  t.notOk(takes({ query: { v: '2' } }, q('vv=2&xv=2')))
  t.ok(takes({ query: { tag: 'b' } }, q('tag=a&tag=b&tag=c')), 'repeated: any value')
  t.ok(takes({ query: { tag: { regex: '^c$' } } }, q('tag=a&tag=b&tag=c')))
  t.notOk(takes({ query: { tag: 'd' } }, q('tag=a&tag=b&tag=c')))
  t.ok(takes({ query: { q: 'hello world' } }, q('q=hello+world')), '+ is a space')
  t.ok(takes({ query: { q: 'a+b' } }, q('q=a%2Bb')), 'encoded + stays a plus')
  t.ok(takes({ query: { q: 'café/ü' } }, q('q=caf%C3%A9%2F%c3%bc')))
  t.ok(takes({ query: { 'my key': 'x' } }, q('my+key=x')), 'names are decoded too')
  t.ok(takes({ query: { 'a=b': 'c' } }, q('a%3Db=c')))
  t.ok(takes({ query: { q: 'x=y' } }, q('q=x=y')), 'value runs to the next &')
  t.ok(takes({ query: { q: '100% 50%zz' } }, q('q=100%+50%zz')), 'malformed escapes stay literal')
  t.ok(takes({ query: { q: 'a%' } }, q('q=a%')))
  t.ok(takes({ query: { q: 'é%G1' } }, q('q=%C3%A9%G1')), 'valid escapes still decoded beside a bad one')
  t.ok(takes({ query: { q: '\uFFFD' } }, q('q=%FF')), 'invalid UTF-8 → U+FFFD, no throw')
  t.ok(takes({ query: { q: { prefix: 'ab' } } }, q('&&q=abc&')), 'empty pairs ignored')
  t.ok(takes({ query: { debug: { present: true } } }, q('debug')), 'bare name is present with an empty value')
  t.ok(takes({ query: { debug: '' } }, q('debug')))
  t.ok(takes({ query: { debug: { present: true } } }, q('debug=')))
  t.ok(takes({ query: { debug: { present: false } } }, q('a=1')))
  t.ok(takes({ query: { debug: { present: false } } }, q('')))
  t.notOk(takes({ query: { debug: { present: false } } }, q('x=1&debug=0')))
  t.notOk(takes({ query: { Debug: { present: true } } }, q('debug=1')), 'names are case-sensitive')
  t.ok(takes({ query: { a: '1', b: { exact: '2' } } }, q('b=2&a=1')))
  t.notOk(takes({ query: { a: '1', b: { exact: '2' } } }, q('a=1')), 'all must match')
})

t.test('query parsed once and reused across candidates', async (t) => {
  const router = routes(
    { query: { a: '1' } },
    { query: { b: '2' } },
    { query: { c: { present: false } }, path: '/c' },
    {},
  )
  t.equal(router.match(req({ query: 'b=2' })), 1)
  t.equal(router.match(req({ query: 'x=9', path: '/c' })), 2)
  t.equal(router.match(req({ query: 'c', path: '/c' })), 3)
})

t.test('combinations: every matcher must agree', async (t) => {
  const m: MatchConfig = {
    host: '*.example.com',
    pathPrefix: '/api',
    methods: ['POST'],
    headers: { 'content-type': { prefix: 'application/json' } },
    query: { dryRun: { present: false } },
  }
  const ok: Partial<RouteRequest> = { host: 'eu.example.com', method: 'POST', path: '/api/x', headers: { 'content-type': 'application/json; charset=utf-8' }, query: 'x=1' }
  t.ok(takes(m, ok))
  t.notOk(takes(m, { ...ok, host: 'example.com' }))
  t.notOk(takes(m, { ...ok, path: '/web' }))
  t.notOk(takes(m, { ...ok, method: 'PUT' }))
  t.notOk(takes(m, { ...ok, headers: { 'content-type': 'text/plain' } }))
  t.notOk(takes(m, { ...ok, query: 'dryRun=1' }))
})

t.test('declared order wins: a broad route first shadows a narrow one', async (t) => {
  const broadFirst = routes({ pathPrefix: '/' }, { path: '/users' })
  t.equal(broadFirst.match(req({ path: '/users' })), 0)
  const narrowFirst = routes({ path: '/users' }, { pathPrefix: '/' })
  t.equal(narrowFirst.match(req({ path: '/users' })), 0)
  t.equal(narrowFirst.match(req({ path: '/other' })), 1)
  const fallthrough = routes({ methods: ['POST'], path: '/x' }, { path: '/x' })
  t.equal(fallthrough.match(req({ method: 'GET', path: '/x' })), 1, 'a non-matching method falls through')
})

t.test('host index preserves declared order across exact, wildcard and any-host routes', async (t) => {
  const router = routes(
    { host: 'a.example.com', path: '/only-a' }, // 0
    { pathPrefix: '/any' }, // 1
    { host: '*.example.com', pathPrefix: '/' }, // 2
    { host: 'a.example.com' }, // 3: shadowed by 2 for a.example.com
    { host: ['b.example.org', 'a.example.com'], path: '/list' }, // 4
    { host: 'b.example.org' }, // 5
    {}, // 6
  )
  t.equal(router.match(req({ host: 'a.example.com', path: '/only-a' })), 0)
  t.equal(router.match(req({ host: 'a.example.com', path: '/any/thing' })), 1, 'any-host route before the wildcard')
  t.equal(router.match(req({ host: 'a.example.com', path: '/list' })), 2, 'wildcard declared before the exact route wins')
  t.equal(router.match(req({ host: 'c.example.com', path: '/only-a' })), 2)
  t.equal(router.match(req({ host: 'example.com', path: '/x' })), 6, 'apex is not a wildcard match')
  t.equal(router.match(req({ host: 'b.example.org', path: '/any/1' })), 1)
  t.equal(router.match(req({ host: 'b.example.org', path: '/list' })), 4)
  t.equal(router.match(req({ host: 'B.example.ORG:8080', path: '/y' })), 5)
  t.equal(router.match(req({ host: 'unknown.net', path: '/any' })), 1)
  t.equal(router.match(req({ host: 'unknown.net', path: '/y' })), 6)
  t.equal(router.match(req({ host: undefined, path: '/y' })), 6, 'no host: only any-host routes')
  t.equal(router.match(req({ host: undefined, path: '/any' })), 1)

  const exactThenWildcard = routes({ host: 'a.example.com', path: '/p' }, { host: '*.example.com' }, { host: 'a.example.com' })
  t.equal(exactThenWildcard.match(req({ host: 'a.example.com', path: '/p' })), 0)
  t.equal(exactThenWildcard.match(req({ host: 'a.example.com', path: '/q' })), 1)
  t.equal(exactThenWildcard.match(req({ host: 'z.example.com', path: '/p' })), 1)
})

t.test('values are returned as given', async (t) => {
  const a = { cluster: 'a' }
  const router = new Router([{ match: { path: '/a' }, value: a }])
  t.equal(router.match(req({ path: '/a' })), a)
})
