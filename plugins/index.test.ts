import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { plugins, pluginsByName } from './index.ts'
import { pluginSchemas } from './schemas.ts'

// Config is validated with plugins/schemas.ts; the implementation that runs
// it must be the same plugin with the same schema.
t.test('each catalogue entry loads the plugin it names, with the schema config was validated against', async (t) => {
  t.equal(pluginsByName.size, plugins.length, 'names are unique')
  t.same(plugins.map((p) => p.name), pluginSchemas.map((p) => p.name), 'the same plugins, in the same order, in both lists')
  for (const p of plugins) {
    const def = await p.load()
    t.equal(def.name, p.name, `${p.name}: name`)
    t.equal(def.schema, pluginSchemas.find((s) => s.name === p.name)?.schema, `${p.name}: the same schema object`)
    t.equal(typeof def.create, 'function', `${p.name}: create`)
    t.equal(await p.load(), def, `${p.name}: loaded once`)
  }
})

/**
 * Every module URL a fresh process resolves while it validates a config whose
 * one route has `routePlugins` (off its thread, as the CLI does), starts a
 * proxy on it and stops it.
 */
async function modulesLoaded (routePlugins: unknown[]): Promise<string[]> {
  const src = (p: string): string => JSON.stringify(new URL(`../src/${p}`, import.meta.url).href)
  const doc = {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    clusters: [{ name: 'up', endpoints: [{ url: 'http://127.0.0.1:9' }] }],
    routes: [{ name: 'all', cluster: 'up', plugins: routePlugins }],
  }
  const script = `
    import { registerHooks } from 'node:module'
    const seen = []
    registerHooks({ resolve (s, c, next) { const r = next(s, c); seen.push(r.url); return r } })
    const { parseConfigOffThread } = await import(${src('config/off-thread.ts')})
    const { startProxy } = await import(${src('proxy.ts')})
    const { createLogger } = await import(${src('log.ts')})
    const config = await parseConfigOffThread(${JSON.stringify(JSON.stringify(doc))}, 'inline.json')
    const proxy = await startProxy({ config, source: 'inline.json', log: createLogger({ level: 'error', write: () => {} }) })
    await proxy.shutdown(100)
    process.stdout.write(JSON.stringify(seen))
  `
  const dir = await mkdtemp(join(tmpdir(), 'outrider-modules-'))
  try {
    const file = join(dir, 'start.mjs')
    await writeFile(file, script)
    const { stdout } = await promisify(execFile)(process.execPath, [file])
    return JSON.parse(stdout) as string[]
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

const HEAVY = /\/node_modules\/(jose|ioredis|rate-limiter-flexible|lru-cache)\//
const VALIDATION = /\/node_modules\/(zod|yaml)\/|\/src\/config\/(load|schema)\.ts$|\/plugins\/schemas\.ts$/
const implementation = (name: string) => new RegExp(`/plugins/${name}/plugin\\.ts$`)

t.test('a proxy without plugins loads no plugin, and validates its config on another thread', async (t) => {
  const seen = await modulesLoaded([])
  t.ok(seen.some((u) => u.endsWith('/src/proxy.ts')), 'the hook saw the proxy load')
  t.same(seen.filter((u) => /\/plugins\/[^/]+\/plugin\.ts$/.test(u) || HEAVY.test(u)), [], 'no plugin, no plugin library')
  t.same(seen.filter((u) => VALIDATION.test(u)), [], 'no zod, yaml or schema on the serving thread')
})

t.test('a plugin is imported when a route uses it, and only that one', async (t) => {
  const seen = await modulesLoaded([{ name: 'headers', config: { request: { set: { 'x-a': '1' } } } }])
  t.ok(seen.some((u) => implementation('headers').test(u)), 'headers loaded')
  t.notOk(seen.some((u) => implementation('jwt-auth').test(u) || implementation('cache').test(u)), 'others not loaded')
  t.notOk(seen.some((u) => HEAVY.test(u)), 'no heavy library')
})
