import t from 'tap'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { createLogger } from '../../src/log.ts'
import { createAdminServer } from '../../src/admin.ts'
import type { AddressInfo } from 'node:net'
import { request } from 'undici'

const run = promisify(execFile)

/** A logger at debug whose records are parsed back into objects. */
function capture (): { log: ReturnType<typeof createLogger>, records: Array<Record<string, unknown>> } {
  const records: Array<Record<string, unknown>> = []
  const log = createLogger({ level: 'debug', write: (line) => { records.push(JSON.parse(line) as Record<string, unknown>) } })
  return { log, records }
}

t.test('logging never throws: circular values, a cause cycle, BigInt', async (t) => {
  const { log, records } = capture()
  const circular: Record<string, unknown> = { what: 'plugin state' }
  circular.self = circular
  const loop = new Error('loop')
  loop.cause = loop
  const poisoned = { get boom (): never { throw new Error('getter') } }
  const shared = { a: 1 }
  t.doesNotThrow(() => { log.error('circular', { err: circular }) })
  t.doesNotThrow(() => { log.error('cause cycle', { err: loop }) })
  t.doesNotThrow(() => { log.error('bigint', { n: 10n, nested: { m: 2n } }) })
  t.doesNotThrow(() => { log.error('throwing getter', { poisoned }) })
  t.doesNotThrow(() => { log.error('shared, not circular', { x: shared, y: [shared, shared] }) })
  const a = new Error('a')
  const b = new Error('b', { cause: a })
  a.cause = b
  let deep = new Error('0')
  for (let i = 1; i < 20; i++) deep = new Error(String(i), { cause: deep })
  log.error('two-error cycle', { err: a })
  log.error('deep', { err: deep })
  t.match(records[5], { err: { message: 'a', cause: { message: 'b', cause: '[circular]' } } })
  let depth = 0
  for (let c: unknown = records[6]?.err; typeof c === 'object' && c !== null; c = (c as { cause?: unknown }).cause) depth++
  t.ok(depth > 1 && depth < 10, `a long cause chain is cut (${depth} deep)`)
  t.equal(records.length, 7, 'one line each')
  t.match(records[0], { level: 'error', msg: 'circular', err: { what: 'plugin state', self: '[circular]' } })
  t.match(records[1], { err: { message: 'loop', cause: '[circular]' } }, 'an error its own cause')
  t.match(records[2], { n: '10', nested: { m: '2' } }, 'BigInt as a string')
  t.match(records[3], { level: 'error', msg: 'throwing getter', logError: String }, 'a minimal line when the fields cannot be written')
  t.match(records[4], { x: { a: 1 }, y: [{ a: 1 }, { a: 1 }] }, 'a value met twice is not a cycle')
})

t.test('fields never override the record\'s time, level and msg', async (t) => {
  const { log, records } = capture()
  log.child({ level: 'child' }).warn('real', { time: 'then', level: 'debug', msg: 'fake', other: 1 })
  t.match(records[0], { level: 'warn', msg: 'real', _time: 'then', _level: 'debug', _msg: 'fake', other: 1 })
  t.match(records[0]?.time, /^\d{4}-\d\d-\d\dT/)
  t.equal(records[0]?._level, 'debug', 'a field wins over a child\'s base of the same name, as before')
})

t.test('POST /log-level writes its record at its own level, naming the new one', async (t) => {
  const { log, records } = capture()
  log.setLevel('warn')
  const server = createAdminServer({ version: () => 'v', config: () => ({}), clusters: () => ({}), ready: () => true, draining: () => false, metrics: async () => ({ contentType: 'text/plain', body: '' }) }, log)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const res = await request(`http://127.0.0.1:${(server.address() as AddressInfo).port}/log-level`, { method: 'POST', body: '{"level":"debug"}' })
  t.equal(res.statusCode, 200)
  await res.body.dump()
  const changed = records.find((r) => r.msg === 'log level changed')
  t.match(changed, { level: 'warn', to: 'debug' })
})

t.test('the crash guard survives throws its logger could not serialise', async (t) => {
  const runTs = fileURLToPath(new URL('../../src/run.ts', import.meta.url))
  const logTs = fileURLToPath(new URL('../../src/log.ts', import.meta.url))
  const script = `
    const { installCrashGuards } = await import(${JSON.stringify(runTs)})
    const { createLogger } = await import(${JSON.stringify(logTs)})
    installCrashGuards(createLogger({ write: (l) => process.stdout.write(l) }))
    setTimeout(() => { const o = { what: 'plugin state' }; o.self = o; throw o }, 1)
    setTimeout(() => { const e = new Error('wrapped'); e.cause = e; throw e }, 2)
    setTimeout(() => { Promise.reject(Object.assign(new Error('big'), { n: 1n })) }, 3)
    setTimeout(() => { throw null }, 4)
    setTimeout(() => { console.log('still alive') }, 50)
  `
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script])
  const lines = stdout.trim().split('\n')
  t.equal(lines.filter((l) => l.includes('"msg":"uncaught exception"')).length, 3, 'throw null included')
  t.equal(lines.filter((l) => l.includes('"msg":"unhandled rejection"')).length, 1)
  t.equal(lines.at(-1), 'still alive')
})
