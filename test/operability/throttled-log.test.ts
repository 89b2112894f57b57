import t from 'tap'
import { createLogger } from '../../src/log.ts'
import { ThrottledLog } from '../../src/throttled-log.ts'

t.test('a throttled warning: one line per interval, and the last burst\'s count is written when the interval ends', { timeout: 10_000 }, async (t) => {
  const records: Array<Record<string, unknown>> = []
  let wrote: () => void = () => {}
  const log = createLogger({ level: 'warn', write: (line) => { records.push(JSON.parse(line) as Record<string, unknown>); wrote() } })
  const written = (): Promise<void> => new Promise<void>((resolve) => { wrote = resolve })
  // The throttle's timer is unref'd (it must not hold a stopping process up): this holds the test's.
  const alive = setInterval(() => {}, 1000)
  t.teardown(() => { clearInterval(alive) })
  const throttled = new ThrottledLog(log, 50)
  for (let i = 1; i <= 5; i++) throttled.warn('redis down', { attempt: i })
  t.match(records, [{ msg: 'redis down', attempt: 1 }], 'the first at once, the repeats held')
  t.notOk('suppressed' in (records[0] ?? {}))
  // No warning follows the burst: the held ones are still reported.
  await written()
  t.match(records[1], { msg: 'redis down', attempt: 5, suppressed: 3 }, 'the last repeat, standing for the 3 before it')
  // That write starts an interval too: a repeat now is held, then written alone.
  throttled.warn('redis down', { attempt: 6 })
  t.equal(records.length, 2)
  await written()
  t.match(records[2], { attempt: 6 })
  t.notOk('suppressed' in (records[2] ?? {}), 'it stood for no other')
})
