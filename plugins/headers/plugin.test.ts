import t from 'tap'
import type http from 'node:http'
import { request } from 'undici'
import { startUpstream } from '../../test/helpers/upstream.ts'
import { startTestProxy, simpleDoc } from '../../test/helpers/proxy.ts'
import type { PluginContext } from '../../src/plugin.ts'
import { schema } from './schema.ts'
import plugin from './plugin.ts'

/** The echo upstream, plus response headers a real backend would send. */
const chatty: http.RequestListener = (req, res) => {
  const body = JSON.stringify({ headers: req.headers })
  res.setHeader('x-powered-by', 'php/5')
  res.setHeader('set-cookie', ['a=1', 'b=2'])
  res.setHeader('cache-control', 'no-store')
  res.setHeader('content-type', 'application/json')
  res.end(body)
}

function route (config: Record<string, unknown>): Record<string, unknown> {
  return { plugins: [{ name: 'headers', config }] }
}

/** The field lines the upstream received for `name`, in order. */
function lines (raw: string[], name: string): string[] {
  const out: string[] = []
  for (let i = 0; i < raw.length; i += 2) if ((raw[i] as string).toLowerCase() === name) out.push(raw[i + 1] as string)
  return out
}

t.test('edits the request headers sent upstream: remove, then set, then add', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url, route({
    request: {
      remove: ['Cookie', 'x-replaced'],
      set: { 'x-route': '${route}', 'X-Static': 'yes', 'x-exists': 'overwritten' },
      add: { 'x-replaced': 'only-this', 'x-multi': 'from-proxy' },
    },
  })), t)
  const res = await request(`${proxy.url}/a`, {
    headers: { cookie: 'secret=1', 'x-replaced': 'client', 'x-exists': 'client', 'x-multi': 'from-client', 'x-untouched': 'u' },
  })
  t.equal(res.statusCode, 200)
  await res.body.dump()
  const seen = up.seen[0]?.headers ?? {}
  const raw = up.seen[0]?.rawHeaders ?? []
  t.equal(seen.cookie, undefined, 'removed')
  t.equal(seen['x-route'], 'all', '${route} expanded')
  t.equal(seen['x-static'], 'yes')
  t.equal(seen['x-exists'], 'overwritten', 'set replaces the client value')
  t.same(lines(raw, 'x-replaced'), ['only-this'], 'remove + add replaces')
  t.same(lines(raw, 'x-multi'), ['from-client', 'from-proxy'], 'add appends a field line')
  t.equal(seen['x-untouched'], 'u')
  t.equal(seen['x-forwarded-for'], '127.0.0.1', 'the proxy\'s own headers are still there')
})

t.test('expands the per-request variables', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url, route({
    request: { set: { 'x-trace': 'id=${request_id};ip=${client_ip};m=${method};s=${scheme}', 'x-dollar': 'costs $5 {not} a variable' } },
    response: { set: { 'x-echo-id': '${request_id}' } },
  })), t)
  for (const id of ['first-id', 'second-id']) {
    const res = await request(`${proxy.url}/v`, { method: 'POST', body: 'x', headers: { 'x-request-id': id } })
    await res.body.dump()
    t.equal(res.headers['x-echo-id'], id, 'a fresh value per request')
  }
  t.equal(up.seen[0]?.headers['x-trace'], 'id=first-id;ip=127.0.0.1;m=POST;s=http')
  t.equal(up.seen[1]?.headers['x-trace'], 'id=second-id;ip=127.0.0.1;m=POST;s=http')
  t.equal(up.seen[0]?.headers['x-dollar'], 'costs $5 {not} a variable')
})

t.test('may replace Host for a virtual-hosted upstream', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url, route({ request: { set: { Host: 'internal.example' } } })), t)
  const res = await request(`${proxy.url}/h`)
  await res.body.dump()
  t.equal(up.seen[0]?.headers.host, 'internal.example')
  t.equal(up.seen[0]?.headers['x-forwarded-host'], `127.0.0.1:${proxy.port}`, 'the client\'s host is still forwarded')
})

t.test('edits the response headers the client gets', async (t) => {
  const up = await startUpstream(chatty)
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url, route({
    response: {
      remove: ['X-Powered-By', 'cache-control'],
      set: { 'strict-transport-security': 'max-age=63072000', 'cache-control': 'private' },
      add: { 'set-cookie': 'c=3', 'x-route': '${route}' },
    },
  })), t)
  const res = await request(`${proxy.url}/r`, { headers: { cookie: 'kept=1' } })
  t.equal(res.statusCode, 200)
  const body = await res.body.json() as { headers: Record<string, string> }
  t.equal(res.headers['x-powered-by'], undefined)
  t.equal(res.headers['strict-transport-security'], 'max-age=63072000')
  t.equal(res.headers['cache-control'], 'private', 'remove then set')
  t.same(res.headers['set-cookie'], ['a=1', 'b=2', 'c=3'], 'add keeps each Set-Cookie a line of its own')
  t.equal(res.headers['x-route'], 'all')
  t.equal(res.headers['content-type'], 'application/json')
  t.equal(body.headers.cookie, 'kept=1', 'no request edits configured: the request is untouched')
})

t.test('response edits apply to a response the proxy makes itself', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url, {
    plugins: [
      { name: 'headers', config: { response: { set: { 'x-frame-options': 'DENY' } } } },
      { name: 'cors', config: { allowOrigins: ['https://app.example'] } },
    ],
  }), t)
  const res = await request(`${proxy.url}/p`, {
    method: 'OPTIONS',
    headers: { origin: 'https://app.example', 'access-control-request-method': 'GET' },
  })
  await res.body.dump()
  t.equal(res.statusCode, 204)
  t.equal(res.headers['x-frame-options'], 'DENY')
  t.equal(up.seen.length, 0)
})

t.test('a phase without edits gets no hook', async (t) => {
  const ctx = {} as PluginContext
  const none = await plugin.create(schema.parse({}), ctx)
  t.equal(none.onRequest, undefined)
  t.equal(none.onResponse, undefined)
  const reqOnly = await plugin.create(schema.parse({ request: { remove: ['cookie'] } }), ctx)
  t.type(reqOnly.onRequest, 'function')
  t.equal(reqOnly.onResponse, undefined)
  const resOnly = await plugin.create(schema.parse({ response: { add: { 'x-a': '1' } } }), ctx)
  t.equal(resOnly.onRequest, undefined)
  t.type(resOnly.onResponse, 'function')
})

t.test('adding to a cached response\'s repeated field does not grow the stored copy', async (t) => {
  const up = await startUpstream((_req, res) => {
    res.setHeader('cache-control', 'public, max-age=600')
    res.setHeader('link', ['</a.css>; rel=preload', '</b.js>; rel=preload'])
    res.end('cached')
  })
  t.teardown(up.close)
  for (const order of [['cache', 'headers'], ['headers', 'cache']]) {
    const plugins = order.map((name) => name === 'cache' ? { name } : { name, config: { response: { add: { link: '</c.png>; rel=preload' } } } })
    const proxy = await startTestProxy(simpleDoc(up.url, { plugins }), t)
    const counts: number[] = []
    for (let i = 0; i < 4; i++) {
      const res = await request(`${proxy.url}/page`)
      await res.body.dump()
      const link = res.headers.link
      counts.push(link === undefined ? 0 : Array.isArray(link) ? link.length : 1)
    }
    // Listed after the cache, the plugin's line is in the stored copy and is
    // added again to a hit (local responses see every response hook): one
    // more line, but the same on every hit.
    const each = order[0] === 'headers' ? 3 : 4
    t.same(counts, [3, each, each, each], `${order.join(' then ')}: the stored copy does not grow`)
  }
})
