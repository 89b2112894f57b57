import t from 'tap'
import type { Test } from 'tap'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.ts'
import { freePort, runCli } from '../helpers/cli.ts'
import { promisify } from 'node:util'

/**
 * What the serving thread loads stays in its heap for good, and every major GC
 * marks that heap: a sidecar with a plain config must not carry the packages
 * of features it does not use. Validation (zod, yaml) runs in a short-lived
 * child process; plugins, tracing, the access log and the WebSocket relay
 * load when a config or a request first needs them.
 */

const HOOK = fileURLToPath(new URL('../helpers/record-modules.js', import.meta.url))
const WARM = fileURLToPath(new URL('../../src/warm-compile-cache.js', import.meta.url))

/** The npm packages among the resolved module URLs, and `node:amaro` (`node:amaro validation`) when a process loaded the TypeScript stripper. */
function packages (urls: string): Set<string> {
  const out = new Set<string>()
  for (const m of urls.matchAll(/^node:amaro.*$/gm)) out.add(m[0])
  for (const m of urls.matchAll(/\/node_modules\/((?:@[^/]+\/)?[^/]+)\//g)) out.add(m[1] as string)
  return out
}

async function serveOnce (t: Test, extra: string, routeExtra = '', env: NodeJS.ProcessEnv = {}): Promise<Set<string>> {
  const up = await startUpstream((_req, res) => { res.end('ok') })
  t.teardown(up.close)
  const dir = await mkdtemp(path.join(tmpdir(), 'outrider-footprint-'))
  const [port, admin] = [await freePort(), await freePort()]
  const file = path.join(dir, 'outrider.yaml')
  await writeFile(file, `listen: { host: 127.0.0.1, port: ${port} }
admin: { host: 127.0.0.1, port: ${admin} }
${extra.replaceAll('$DIR', dir)}
clusters: [{ name: up, endpoints: [{ url: ${up.url} }] }]
routes: [{ name: all, match: { pathPrefix: / }, cluster: up${routeExtra === '' ? '' : `, ${routeExtra}`} }]
`)
  const log = path.join(dir, 'modules.txt')
  const proc = runCli(['--config', file], { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${HOOK}`, OUTRIDER_MODULE_LOG: log, ...env })
  t.teardown(() => { proc.child.kill('SIGKILL') })
  await proc.waitForLog('proxy listening')
  const res = await request(`http://127.0.0.1:${port}/x`)
  t.equal(await res.body.text(), 'ok', 'served')
  await request(`http://127.0.0.1:${admin}/metrics`).then(async (r) => await r.body.text())
  proc.child.kill('SIGTERM')
  t.equal((await proc.exited).code, 0, 'drained and exited 0')
  return packages(await readFile(log, 'utf8'))
}

t.test('a plain config: the serving thread loads undici and prom-client, not the packages of unused features', async (t) => {
  const loaded = await serveOnce(t, '')
  t.ok(loaded.has('undici') && loaded.has('prom-client'), 'what serving and /metrics need is loaded (so the recording works)')
  for (const pkg of ['zod', 'yaml', 'pino', 'http-proxy-3', 'cockatiel', 'jose', 'ioredis', 'lru-cache', 'rate-limiter-flexible', '@grpc/grpc-js', '@opentelemetry/sdk-trace']) {
    t.notOk(loaded.has(pkg), `${pkg} is not loaded`)
  }
})

t.test('an access log loads pino; a retry policy loads cockatiel', async (t) => {
  const loaded = await serveOnce(t, 'accessLog: { destination: $DIR/access.log }')
  t.ok(loaded.has('pino'), 'pino is loaded')
  t.notOk(loaded.has('http-proxy-3'), 'still no WebSocket relay')
  t.notOk(loaded.has('cockatiel'), 'nor cockatiel')
  const retrying = await serveOnce(t, '', 'retry: { maxAttempts: 2 }')
  t.ok(retrying.has('cockatiel'), 'cockatiel is loaded for a retry policy')
})

t.test('with its modules in the compile cache, the proxy never loads the TypeScript stripper', async (t) => {
  // The default cache directory (what `npm ci` fills), in a temp dir of its own.
  const env = { TMPDIR: await mkdtemp(path.join(tmpdir(), 'outrider-compile-cache-')) }
  const { stdout } = await promisify(execFile)(process.execPath, [WARM], { env: { ...process.env, ...env } })
  t.match(stdout, `in ${path.join(env.TMPDIR, 'node-compile-cache')}`, 'npm ci\'s prepare step filled the cache')
  const warm = await serveOnce(t, '', '', env)
  t.notOk(warm.has('node:amaro'), 'not loaded: every module came stripped from the cache')
  t.notOk(warm.has('node:amaro validation'), 'not in the config validation process either')
  t.ok(warm.has('undici'), 'and it served')
  const uncached = await serveOnce(t, '', '', { NODE_DISABLE_COMPILE_CACHE: '1' })
  t.ok(uncached.has('node:amaro') && uncached.has('node:amaro validation'), 'without the cache both processes load it (so the recording sees it)')
})
