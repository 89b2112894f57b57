import t from 'tap'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { ControlPlaneClient, backoffDelay, parseLabels, readCachedConfig } from './control-plane-client.ts'
import { createLogger } from './log.ts'
import { droppingPort } from '../test/helpers/ports.ts'

const quiet = createLogger({ level: 'error', write: () => {} })

t.test('back-off doubles up to the cap, drawn from the upper half (jitter)', async (t) => {
  for (let attempt = 0; attempt < 12; attempt++) {
    const cap = Math.min(1000, 50 * 2 ** attempt)
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(attempt, { initialMs: 50, maxMs: 1000 })
      if (d < cap / 2 || d > cap) t.fail(`attempt ${attempt}: ${d} outside [${cap / 2}, ${cap}]`)
    }
  }
  const spread = new Set(Array.from({ length: 20 }, () => backoffDelay(5)))
  t.ok(spread.size > 5, 'delays differ between nodes')
  t.equal(backoffDelay(1000, { initialMs: 500, maxMs: 30_000 }) <= 30_000, true, 'no overflow for a long outage')
})

t.test('labels parse as k=v pairs', async (t) => {
  t.same(parseLabels('zone=eu-1, tier=edge,app.kubernetes.io/name=web'), { zone: 'eu-1', tier: 'edge', 'app.kubernetes.io/name': 'web' })
  t.same(parseLabels(''), {})
  t.same(parseLabels('empty='), { empty: '' })
  t.throws(() => parseLabels('zone'), /"zone" is not key=value/)
  t.throws(() => parseLabels('=x'), /not key=value/)
})

t.test('a cache that is missing, corrupt or no longer valid here is ignored', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'outrider-cache-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  t.equal(await readCachedConfig(dir, quiet), undefined, 'none')
  const file = path.join(dir, 'outrider-config-cache.json')
  await writeFile(file, '{ torn')
  t.equal(await readCachedConfig(dir, quiet), undefined, 'corrupt')
  const doc = { routes: [], clusters: [{ name: 'a', endpoints: [{ url: 'http://${UPSTREAM_HOST}:80' }] }] }
  await writeFile(file, JSON.stringify({ version: '3', hash: 'h', configJson: JSON.stringify(doc), savedAt: 'x' }))
  t.equal(await readCachedConfig(dir, quiet, {}), undefined, 'its ${UPSTREAM_HOST} is not set on this node any more')
  const ok = await readCachedConfig(dir, quiet, { UPSTREAM_HOST: '10.0.0.1' })
  t.equal(ok?.cached.version, '3')
  t.equal(ok?.config.clusters[0]?.endpoints[0]?.url, 'http://10.0.0.1:80')
})

t.test('without a control plane the client keeps retrying with growing delays', async (t) => {
  const port = await droppingPort(t)
  const client = new ControlPlaneClient({ address: `127.0.0.1:${port}`, nodeId: 'n', apply: async () => {}, log: quiet, backoff: { initialMs: 20, maxMs: 160 } })
  t.teardown(() => { client.close() })
  const at: number[] = []
  const codes: number[] = []
  client.on('disconnected', (code: number) => { at.push(Date.now()); codes.push(code) })
  client.start()
  // Four attempts, however long each channel takes to fail on a busy machine.
  for (let i = 0; i < 200 && at.length < 4; i++) await new Promise((resolve) => setTimeout(resolve, 50))
  t.ok(at.length >= 4, `retried (${at.length} attempts)`)
  t.ok(codes.every((c) => c === grpc.status.UNAVAILABLE))
  const gaps = at.slice(1).map((x, i) => x - (at[i] as number))
  t.ok(gaps.every((g) => g >= 9), `no busy loop (${gaps.join(', ')} ms)`)
  // Backoff is capped at 160 ms (with jitter); the rest of a gap is the
  // attempt itself, which a loaded machine can stretch.
  t.ok(gaps.every((g) => g < 2000), `the cap holds (${gaps.join(', ')} ms)`)
  t.equal(client.connected, false)
  t.equal(client.received, false)
})
