import t from 'tap'
import { once } from 'node:events'
import { access, mkdir, readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { baseDocument, namedUpstream, operatorClient, serves, startTestControlPlane, startTestDataPlane, tempDir, waitFor } from './helpers.ts'

const CACHE_FILE = 'outrider-config-cache.json'

t.test('a cached config that validates but does not build is moved aside; the node starts on the control plane\'s config', async (t) => {
  const a = await namedUpstream(t, 'a')
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json` })
  const admin = operatorClient(t, cp.address, 'admin')
  const v1 = (await admin.putConfig({ configJson: JSON.stringify(baseDocument([['a', a.url]], [{ name: 'a', match: { pathPrefix: '/a' }, cluster: 'a' }])) })).version

  const cacheDir = await tempDir(t)
  await mkdir(cacheDir, { recursive: true })
  // A CA file that was rotated away since the cache was written.
  const poisoned = {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    clusters: [{ name: 's', endpoints: [{ url: 'https://127.0.0.1:9' }], tls: { ca: path.join(cacheDir, 'gone-ca.pem') } }],
    routes: [{ name: 's', match: { pathPrefix: '/' }, cluster: 's' }],
  }
  const file = path.join(cacheDir, CACHE_FILE)
  await writeFile(file, JSON.stringify({ version: '7', hash: 'h7', configJson: JSON.stringify(poisoned), weightHints: [], savedAt: new Date().toISOString() }))

  const dp = await startTestDataPlane(t, cp.address, 'dp-poisoned', { cacheDir })
  t.equal(dp.proxy, undefined, 'the cached config did not start, and nothing else was there to serve')
  t.ok(JSON.parse(await readFile(`${file}.bad`, 'utf8')).configJson, 'the cache file was moved aside')
  const applied = once(dp.client, 'applied')
  await dp.started
  t.equal((await applied)[0], String(v1), 'the control plane\'s config applied')
  t.ok(await serves(dp, '/a/1', 'a /a/1'))
  t.equal((JSON.parse(await readFile(file, 'utf8')) as { version: string }).version, String(v1), 'and is the cache now')
})

t.test('a poisoned cache with a bootstrap config starts on the bootstrap config', async (t) => {
  const { testConfig } = await import('../helpers/proxy.ts')
  const cacheDir = await tempDir(t)
  const file = path.join(cacheDir, CACHE_FILE)
  const poisoned = { ...baseDocument([]), clusters: [{ name: 's', endpoints: [{ url: 'https://127.0.0.1:9' }], tls: { ca: path.join(cacheDir, 'gone-ca.pem') } }] }
  await writeFile(file, JSON.stringify({ version: '7', hash: 'h7', configJson: JSON.stringify(poisoned), savedAt: new Date().toISOString() }))
  const dp = await startTestDataPlane(t, '127.0.0.1:1', 'dp-boot', { cacheDir, bootstrap: testConfig({}) })
  t.equal(dp.proxy?.snapshot.source, 'bootstrap')
  await access(`${file}.bad`)
  t.equal(dp.ready(), false, 'not ready: nothing from the control plane runs')
})
