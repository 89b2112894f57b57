import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { startUpstream, type Upstream } from '../../test/helpers/upstream.ts'
import { startTestProxy, simpleDoc, type TestProxy } from '../../test/helpers/proxy.ts'
import { ConfigError } from '../../src/errors.ts'
import type { PluginContext, RequestContext } from '../../src/plugin.ts'
import { schema } from './schema.ts'
import plugin, { hashApiKey } from './plugin.ts'

const READER = 'rk_3f9c2a7e6b1d4058a9e0c7b2d1f4e8a6'
const WRITER = 'wk_8b1e4d2c9f0a4e7b8c3d6a1f2e9b0c47'
const keys = [
  { id: 'reader', hash: hashApiKey(READER), scopes: ['items:read'] },
  { id: 'writer', hash: hashApiKey(WRITER), scopes: ['items:read', 'items:write'] },
]

async function setup (t: { teardown (fn: () => unknown): void }, config: Record<string, unknown>): Promise<{ up: Upstream, proxy: TestProxy }> {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url, { plugins: [{ name: 'api-key', config: { keys, ...config } }] }), t)
  return { up, proxy }
}

async function get (proxy: TestProxy, path: string, headers: Record<string, string | string[]> = {}): Promise<{ status: number, headers: Record<string, string | string[] | undefined>, body: Record<string, unknown> }> {
  const res = await request(`${proxy.url}${path}`, { headers })
  return { status: res.statusCode, headers: res.headers, body: await res.body.json() as Record<string, unknown> }
}

t.test('a valid key passes; the key is removed and the id forwarded', async (t) => {
  const { up, proxy } = await setup(t, { forwardId: 'x-consumer-id' })
  const res = await get(proxy, '/items', { 'x-api-key': READER, 'x-consumer-id': 'writer' })
  t.equal(res.status, 200)
  const seen = up.seen[0]?.headers ?? {}
  t.equal(seen['x-api-key'], undefined, 'the credential stays at the proxy')
  t.equal(seen['x-consumer-id'], 'reader', 'the key\'s id, not the client\'s forgery')
})

t.test('refuses a missing or unknown key with 401 and a challenge', async (t) => {
  const { up, proxy } = await setup(t, { realm: 'items' })
  for (const headers of [{}, { 'x-api-key': 'wrong' }, { 'x-api-key': `${READER}x` }, { 'x-api-key': hashApiKey(READER) }, { 'x-api-key': '' }] as Array<Record<string, string>>) {
    const res = await get(proxy, '/items', headers)
    t.equal(res.status, 401, JSON.stringify(headers))
    t.equal(res.headers['www-authenticate'], 'ApiKey realm="items"')
    t.equal(res.body.code, 'UNAUTHORIZED')
  }
  const twice = await get(proxy, '/items', { 'x-api-key': [READER, READER] })
  t.equal(twice.status, 400, 'a repeated key header is ambiguous')
  t.equal(up.seen.length, 0)
})

t.test('refuses a key without the route\'s scopes with 403', async (t) => {
  const { up, proxy } = await setup(t, { requiredScopes: ['items:write'] })
  const res = await get(proxy, '/items', { 'x-api-key': READER })
  t.equal(res.status, 403)
  t.equal(res.body.code, 'FORBIDDEN')
  t.equal((await get(proxy, '/items', { 'x-api-key': WRITER })).status, 200)
  t.equal(up.seen.length, 1)
})

t.test('reads the key from a query parameter and strips only that parameter', async (t) => {
  const { up, proxy } = await setup(t, { keyFrom: { from: 'query', name: 'api_key' } })
  t.equal((await get(proxy, `/items?page=2&api_key=${encodeURIComponent(READER)}&q=a%20b&flag`)).status, 200)
  t.equal(up.seen[0]?.url, '/items?page=2&q=a%20b&flag', 'other parameters keep their bytes and order')
  t.equal((await get(proxy, `/items?api_key=${READER}`)).status, 200)
  t.equal(up.seen[1]?.url, '/items', 'no empty ? left behind')
  t.equal((await get(proxy, '/items?api_key=nope')).status, 401)
  t.equal((await get(proxy, '/items?key=' + READER)).status, 401, 'another parameter')
  t.equal((await get(proxy, `/items?api_key=${READER}&api_key=${WRITER}`)).status, 400, 'repeated')
  t.equal((await get(proxy, '/items', { 'x-api-key': READER })).status, 401, 'the header is not this route\'s source')
  t.equal(up.seen.length, 2)
})

t.test('a percent-encoded spelling of the key parameter is the same parameter', async (t) => {
  const { up, proxy } = await setup(t, { keyFrom: { from: 'query', name: 'api_key' } })
  t.equal((await get(proxy, `/items?api%5Fkey=${READER}&x=1`)).status, 200, 'api%5Fkey is api_key')
  t.equal(up.seen[0]?.url, '/items?x=1', 'and is removed')
  t.equal((await get(proxy, `/items?api_key=${READER}&api%5Fkey=${WRITER}`)).status, 400, 'two spellings: repeated')
  t.equal((await get(proxy, `/items?api_key=${READER}&%61pi_key=${READER}`)).status, 400, 'even with the same key')
  t.equal((await get(proxy, `/items?api_key=${READER}&api_key%00=z&api%ZZkey=y`)).status, 200, 'other names stay other names')
  t.equal(up.seen[1]?.url, '/items?api_key%00=z&api%ZZkey=y')
})

t.test('forwardKey keeps the key for the upstream', async (t) => {
  const { up, proxy } = await setup(t, { forwardKey: true })
  t.equal((await get(proxy, '/items', { 'x-api-key': WRITER })).status, 200)
  t.equal(up.seen[0]?.headers['x-api-key'], WRITER)
})

t.test('loads more keys from a YAML or JSON file', async (t) => {
  const dir = t.testdir()
  const yamlFile = join(dir, 'keys.yaml')
  const jsonFile = join(dir, 'keys.json')
  await writeFile(yamlFile, `- id: batch\n  hash: ${hashApiKey('batch-key-0123456789abcdef')}\n  scopes: [items:read]\n`)
  await writeFile(jsonFile, JSON.stringify([{ id: 'cron', hash: hashApiKey('cron-key-0123456789abcdef') }]))
  const { proxy } = await setup(t, { keysFile: yamlFile })
  t.equal((await get(proxy, '/items', { 'x-api-key': 'batch-key-0123456789abcdef' })).status, 200, 'from the file')
  t.equal((await get(proxy, '/items', { 'x-api-key': READER })).status, 200, 'and from the config')
  const ctx = {} as PluginContext
  const hooks = await plugin.create(schema.parse({ keysFile: jsonFile }), ctx)
  const rc = { upstreamHeaders: { 'x-api-key': 'cron-key-0123456789abcdef' }, identity: undefined, annotate () {} } as unknown as RequestContext
  hooks.onRequest?.(rc)
  t.same(rc.identity, { subject: 'cron', scopes: [] }, 'sets ctx.identity')
})

async function failure (fn: () => unknown): Promise<unknown> {
  try {
    await fn()
    return undefined
  } catch (err) {
    return err
  }
}

t.test('a bad keys file fails the config with its path', async (t) => {
  const dir = t.testdir({ 'bad.yaml': '- id: a\n  hash: plaintext\n', 'dup.json': JSON.stringify([{ id: 'x', hash: keys[0]?.hash }]) })
  const ctx = {} as PluginContext
  const bad = await failure(() => plugin.create(schema.parse({ keysFile: join(dir, 'bad.yaml') }), ctx))
  t.ok(bad instanceof ConfigError)
  t.equal((bad as ConfigError).path, '[0].hash')
  const dup = await failure(() => plugin.create(schema.parse({ keys, keysFile: join(dir, 'dup.json') }), ctx))
  t.ok(dup instanceof ConfigError, 'a key in both places')
  const missing = await failure(() => plugin.create(schema.parse({ keysFile: join(dir, 'nope.yaml') }), ctx))
  t.ok(missing instanceof ConfigError)
  await t.rejects(startTestProxy(simpleDoc('http://127.0.0.1:1', { plugins: [{ name: 'api-key', config: { keysFile: join(dir, 'bad.yaml') } }] })), ConfigError as unknown as Error, 'the proxy does not start on it')
})
