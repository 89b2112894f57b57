import t from 'tap'
import { RetryBudget, RetryPolicy } from './retry.ts'
import { loadCockatiel } from './cockatiel.ts'
import { UpstreamConnectError, UpstreamProtocolError, UpstreamTimeoutError } from '../errors.ts'

await loadCockatiel()

const base = {
  retryOn: ['connect-failure', 'reset', 'gateway-error'] as Array<'connect-failure' | 'reset' | 'gateway-error' | '5xx' | 'timeout' | 'retriable-status-codes'>,
  retriableStatusCodes: [] as number[],
  maxAttempts: 3,
  backoff: { base: 10, max: 100 },
  retryNonIdempotent: false,
  maxReplayBodySize: 1024,
  attemptsHeader: false,
}

t.test('statuses', async (t) => {
  const p = new RetryPolicy(base)
  t.equal(p.forStatus(503), 'gateway-error')
  t.equal(p.forStatus(500), undefined, '500 is not a gateway error')
  t.equal(p.forStatus(404), undefined)
  const all = new RetryPolicy({ ...base, retryOn: ['5xx', 'retriable-status-codes'], retriableStatusCodes: [409] })
  t.equal(all.forStatus(500), '5xx')
  t.equal(all.forStatus(409), 'retriable-status-codes')
  t.equal(all.forStatus(200), undefined)
})

t.test('errors by phase', async (t) => {
  const p = new RetryPolicy(base)
  t.equal(p.forError(new UpstreamConnectError('x', { extensions: { phase: 'connect' } })), 'connect-failure')
  t.equal(p.forError(new UpstreamProtocolError('x', { extensions: { phase: 'reset' } })), 'reset')
  t.equal(p.forError(new UpstreamTimeoutError('x', { extensions: { phase: 'headers' } })), 'timeout', 'a gateway-error policy retries a 504-like timeout')
  const onlyConnect = new RetryPolicy({ ...base, retryOn: ['connect-failure'] })
  t.equal(onlyConnect.forError(new UpstreamProtocolError('x', { extensions: { phase: 'reset' } })), undefined)
  t.equal(onlyConnect.forError(new UpstreamTimeoutError('x', { extensions: { phase: 'headers' } })), undefined)
  t.equal(onlyConnect.forError(new UpstreamTimeoutError('x', { extensions: { phase: 'body' } })), undefined, 'never after the body started')
})

t.test('methods', async (t) => {
  const p = new RetryPolicy(base)
  t.ok(p.methodAllows('GET', 'reset'))
  t.ok(p.methodAllows('PUT', '5xx'))
  t.notOk(p.methodAllows('POST', 'reset'), 'POST is not idempotent')
  t.ok(p.methodAllows('POST', 'connect-failure'), 'but nothing was sent on a connect failure')
  t.ok(new RetryPolicy({ ...base, retryNonIdempotent: true }).methodAllows('PATCH', '5xx'))
})

t.test('backoff grows with full jitter and is capped', async (t) => {
  const p = new RetryPolicy(base)
  let b = p.nextBackoff(undefined)
  for (let i = 0; i < 10; i++) {
    t.ok(b.duration >= 0 && b.duration <= 100, `attempt ${i}: ${b.duration}`)
    b = p.nextBackoff(b)
  }
})

t.test('budget: a share of the window\'s requests, plus a minimum rate', async (t) => {
  let now = 0
  const b = new RetryBudget(20, 2, () => now)
  for (let i = 0; i < 100; i++) b.deposit()
  let granted = 0
  for (let i = 0; i < 50; i++) if (b.tryAcquire()) granted++
  t.equal(granted, 22, '20% of 100 requests + 2 (the first second of the minimum rate)')
  t.notOk(b.tryAcquire(), 'exhausted')
  now += 1000
  t.equal([b.tryAcquire(), b.tryAcquire(), b.tryAcquire()].filter(Boolean).length, 2, 'the minimum accrues: 2 more a second')
  for (let i = 0; i < 50; i++) b.deposit()
  t.equal(Array.from({ length: 20 }, () => b.tryAcquire()).filter(Boolean).length, 10, '20% of 50 new requests')
  t.equal(b.retriesInFlight, 34)
  for (let i = 0; i < 34; i++) b.release()
  t.equal(b.retriesInFlight, 0)
})

t.test('budget: old requests and retries leave the 10 s window', async (t) => {
  let now = 0
  const b = new RetryBudget(50, 0, () => now)
  for (let i = 0; i < 10; i++) b.deposit()
  t.equal(Array.from({ length: 10 }, () => b.tryAcquire()).filter(Boolean).length, 5)
  now += 10_000
  t.notOk(b.tryAcquire(), 'the earlier requests no longer fund retries')
  for (let i = 0; i < 4; i++) b.deposit()
  t.equal(Array.from({ length: 4 }, () => b.tryAcquire()).filter(Boolean).length, 2, 'and the earlier retries no longer count against it')
})

t.test('budget: a quiet cluster can still retry at the minimum rate', async (t) => {
  let now = 0
  const b = new RetryBudget(20, 10, () => now)
  let granted = 0
  for (let i = 0; i < 100; i++) { if (b.tryAcquire()) { granted++; b.release() } }
  t.equal(granted, 10, 'one second of the minimum')
  now += 1000
  for (let i = 0; i < 100; i++) { if (b.tryAcquire()) { granted++; b.release() } }
  t.equal(granted, 20)
})
