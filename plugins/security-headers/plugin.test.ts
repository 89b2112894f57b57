import t from 'tap'
import type http from 'node:http'
import { request } from 'undici'
import { startUpstream } from '../../test/helpers/upstream.ts'
import { startTestProxy, simpleDoc, type TestProxy } from '../../test/helpers/proxy.ts'
import type { HeaderMap, PluginContext, RequestContext, ResponseContext } from '../../src/plugin.ts'
import { schema } from './schema.ts'
import plugin from './plugin.ts'

/** A backend that advertises itself and has opinions of its own. */
const opinionated: http.RequestListener = (_req, res) => {
  res.writeHead(200, {
    server: 'nginx/1.25.3',
    'x-powered-by': 'Express',
    'x-frame-options': 'SAMEORIGIN',
    'content-security-policy': 'default-src \'self\' https://cdn.example',
    'referrer-policy': 'strict-origin-when-cross-origin',
    'strict-transport-security': 'max-age=600',
    'content-type': 'text/html',
  })
  res.end('<p>hi</p>')
}

async function setup (t: { teardown (fn: () => unknown): void }, config: Record<string, unknown>, extra: unknown[] = []): Promise<TestProxy> {
  const up = await startUpstream(opinionated)
  t.teardown(up.close)
  return startTestProxy(simpleDoc(up.url, { plugins: [...extra, { name: 'security-headers', config }] }), t)
}

async function headersOf (proxy: TestProxy, init: { method?: string, headers?: Record<string, string> } = {}): Promise<Record<string, string | string[] | undefined>> {
  const res = await request(`${proxy.url}/page`, { method: (init.method ?? 'GET') as 'GET', headers: init.headers })
  await res.body.dump()
  return res.headers
}

t.test('adds the defaults and removes what advertises the stack', async (t) => {
  const h = await headersOf(await setup(t, {}))
  t.equal(h['x-content-type-options'], 'nosniff', 'filled in')
  t.equal(h['referrer-policy'], 'strict-origin-when-cross-origin', 'the upstream\'s choice stands by default')
  t.equal(h['x-frame-options'], 'SAMEORIGIN', 'the upstream\'s choice stands by default')
  t.equal(h.server, undefined)
  t.equal(h['x-powered-by'], undefined)
  t.equal(h['strict-transport-security'], undefined, 'never over plain http, not even the upstream\'s (RFC 6797 §7.2)')
  t.equal(h['content-security-policy'], 'default-src \'self\' https://cdn.example', 'no csp configured: the upstream\'s is untouched')
  t.equal(h['content-type'], 'text/html')
})

t.test('renders CSP, frame-ancestors, Permissions-Policy and COOP', async (t) => {
  const h = await headersOf(await setup(t, {
    hsts: { httpsOnly: false, maxAge: 63_072_000, preload: true },
    referrerPolicy: ['no-referrer', 'strict-origin-when-cross-origin'],
    frameOptions: 'SAMEORIGIN',
    frameAncestors: ['\'self\'', 'https://portal.example'],
    csp: { 'default-src': '\'self\'', 'img-src': ['\'self\'', 'data:'], 'upgrade-insecure-requests': true },
    permissionsPolicy: { camera: [], geolocation: ['self', 'https://maps.example'], fullscreen: ['*'] },
    crossOriginOpenerPolicy: 'same-origin',
    removeResponseHeaders: ['server'],
    override: true,
  }))
  t.equal(h['strict-transport-security'], 'max-age=63072000; includeSubDomains; preload', 'httpsOnly: false sends it on http too')
  t.equal(h['referrer-policy'], 'no-referrer, strict-origin-when-cross-origin')
  t.equal(h['x-frame-options'], 'SAMEORIGIN')
  t.equal(h['content-security-policy'], 'default-src \'self\'; img-src \'self\' data:; upgrade-insecure-requests; frame-ancestors \'self\' https://portal.example')
  t.equal(h['permissions-policy'], 'camera=(), geolocation=(self "https://maps.example"), fullscreen=*')
  t.equal(h['cross-origin-opener-policy'], 'same-origin')
  t.equal(h.server, undefined)
  t.equal(h['x-powered-by'], 'Express', 'only the configured headers are removed')
})

t.test('by default the upstream\'s values stand and only the gaps are filled', async (t) => {
  const h = await headersOf(await setup(t, { csp: 'default-src \'none\'', frameOptions: 'DENY', permissionsPolicy: 'camera=()' }))
  t.equal(h['x-frame-options'], 'SAMEORIGIN', 'the upstream\'s own')
  t.equal(h['content-security-policy'], 'default-src \'self\' https://cdn.example', 'the upstream\'s own')
  t.equal(h['referrer-policy'], 'strict-origin-when-cross-origin', 'the upstream\'s own')
  t.equal(h['x-content-type-options'], 'nosniff', 'filled in')
  t.equal(h['permissions-policy'], 'camera=()', 'filled in')
  t.equal(h.server, undefined, 'removal applies regardless')
})

t.test('override: true replaces every upstream value, a list only the fields it names', async (t) => {
  const all = await headersOf(await setup(t, { csp: 'default-src \'none\'', override: true }))
  t.equal(all['x-frame-options'], 'DENY')
  t.equal(all['referrer-policy'], 'no-referrer')
  t.equal(all['content-security-policy'], 'default-src \'none\'')
  const some = await headersOf(await setup(t, { csp: 'default-src \'none\'', override: ['x-frame-options', 'referrer-policy'] }))
  t.equal(some['x-frame-options'], 'DENY', 'named: ours')
  t.equal(some['referrer-policy'], 'no-referrer', 'named: ours')
  t.equal(some['content-security-policy'], 'default-src \'self\' https://cdn.example', 'not named: the upstream\'s')
  t.equal(some['strict-transport-security'], undefined, 'no HSTS over http either way')
})

t.test('report-only CSP keeps frame-ancestors enforced', async (t) => {
  const h = await headersOf(await setup(t, { cspReportOnly: true, csp: { 'script-src': '\'self\'' }, frameAncestors: ['\'none\''], frameOptions: false, override: ['content-security-policy'] }))
  t.equal(h['content-security-policy-report-only'], 'script-src \'self\'')
  t.equal(h['content-security-policy'], 'frame-ancestors \'none\'')
  t.equal(h['x-frame-options'], 'SAMEORIGIN', 'frameOptions: false leaves the upstream\'s alone')
})

t.test('applies to responses the proxy makes itself', async (t) => {
  const proxy = await setup(t, {}, [{ name: 'cors', config: { allowOrigins: ['https://app.example'] } }])
  const h = await headersOf(proxy, { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'GET' } })
  t.equal(h['x-content-type-options'], 'nosniff')
  t.equal(h['x-frame-options'], 'DENY')
})

t.test('HSTS only on https requests by default', async (t) => {
  const hooks = await plugin.create(schema.parse({}), {} as PluginContext)
  const run = (scheme: string, upstream: HeaderMap = {}): HeaderMap => {
    const res = { status: 200, headers: { ...upstream }, pipeThrough () {} } as unknown as ResponseContext
    void hooks.onResponse?.({ scheme } as RequestContext, res)
    return res.headers
  }
  const theirs = { 'strict-transport-security': 'max-age=60' }
  t.equal(run('https')['strict-transport-security'], 'max-age=31536000; includeSubDomains')
  t.equal(run('http')['strict-transport-security'], undefined)
  t.equal(run('https', theirs)['strict-transport-security'], 'max-age=60', 'the upstream\'s HSTS stands over https')
  t.equal(run('http', theirs)['strict-transport-security'], undefined, 'and is removed over http (RFC 6797 §7.2)')
  const runWith = async (config: Record<string, unknown>, scheme: string): Promise<HeaderMap['x']> => {
    const hooks = await plugin.create(schema.parse(config), {} as PluginContext)
    const res = { status: 200, headers: { ...theirs }, pipeThrough () {} } as unknown as ResponseContext
    void hooks.onResponse?.({ scheme } as RequestContext, res)
    return res.headers['strict-transport-security']
  }
  t.equal(await runWith({ override: ['strict-transport-security'] }, 'https'), 'max-age=31536000; includeSubDomains', 'forced')
  t.equal(await runWith({ hsts: { httpsOnly: false } }, 'http'), 'max-age=60', 'httpsOnly: false (TLS in front) keeps it over http')
  t.equal(await runWith({ hsts: false }, 'http'), 'max-age=60', 'hsts: false leaves HSTS alone')
  const off = await plugin.create(schema.parse({ hsts: false }), {} as PluginContext)
  const res2 = { status: 200, headers: {}, pipeThrough () {} } as unknown as ResponseContext
  void off.onResponse?.({ scheme: 'https' } as RequestContext, res2)
  t.equal(res2.headers['strict-transport-security'], undefined)
})
