import t from 'tap'
import type { BalancedEndpoint } from '../balancer.ts'
import { ConsistentHashRing, MAX_RING_POINTS, createHashKeyExtractor, murmur3, pointCounts } from './consistent-hash.ts'

const endpoints = (...weights: number[]): BalancedEndpoint[] =>
  weights.map((weight, i) => ({ id: `http://10.0.0.${i + 1}:80`, weight, inflight: 0, healthy: true }))

const keys = Array.from({ length: 10_000 }, (_, i) => `user-${i}`)

t.test('murmur3 matches the reference x86 32-bit vectors', async (t) => {
  t.equal(murmur3(''), 0)
  t.equal(murmur3('', 1), 0x514e28b7)
  t.equal(murmur3('test'), 0xba6bd213)
  t.equal(murmur3('Hello, world!', 1234), 0xfaf6cdb3)
  t.equal(murmur3('The quick brown fox jumps over the lazy dog'), 0x2e4ff723)
  // Hashes the UTF-8 bytes, so non-ASCII keys agree with other implementations.
  t.equal(murmur3('é€😀abc', 7), 0xcd43b369)
})

t.test('the same key always maps to the same endpoint', async (t) => {
  const ring = new ConsistentHashRing(endpoints(1, 1, 1, 1, 1))
  const again = new ConsistentHashRing(endpoints(1, 1, 1, 1, 1))
  for (const key of keys.slice(0, 1000)) {
    const e = ring.pick(key)
    t.equal(ring.pick(key), e)
    t.equal(again.pick(key)?.id, e?.id)
  }
})

t.test('10k keys spread within ±25% of the mean', async (t) => {
  const eps = endpoints(1, 1, 1, 1, 1)
  const ring = new ConsistentHashRing(eps)
  const counts = eps.map(() => 0)
  for (const key of keys) counts[eps.indexOf(ring.pick(key)!)]!++
  const mean = keys.length / eps.length
  for (const c of counts) t.ok(Math.abs(c - mean) <= mean * 0.25, `${c} vs mean ${mean}`)
})

t.test('weights scale an endpoint\'s share', async (t) => {
  const eps = endpoints(1, 3)
  const ring = new ConsistentHashRing(eps)
  let heavy = 0
  for (const key of keys) if (ring.pick(key) === eps[1]) heavy++
  t.ok(heavy > 7000 && heavy < 8000, `${heavy} of 10000`)
})

t.test('an endpoint\'s points depend on its own weight: adding a lighter one moves only keys to it', async (t) => {
  t.same(pointCounts(endpoints(2, 2)), [200, 200])
  t.same(pointCounts(endpoints(2, 2, 1)), [200, 200, 100], 'no common divisor rescales the others')
  for (const [before, after] of [[[2, 2], [2, 2, 1]], [[2, 2, 2, 1], [2, 2, 2]], [[10, 10, 10], [10, 10, 10, 5]]] as const) {
    const a = new ConsistentHashRing(endpoints(...before))
    const b = new ConsistentHashRing(endpoints(...after))
    // The endpoint that came or went is the last of the longer list.
    const changed = `http://10.0.0.${Math.max(before.length, after.length)}:80`
    let moved = 0
    for (const key of keys) {
      const x = a.pick(key)?.id
      const y = b.pick(key)?.id
      if (x !== y && x !== changed && y !== changed) moved++
    }
    t.equal(moved, 0, `${before.join(',')} → ${after.join(',')}: no key moves between endpoints present both times`)
  }
  t.ok(pointCounts(endpoints(...Array<number>(20).fill(1000))).every((n) => n === Math.floor(MAX_RING_POINTS / 20_000 * 1000)), 'very large weights are scaled down alike, within the cap')
})

t.test('the ring is bounded, and weights still set the shares', async (t) => {
  const eps = endpoints(1000, 999, 1)
  const counts = pointCounts(eps)
  const total = counts.reduce((a, b) => a + b)
  t.ok(total <= MAX_RING_POINTS, `${total} points`)
  t.ok(counts[2]! >= 1, 'the lightest endpoint keeps a point')
  t.ok(Math.abs(counts[0]! / counts[1]! - 1000 / 999) < 0.01, 'proportions kept')
  const many = endpoints(...Array.from({ length: 300 }, (_, i) => 1000 - i))
  t.ok(pointCounts(many).reduce((a, b) => a + b) <= MAX_RING_POINTS + many.length)
  const ring = new ConsistentHashRing(eps)
  let heavy = 0
  for (const key of keys) if (ring.pick(key) === eps[0]) heavy++
  t.ok(heavy > 4500 && heavy < 5500, `${heavy} of 10000 on the first of two near-equal endpoints`)
})

t.test('removing one of 5 endpoints only moves its own keys', async (t) => {
  const eps = endpoints(1, 1, 1, 1, 1)
  const before = new ConsistentHashRing(eps)
  const removed = eps[2]!
  const after = new ConsistentHashRing(eps.filter((e) => e !== removed))
  let kept = 0
  let stayed = 0
  const moved = new Map<string, number>()
  for (const key of keys) {
    const was = before.pick(key)!
    const now = after.pick(key)!
    if (was !== removed) {
      kept++
      if (now === was) stayed++
    } else {
      moved.set(now.id, (moved.get(now.id) ?? 0) + 1)
    }
  }
  t.equal(stayed, kept, 'every key not on the removed endpoint keeps its endpoint')
  t.equal(moved.size, 4, 'the removed endpoint\'s keys spread over all the others')
  t.notOk(moved.has(removed.id))
})

t.test('an unhealthy endpoint is skipped and its keys return when it recovers', async (t) => {
  const eps = endpoints(1, 1, 1, 1, 1)
  const ring = new ConsistentHashRing(eps)
  const owner = keys.map((key) => ring.pick(key))
  eps[1]!.healthy = false
  eps[3]!.healthy = false
  keys.forEach((key, i) => {
    const e = ring.pick(key)!
    if (e.id === eps[1]!.id || e.id === eps[3]!.id) t.fail(`picked unhealthy for ${key}`)
    // Keys of healthy endpoints stay where they were.
    if (owner[i]!.healthy && e !== owner[i]) t.fail(`${key} moved`)
  })
  eps[1]!.healthy = true
  eps[3]!.healthy = true
  t.same(keys.map((key) => ring.pick(key)), owner)
})

t.test('without a key, falls back to round robin over healthy endpoints', async (t) => {
  const eps = endpoints(1, 1, 1)
  const ring = new ConsistentHashRing(eps)
  eps[0]!.healthy = false
  t.same(Array.from({ length: 4 }, () => ring.pick(undefined)), [eps[1], eps[2], eps[1], eps[2]])
})

t.test('undefined when none is healthy', async (t) => {
  const eps = endpoints(1, 2, 3)
  const ring = new ConsistentHashRing(eps)
  for (const e of eps) e.healthy = false
  t.equal(ring.pick('user-1'), undefined)
  t.equal(ring.pick(undefined), undefined)
  t.equal(new ConsistentHashRing([]).pick('user-1'), undefined)
})

t.test('createHashKeyExtractor: header', async (t) => {
  const keyOf = createHashKeyExtractor({ by: 'header', header: 'x-user-id' })
  t.equal(keyOf({ 'x-user-id': 'u1' }, '10.0.0.9'), 'u1')
  t.equal(keyOf({ 'x-user-id': ['u1', 'u2'] }, '10.0.0.9'), 'u1')
  t.equal(keyOf({ 'x-user-id': '' }, '10.0.0.9'), undefined)
  t.equal(keyOf({}, '10.0.0.9'), undefined)
})

t.test('createHashKeyExtractor: cookie', async (t) => {
  const keyOf = createHashKeyExtractor({ by: 'cookie', cookie: 'session' })
  const key = (cookie: string | string[] | undefined): string | undefined => keyOf({ cookie }, '10.0.0.9')
  t.equal(key('session=abc'), 'abc')
  t.equal(key('theme=dark; session=abc; lang=en'), 'abc')
  t.equal(key('theme=dark;session=abc'), 'abc')
  t.equal(key('xsession=no; other=session=no; session=yes'), 'yes')
  t.equal(key('session="quoted"'), 'quoted')
  t.equal(key('session=abc ; x=1'), 'abc')
  t.equal(key('session=first; session=second'), 'first')
  t.equal(key(['theme=dark', 'session=abc']), 'abc')
  t.equal(key('Session=abc'), undefined, 'cookie names are case-sensitive')
  t.equal(key('session='), undefined)
  t.equal(key('theme=dark'), undefined)
  t.equal(key(undefined), undefined)
})

t.test('createHashKeyExtractor: ip', async (t) => {
  const keyOf = createHashKeyExtractor({ by: 'ip' })
  t.equal(keyOf({ 'x-forwarded-for': '1.2.3.4' }, '10.0.0.9'), '10.0.0.9')
  t.equal(keyOf({}, ''), undefined)
})
