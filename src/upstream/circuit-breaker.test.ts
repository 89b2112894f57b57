import t from 'tap'
import { CircuitBreaker, type BreakerState } from './circuit-breaker.ts'
import { loadCockatiel } from './cockatiel.ts'

await loadCockatiel()

function clock (): { now: () => number, advance: (ms: number) => void } {
  let t = 1_000_000
  return { now: () => t, advance: (ms) => { t += ms } }
}

t.test('consecutive: opens, half-opens with one probe, closes on success', async (t) => {
  const c = clock()
  const changes: BreakerState[] = []
  const b = new CircuitBreaker({ trigger: { by: 'consecutive', failures: 3 }, halfOpenAfter: 1000, maxHalfOpenAfter: 8000 }, { now: c.now, onChange: (s) => changes.push(s) })
  b.failure(); b.failure(); b.success(); b.failure(); b.failure()
  t.equal(b.state, 'closed', 'a success resets the consecutive count')
  b.failure()
  t.equal(b.state, 'open')
  t.notOk(b.allow(), 'open refuses')
  c.advance(999)
  t.notOk(b.allow())
  c.advance(1)
  t.ok(b.allow(), 'the first request after halfOpenAfter is the probe')
  t.equal(b.state, 'half-open')
  t.notOk(b.allow(), 'only one probe at a time')
  b.success()
  t.equal(b.state, 'closed')
  t.ok(b.allow())
  t.same(changes, ['open', 'half-open', 'closed'])
})

t.test('a failed probe re-opens for longer, up to the max', async (t) => {
  const c = clock()
  const b = new CircuitBreaker({ trigger: { by: 'consecutive', failures: 1 }, halfOpenAfter: 1000, maxHalfOpenAfter: 3000 }, { now: c.now })
  b.failure()
  const openFor: number[] = []
  for (let i = 0; i < 4; i++) {
    let waited = 0
    while (!b.allow()) { c.advance(100); waited += 100 }
    openFor.push(waited)
    b.failure()
  }
  t.same(openFor, [1000, 2000, 3000, 3000])
  while (!b.allow()) c.advance(100)
  b.success()
  b.failure()
  let waited = 0
  while (!b.allow()) { c.advance(100); waited += 100 }
  t.equal(waited, 1000, 'closing resets the backoff')
})

t.test('ratio over a window needs the minimum volume', async (t) => {
  const b = new CircuitBreaker({ trigger: { by: 'ratio', threshold: 0.5, window: 1000, minimumRequests: 10 }, halfOpenAfter: 1000, maxHalfOpenAfter: 1000 })
  for (let i = 0; i < 4; i++) b.failure()
  t.equal(b.state, 'closed', 'below the minimum volume')
  for (let i = 0; i < 4; i++) { b.success(); b.failure() }
  t.equal(b.state, 'open', '8 of 12 failed')
})

t.test('release frees the probe slot without a verdict', async (t) => {
  const c = clock()
  const b = new CircuitBreaker({ trigger: { by: 'consecutive', failures: 1 }, halfOpenAfter: 10, maxHalfOpenAfter: 10 }, { now: c.now })
  b.failure()
  c.advance(10)
  t.ok(b.allow())
  t.notOk(b.wouldAllow())
  b.release()
  t.ok(b.wouldAllow())
  t.equal(b.state, 'half-open')
})

t.test('ratio: requests older than the window no longer count, however long the breaker sat idle', async (t) => {
  const c = clock()
  const b = new CircuitBreaker({ trigger: { by: 'ratio', threshold: 0.5, window: 10_000, minimumRequests: 20 }, halfOpenAfter: 5000, maxHalfOpenAfter: 60_000 }, { now: c.now })
  for (let i = 0; i < 10; i++) b.success()
  for (let i = 0; i < 9; i++) b.failure()
  t.equal(b.state, 'closed', '9 of 19: below the minimum volume')
  c.advance(3_600_000)
  b.failure()
  b.failure()
  t.equal(b.state, 'closed', 'an hour later, 2 requests in the window are below the minimum')
  for (let i = 0; i < 18; i++) b.failure()
  t.equal(b.state, 'open', '20 failures within the window open it')
})

t.test('ratio: the window slides bucket by bucket on the breaker\'s clock', async (t) => {
  const c = clock()
  const b = new CircuitBreaker({ trigger: { by: 'ratio', threshold: 0.5, window: 10_000, minimumRequests: 10 }, halfOpenAfter: 5000, maxHalfOpenAfter: 60_000 }, { now: c.now })
  for (let i = 0; i < 9; i++) b.failure()
  c.advance(5000)
  for (let i = 0; i < 9; i++) b.success()
  c.advance(6000)
  // The 9 failures are now more than 10 s old: 9 successes and 1 failure remain.
  b.failure()
  t.equal(b.state, 'closed')
})
