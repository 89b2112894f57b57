import t from 'tap'
import { schema } from './schema.ts'

function issues (input: unknown): Array<{ path: Array<string | number>, message: string }> {
  const r = schema.safeParse(input)
  if (r.success) return []
  return r.error.issues.map((i) => ({ path: i.path as Array<string | number>, message: i.message }))
}

function paths (input: unknown): Array<Array<string | number>> {
  return issues(input).map((i) => i.path)
}

t.test('accepts an empty config and fills every default', async (t) => {
  t.same(schema.parse({}), {
    hsts: { maxAge: 31_536_000, includeSubDomains: true, preload: false, httpsOnly: true },
    contentTypeOptions: true,
    referrerPolicy: 'no-referrer',
    frameOptions: 'DENY',
    cspReportOnly: false,
    removeResponseHeaders: ['server', 'x-powered-by'],
    override: false,
  })
  t.same(schema.parse({ hsts: { maxAge: 600 } }).hsts, { maxAge: 600, includeSubDomains: true, preload: false, httpsOnly: true })
})

t.test('accepts every documented shape', async (t) => {
  const c = schema.parse({
    hsts: { maxAge: 63_072_000, preload: true },
    referrerPolicy: ['no-referrer', 'strict-origin-when-cross-origin'],
    frameOptions: 'SAMEORIGIN',
    frameAncestors: ['\'self\'', 'https://portal.example'],
    csp: { 'default-src': '\'self\'', 'img-src': ['\'self\'', 'data:'], 'upgrade-insecure-requests': true },
    permissionsPolicy: { camera: [], geolocation: ['self', 'https://maps.example'], fullscreen: ['*'] },
    crossOriginOpenerPolicy: 'same-origin',
    removeResponseHeaders: ['Server', 'server', 'X-AspNet-Version'],
    override: false,
  })
  t.same(c.removeResponseHeaders, ['server', 'x-aspnet-version'], 'lower-cased, once each')
  t.ok(schema.safeParse({ hsts: false, referrerPolicy: false, frameOptions: false, contentTypeOptions: false, removeResponseHeaders: [] }).success, 'everything off')
  t.ok(schema.safeParse({ csp: 'default-src \'none\'; frame-ancestors \'none\'', permissionsPolicy: 'camera=()' }).success, 'strings as they are')
})

t.test('refuses a preload the preload list would refuse', async (t) => {
  t.same(paths({ hsts: { preload: true, maxAge: 86_400 } }), [['hsts', 'preload']])
  t.same(paths({ hsts: { preload: true, includeSubDomains: false } }), [['hsts', 'preload']])
  t.same(paths({ hsts: { maxAge: -1 } }), [['hsts', 'maxAge']])
  t.same(paths({ hsts: { maxage: 1 } }), [['hsts']], 'unknown key')
  t.same(paths({ hsts: true }), [['hsts']])
})

t.test('refuses bad framing rules', async (t) => {
  t.same(paths({ frameOptions: 'ALLOW-FROM https://a.example' }), [['frameOptions']])
  t.match(issues({ frameOptions: 'deny' })[0]?.message, /DENY, SAMEORIGIN or false/)
  t.same(paths({ frameAncestors: ['\'none\'', '\'self\''] }), [['frameAncestors', 0]], '\'none\' with other sources')
  t.same(paths({ frameAncestors: ['\'self\''], csp: { 'frame-ancestors': '\'none\'' } }), [['frameAncestors']], 'twice')
  t.same(paths({ frameAncestors: ['\'self\''], csp: 'default-src \'self\'; frame-ancestors \'none\'' }), [['frameAncestors']], 'twice, in a string')
  t.same(paths({ frameAncestors: ['a;b'] }), [['frameAncestors', 0]])
  t.same(paths({ frameAncestors: [] }), [['frameAncestors']])
})

t.test('refuses values that would break the header', async (t) => {
  t.same(paths({ csp: { 'script-src': '\'self\'; img-src *' } }), [['csp', 'script-src']], 'a directive smuggled in a value')
  t.same(paths({ csp: { 'script-src': ['\'self\'', 'a,b'] } }), [['csp', 'script-src', 1]], 'a comma starts another policy')
  t.same(paths({ csp: { 'Script-Src': '\'self\'' } }), [['csp']])
  t.same(paths({ csp: 'default-src \'self\'\r\nx-injected: 1' }), [['csp']])
  t.same(paths({ permissionsPolicy: { camera: ['evil'] } }), [['permissionsPolicy', 'camera', 0]])
  t.same(paths({ permissionsPolicy: { camera: ['https://a"b'] } }), [['permissionsPolicy', 'camera', 0]])
  t.same(paths({ referrerPolicy: 'never' }), [['referrerPolicy']])
  t.same(paths({ crossOriginOpenerPolicy: 'same-site' }), [['crossOriginOpenerPolicy']])
})

t.test('override: a boolean or a list of the fields the plugin sets', async (t) => {
  t.same(schema.parse({ override: true }).override, true)
  t.same(schema.parse({ override: ['x-frame-options', 'x-frame-options', 'strict-transport-security'] }).override, ['x-frame-options', 'strict-transport-security'], 'once each')
  t.same(paths({ override: ['x-frame-options', 'server'] }), [['override']], 'a field it does not set')
  t.same(paths({ override: ['X-Frame-Options'] }), [['override']], 'names as they are sent: lower case')
  t.same(paths({ override: [] }), [['override']])
  t.match(issues({ override: 'yes' })[0]?.message, /true, false, or a list of the fields to force: strict-transport-security, /)
})

t.test('refuses to remove framing headers', async (t) => {
  t.same(paths({ removeResponseHeaders: ['server', 'Content-Length'] }), [['removeResponseHeaders', 1]])
  t.same(paths({ removeResponseHeaders: ['transfer-encoding'] }), [['removeResponseHeaders', 0]])
  t.same(paths({ removeResponseHeaders: ['x y'] }), [['removeResponseHeaders', 0]])
  t.same(paths({ remove: ['server'] }), [[]], 'unknown key')
})
