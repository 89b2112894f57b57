import t from 'tap'
import { RateLimiterMemory } from 'rate-limiter-flexible'
import { KeyCap, MemoryStore } from './memory.ts'
import type { WindowCounter } from './store.ts'

/** What `n` hits on `key` said: remaining after each, -1 once refused. */
async function hits (counter: WindowCounter, key: string, n = 1): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    const r = await counter.hit(key)
    out.push(r.allowed ? r.remaining : -1)
  }
  return out
}

t.test('a counter keeps at most maxKeys keys, forgetting the least recently counted', async (t) => {
  const store = new MemoryStore({ maxKeys: 3 })
  t.teardown(() => store.close())
  const c = store.counter('cap', { points: 2, seconds: 60 })
  for (const key of ['a', 'b', 'c']) t.same(await hits(c, key), [1])
  t.same(await hits(c, 'a'), [0], 'a is the most recent now')
  t.same(await hits(c, 'd'), [1], 'd takes b\'s place')
  t.same(await hits(c, 'b'), [1], 'b was forgotten: a new window')
  t.same(await hits(c, 'a'), [-1], 'a is still counted')
  t.same(await hits(c, 'c'), [1], 'c went for b')
})

t.test('the limiter under the cap holds no more keys than the cap', async (t) => {
  const limiter = new RateLimiterMemory({ points: 10, duration: 3600, keyPrefix: '' })
  const cap = new KeyCap(limiter, 1000)
  for (let i = 0; i < 20_000; i++) {
    const key = `h=tenant-${i}`
    cap.touch(key)
    await limiter.consume(key)
  }
  t.equal(limiter.dump().storage.length, 1000)
  t.equal(await limiter.get('h=tenant-0'), null, 'the first keys went')
  t.equal((await limiter.get('h=tenant-19999'))?.consumedPoints, 1, 'the last ones stay')
})

t.test('a refund for a key already forgotten is not made', async (t) => {
  const store = new MemoryStore({ maxKeys: 1 })
  t.teardown(() => store.close())
  const c = store.counter('refund', { points: 1, seconds: 60 })
  t.same(await hits(c, 'a'), [0])
  t.same(await hits(c, 'b'), [0], 'a is forgotten')
  c.refund('a')
  t.same(await hits(c, 'a'), [0], 'a starts a plain new window: the refund was not kept beside the cap')
})

t.test('a store with another maxKeys on the same counter resizes it, least recent keys first out', async (t) => {
  const wide = new MemoryStore({ maxKeys: 10 })
  t.teardown(() => wide.close())
  const before = wide.counter('resize', { points: 1, seconds: 60 })
  for (const key of ['a', 'b', 'c']) t.same(await hits(before, key), [0])
  // The next snapshot's instance, built before the old one closes, with a smaller cap.
  const narrow = new MemoryStore({ maxKeys: 2 })
  t.teardown(() => narrow.close())
  const after = narrow.counter('resize', { points: 1, seconds: 60 })
  t.same(await hits(after, 'c'), [-1], 'the count carried over')
  t.same(await hits(after, 'a'), [0], 'a, the least recent, went')
  t.same(await hits(after, 'b'), [0], 'and then b')
})
