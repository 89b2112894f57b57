import t from 'tap'
import { claimHeaderValue } from './claims.ts'

t.test('claims as header values: scalars as they are, lists only when they read back as themselves', async (t) => {
  t.equal(claimHeaderValue('Doe, John'), 'Doe, John', 'a string claim is one value, commas and all')
  t.equal(claimHeaderValue(42), '42')
  t.equal(claimHeaderValue(true), 'true')
  t.equal(claimHeaderValue(['admin', 'dev', 7, false]), 'admin,dev,7,false')
  t.equal(claimHeaderValue(['Domain Users', 'dev']), 'Domain Users,dev', 'inner spaces are kept')
  t.equal(claimHeaderValue({ a: [1, 2] }), '{"a":[1,2]}', 'an object as JSON')
  const ambiguous: unknown[][] = [
    ['admin,x', 'b'],
    ['say "hi"', 'b'],
    [' admin', 'b'],
    ['admin ', 'b'],
    ['', 'b'],
    ['a', null],
    ['a', { role: 'admin' }],
    ['a', ['b', 'c']],
  ]
  for (const v of ambiguous) t.equal(claimHeaderValue(v), undefined, JSON.stringify(v))
  t.equal(claimHeaderValue(['a\r\nx-admin: 1']), undefined, 'control characters never reach a header')
  t.equal(claimHeaderValue([]), undefined, 'an empty list has no value')
})
