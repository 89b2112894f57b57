import t from 'tap'
import { newRequestId } from './request-id.ts'

const V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

t.test('ids are RFC 9562 version 4 UUIDs and do not repeat across pool refills', async (t) => {
  const seen = new Set<string>()
  // Several refills of the 256-id pool.
  for (let i = 0; i < 2000; i++) {
    const id = newRequestId()
    if (!V4.test(id)) { t.fail(`not a v4 UUID: ${id}`); return }
    seen.add(id)
  }
  t.equal(seen.size, 2000)
})

t.test('each id is its own string, not a view of a reused buffer', async (t) => {
  const a = newRequestId()
  const copy = `${a}`
  newRequestId()
  t.equal(a, copy)
})

t.test('the random bits are spread over every hex digit that is not fixed', async (t) => {
  // 122 random bits: every free position takes all 16 values within a few thousand ids.
  const values = Array.from({ length: 36 }, () => new Set<string>())
  for (let i = 0; i < 4000; i++) {
    const id = newRequestId()
    for (let j = 0; j < 36; j++) values[j]!.add(id[j]!)
  }
  for (let j = 0; j < 36; j++) {
    const n = values[j]!.size
    if (j === 8 || j === 13 || j === 18 || j === 23) t.equal(n, 1, `position ${j} is a dash`)
    else if (j === 14) t.equal(n, 1, 'the version digit is always 4')
    else if (j === 19) t.equal(n, 4, 'the variant digit is one of 8, 9, a, b')
    else if (n !== 16) t.fail(`position ${j} took only ${n} values`)
  }
})
