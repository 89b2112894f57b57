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
  t.equal(h['x-content-type-options'], 'nosniff')
  t.equal(h['referrer-policy'], 'no-referrer')
  t.equal(h['x-frame-options'], 'DENY', 'the route\'s policy replaces the upstream\'s by default')
  t.equal(h.server, undefined)
  t.equal(h['x-powered-by'], undefined)
  t.equal(h['strict-transport-security'], undefined, 'never over plain http (RFC 6797 §7.2)')
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

t.test('override: false keeps the upstream\'s values and fills the gaps', async (t) => {
  const h = await headersOf(await setup(t, { override: false, csp: 'default-src \'none\'' }))
  t.equal(h['x-frame-options'], 'SAMEORIGIN', 'the upstream\'s own')
  t.equal(h['content-security-policy'], 'default-src \'self\' https://cdn.example', 'the upstream\'s own')
  t.equal(h['x-content-type-options'], 'nosniff', 'filled in')
  t.equal(h['referrer-policy'], 'no-referrer', 'filled in')
  t.equal(h.server, undefined, 'removal applies regardless')
})

t.test('report-only CSP keeps frame-ancestors enforced', async (t) => {
  const h = await headersOf(await setup(t, { cspReportOnly: true, csp: { 'script-src': '\'self\'' }, frameAncestors: ['\'none\''], frameOptions: false }))
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
  t.equal(run('https')['strict-transport-security'], 'max-age=31536000; includeSubDomains')
  t.equal(run('http')['strict-transport-security'], undefined)
  const keep = await plugin.create(schema.parse({ override: false }), {} as PluginContext)
  const res = { status: 200, headers: { 'strict-transport-security': 'max-age=60' }, pipeThrough () {} } as unknown as ResponseContext
  void keep.onResponse?.({ scheme: 'https' } as RequestContext, res)
  t.equal(res.headers['strict-transport-security'], 'max-age=60', 'the upstream\'s HSTS kept with override: false')
  const off = await plugin.create(schema.parse({ hsts: false }), {} as PluginContext)
  const res2 = { status: 200, headers: {}, pipeThrough () {} } as unknown as ResponseContext
  void off.onResponse?.({ scheme: 'https' } as RequestContext, res2)
  t.equal(res2.headers['strict-transport-security'], undefined)
})
