import t from 'tap'
import { parseCacheControl, parseDeltaSeconds } from './cache-control.ts'
import { parseTargeted } from './targeted.ts'
import { cacheKey } from './plugin.ts'
import { byteRange, storedPart } from './range.ts'
import { varyNames, varyValue } from './vary.ts'
import { noneMatchHits, sameValidator } from './conditional.ts'
import { ageFieldValue } from './stored-response.ts'
import { parseHttpDate } from '../../src/http/http-date.ts'

t.test('delta-seconds', async (t) => {
  t.equal(parseDeltaSeconds('0'), 0)
  t.equal(parseDeltaSeconds('003600'), 3600)
  t.equal(parseDeltaSeconds('2147483648'), 2 ** 31)
  t.equal(parseDeltaSeconds('99999999999999999999999'), 2 ** 31, 'overflow is capped, not a float')
  for (const bad of ['', '-1', '+1', '1.5', '1e3', ' 1', 'abc', "'1'"]) t.ok(Number.isNaN(parseDeltaSeconds(bad)), JSON.stringify(bad))
})

t.test('Cache-Control', async (t) => {
  const cc = parseCacheControl('Public, MAX-AGE=60, s-maxage="120", no-cache="Set-Cookie, X-A", private, stale-while-revalidate=30, foo="a, max-age=1", bar')
  t.equal(cc.public, true)
  t.equal(cc.maxAge, 60)
  t.equal(cc.sMaxage, 120, 'quoted values accepted')
  t.same(cc.noCacheFields, ['set-cookie', 'x-a'])
  t.equal(cc.noCache, false, 'qualified no-cache is not the unqualified one')
  t.equal(cc.private, true)
  t.equal(cc.staleWhileRevalidate, 30)
  t.ok(Number.isNaN(parseCacheControl(['max-age=10', 'max-age=20']).maxAge as number), 'conflicting values: stale')
  t.equal(parseCacheControl(['max-age=10', 'max-age=10']).maxAge, 10, 'a repeated equal value is fine')
  t.equal(parseCacheControl('max-stale').maxStale, Infinity)
  t.equal(parseCacheControl('max-stale=5').maxStale, 5)
  t.equal(parseCacheControl(undefined).noStore, false)
  t.equal(parseCacheControl(',,, ,no-store,').noStore, true)
})

t.test('HTTP-date: the three forms, nothing else', async (t) => {
  const when = Date.UTC(1994, 10, 6, 8, 49, 37)
  t.equal(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT'), when)
  t.equal(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT'), when)
  t.equal(parseHttpDate('Sun Nov  6 08:49:37 1994'), when)
  t.equal(parseHttpDate('sun, 06 nov 1994 08:49:37 gmt'), when)
  t.equal(parseHttpDate('Thu, 01 Jan 2237 00:00:00 GMT'), Date.UTC(2237, 0, 1), 'far future, no 32-bit overflow')
  for (const bad of ['0', '', 'Sun, 06 Nov 1994 08:49:37 UTC', 'Sun, 6 Nov 1994 08:49:37 GMT', 'Sun, 06 Nov 94 08:49:37 GMT',
    'Sun 06 Nov 1994 08:49:37 GMT', 'Sun, 31 Feb 1994 08:49:37 GMT', '1994-11-06T08:49:37Z', 'Sun, 06 Nov 1994 8:49:37 GMT']) {
    t.equal(parseHttpDate(bad), undefined, JSON.stringify(bad))
  }
})

t.test('Age: first line, first member, else ignored', async (t) => {
  t.equal(ageFieldValue('30'), 30)
  t.equal(ageFieldValue('30, 60'), 30)
  t.equal(ageFieldValue(['60', '30']), 60)
  t.equal(ageFieldValue('-5'), 0)
  t.equal(ageFieldValue('5.0'), 0)
  t.equal(ageFieldValue(undefined), 0)
})

t.test('targeted cache control is a structured-field dictionary', async (t) => {
  t.equal(parseTargeted('max-age=60, no-transform')?.maxAge, 60)
  t.equal(parseTargeted('no-store')?.noStore, true)
  t.equal(parseTargeted('max-age="60"')?.maxAge, undefined, 'a string is the wrong type: ignored')
  t.equal(parseTargeted('max-age=1.5')?.maxAge, undefined, 'a decimal is the wrong type')
  t.equal(parseTargeted('max-age=60, &&&'), undefined, 'not a dictionary at all')
  t.equal(parseTargeted('Max-Age=60'), undefined, 'keys are lower case')
  t.equal(parseTargeted(''), undefined, 'empty: Cache-Control applies')
  t.equal(parseTargeted('max-age=60;foo=bar, private')?.private, true, 'parameters are allowed')
  t.equal(parseTargeted(undefined), undefined)
})

t.test('byte ranges', async (t) => {
  t.same(byteRange('bytes=0-1', 11), [0, 1])
  t.same(byteRange('bytes=1-', 11), [1, 10])
  t.same(byteRange('bytes=-1', 11), [10, 10])
  t.same(byteRange('bytes=5-100', 11), [5, 10])
  t.equal(byteRange('bytes=11-', 11), 'unsatisfiable')
  t.equal(byteRange('bytes=0-1,3-4', 11), undefined, 'several ranges: the whole body')
  t.equal(byteRange('items=0-1', 11), undefined)
})

t.test('Vary names and values', async (t) => {
  t.same(varyNames('Accept-Language, foo,,FOO'), ['accept-language', 'foo'])
  t.same(varyNames(['', '*']), ['*'])
  t.equal(varyValue({ a: 'x,y' }, 'a', true), varyValue({ a: 'x, y' }, 'a', true))
  t.not(varyValue({}, 'a', true), varyValue({ a: '' }, 'a', true), 'absent is not empty')
  t.equal(varyValue({ 'accept-encoding': 'gzip;q=1, br;q=0' }, 'accept-encoding', true), 'gzip')
})

t.test('If-None-Match lists compare weakly', async (t) => {
  t.ok(noneMatchHits('"a", W/"b"', '"b"'))
  t.ok(noneMatchHits('"x,y"', '"x,y"'), 'commas inside an entity tag')
  t.notOk(noneMatchHits('"a"', '"b"'))
  t.ok(noneMatchHits('*', undefined))
})

t.test('cache keys', async (t) => {
  t.equal(cacheKey('Example.COM:80', '/a', 'b=1'), 'example.com/a?b=1')
  t.equal(cacheKey('example.com:8080', '/a', ''), 'example.com:8080/a')
})

t.test('a 304 names the stored response by its ETag (RFC 9111 §4.3.4)', async (t) => {
  t.equal(sameValidator('"a"', '"a"'), 'strong', 'strong and equal')
  t.equal(sameValidator('"a"', '"b"'), undefined, 'strong and different')
  t.equal(sameValidator('"a"', 'W/"a"'), undefined, 'a strong tag does not identify a weak one')
  t.equal(sameValidator('W/"a"', '"a"'), 'weak', 'a weak tag compares weakly')
  t.equal(sameValidator('W/"a"', 'W/"a"'), 'weak')
  t.equal(sameValidator('W/"a"', 'W/"b"'), undefined)
  t.equal(sameValidator(' "a" ', '"a"'), 'strong', 'whitespace around the field value')
  t.equal(sameValidator(['"a"', '"b"'], '"a"'), 'strong', 'repeated field: the first')
  t.equal(sameValidator(undefined, '"a"'), 'strong', 'no ETag in the 304')
  t.equal(sameValidator('"a"', undefined), 'strong', 'nothing stored to compare (validated by date)')
})

t.test('the part a 206 holds', async (t) => {
  t.same(storedPart('bytes 4-9/10'), { first: 4, last: 9, length: 10 })
  t.same(storedPart(' bytes 0-0/1 '), { first: 0, last: 0, length: 1 })
  for (const bad of ['bytes 0-4/*', 'bytes */10', 'bytes 5-4/10', 'bytes 0-10/10', 'bytes=0-4/10', 'items 0-4/10', 'bytes 0-4/10, 6-7/10', 'bytes -1-4/10', 'bytes 0-9999999999999999/99999999999999999']) {
    t.equal(storedPart(bad), undefined, bad)
  }
  t.equal(storedPart(['bytes 0-1/2', 'bytes 0-1/2']), undefined, 'repeated field')
})
