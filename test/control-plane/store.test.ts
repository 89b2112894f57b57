import t from 'tap'
import { readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { DesiredConfig, describeDiff } from '../../control-plane/desired-config.ts'
import { InvalidConfigError, StoreError } from '../../control-plane/errors.ts'
import { FileStore, writeFileAtomic } from '../../control-plane/store.ts'
import { canonicalJson, contentHash, validateDocument } from '../../control-plane/validate.ts'
import { tempDir } from './helpers.ts'

const cluster = (name: string): Record<string, unknown> => ({ name, endpoints: [{ url: 'http://127.0.0.1:9' }] })

t.test('writeFileAtomic replaces the file whole and leaves no temporary file', async (t) => {
  const dir = await tempDir(t)
  const file = `${dir}/state.json`
  await writeFileAtomic(file, 'one\n')
  await writeFileAtomic(file, 'two\n')
  t.equal(await readFile(file, 'utf8'), 'two\n')
  t.same(await readdir(dir), ['state.json'])
})

t.test('a change that cannot be saved is refused and changes nothing', async (t) => {
  const dir = await tempDir(t)
  const desired = await DesiredConfig.open(new FileStore(`${dir}/gone/store.json`))
  let announced = 0
  desired.subscribe(() => { announced++ })
  const err = await desired.change('ada', { action: 'put_cluster', cluster: cluster('a') }).catch((e: unknown) => e)
  t.type(err, StoreError, 'the directory does not exist: the write fails')
  t.equal(desired.current, undefined)
  t.same(desired.audit(), [])
  t.equal(announced, 0, 'nothing pushed')
})

t.test('history is bounded, the version counter is not; a store that is not ours is refused', async (t) => {
  const dir = await tempDir(t)
  const store = new FileStore(`${dir}/store.json`)
  const desired = await DesiredConfig.open(store, { historyLimit: 2, auditLimit: 3 })
  for (const name of ['a', 'b', 'c', 'd']) await desired.change('ada', { action: 'put_cluster', cluster: cluster(name) })
  t.same(desired.history().map((v) => v.version), [4, 3])
  t.same(desired.audit().map((a) => a.seq), [4, 3, 2])
  const reopened = await DesiredConfig.open(store, { historyLimit: 2 })
  t.equal(reopened.current?.version, 4)
  t.equal((await reopened.change('ada', { action: 'delete_cluster', name: 'a' })).version, 5)

  await writeFile(`${dir}/other.json`, '{"hello":"world"}')
  await t.rejects(DesiredConfig.open(new FileStore(`${dir}/other.json`)), /not an outrider-cp store/)
  await rm(`${dir}/store.json`)
  t.equal((await DesiredConfig.open(store)).current, undefined, 'no file: an empty control plane')
})

t.test('changes are serialised: concurrent puts get consecutive versions and all land', async (t) => {
  const desired = await DesiredConfig.open(new FileStore(`${await tempDir(t)}/store.json`))
  const results = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((n) => desired.change('ada', { action: 'put_cluster', cluster: cluster(n) })))
  t.same(results.map((r) => r.version).sort(), [1, 2, 3, 4, 5])
  t.same(desired.clusters().map((c) => c.name).sort(), ['a', 'b', 'c', 'd', 'e'])
})

t.test('validation uses the data plane\'s loader; ${NAME} references are checked as written', async (t) => {
  const ok = validateDocument({ clusters: [cluster('a')], routes: [{ name: 'r', cluster: 'a', match: { headers: { 'x-key': '${SECRET}' } } }] })
  t.equal(ok.ok, true, 'a reference is left for the data plane to resolve')
  const bad = validateDocument({ routes: [{ name: 'r', cluster: 'x' }] })
  t.notOk(bad.ok)
  if (!bad.ok) t.same(bad.issues.map((i) => i.path), ['routes[0].cluster'])
  t.same(validateDocument([]), { ok: false, issues: [{ path: '', expected: 'a config document (a JSON object)' }] })

  const desired = await DesiredConfig.open(new FileStore(`${await tempDir(t)}/store.json`))
  const noName = await desired.change('ada', { action: 'put_route', route: { cluster: 'a' } }).catch((e: unknown) => e)
  t.type(noName, InvalidConfigError)
  t.match((noName as InvalidConfigError).issues, [{ path: 'name' }])
})

t.test('content hashes ignore key order; diffs say what changed', async (t) => {
  t.equal(canonicalJson({ b: 1, a: { d: 2, c: [3, { f: 1, e: 0 }] } }), '{"a":{"c":[3,{"e":0,"f":1}],"d":2},"b":1}')
  t.equal(contentHash({ a: 1, b: 2 }), contentHash({ b: 2, a: 1 }))
  t.not(contentHash({ a: 1 }), contentHash({ a: 2 }))
  const before = { clusters: [cluster('a'), cluster('b')], routes: [{ name: 'x', cluster: 'a' }, { name: 'y', cluster: 'a' }] }
  const after = { listen: { port: 1 }, clusters: [cluster('a'), { ...cluster('c') }], routes: [{ name: 'y', cluster: 'c' }, { name: 'x', cluster: 'a' }] }
  t.equal(describeDiff(before, after), 'clusters: added c; removed b | routes: changed y; reordered | listen changed')
  t.equal(describeDiff(undefined, {}), 'no change')
})
