import t from 'tap'
import { negotiate, parseAcceptEncoding, type Coding } from './accept-encoding.ts'

const ALL: readonly Coding[] = ['br', 'zstd', 'gzip']

t.test('negotiation table (server order br, zstd, gzip)', async (t) => {
  const table: Array<[header: string | string[] | undefined, expected: Coding | undefined, why: string]> = [
    [undefined, 'identity', 'absent: anything goes, identity preferred (§12.5.3)'],
    ['', 'identity', 'empty: no coding wanted'],
    [' , ,', 'identity', 'only separators is empty too'],
    ['gzip', 'gzip', 'the one listed'],
    ['gzip, deflate, br, zstd', 'br', 'all equal: the server\'s order breaks the tie'],
    ['gzip, deflate, br', 'br', 'a browser\'s usual value'],
    ['gzip, zstd', 'zstd', 'tie between two: server order'],
    ['deflate', 'identity', 'nothing offered is listed; identity stays acceptable'],
    ['compress, aes128gcm', 'identity', 'unknown codings are skipped'],
    ['br;q=0.5, gzip;q=0.9', 'gzip', 'the client\'s weights beat server order'],
    ['br;q=0.5, gzip;q=0.500', 'br', '0.5 and 0.500 tie: server order'],
    ['gzip;q=0.001', 'gzip', 'a tiny positive weight still beats an implicit identity'],
    ['GZIP', 'gzip', 'case-insensitive'],
    ['Br;Q=1, GZip;q=0.5', 'br', 'case-insensitive tokens and parameter name'],
    ['x-gzip', 'gzip', 'x-gzip is gzip (§8.4.1.3)'],
    ['x-gzip;q=0.3, br;q=0.2', 'gzip', 'x-gzip carries its weight'],
    ['gzip;q=0, br', 'br', 'q=0 is not acceptable'],
    ['gzip;q=0', 'identity', 'q=0 on the only coding leaves identity'],
    ['br;q=0, zstd;q=0, gzip;q=0', 'identity', 'every coding refused, identity still fine'],
    ['gzip;q=0, identity;q=0', undefined, 'nothing acceptable'],
    ['identity;q=0', undefined, 'identity refused and nothing else listed'],
    ['identity;q=0, gzip', 'gzip', 'identity refused, gzip fine'],
    ['identity', 'identity', 'identity alone'],
    ['identity, gzip;q=0.5', 'identity', 'identity weighted above gzip'],
    ['identity;q=0.5, gzip', 'gzip', 'gzip weighted above identity'],
    ['*', 'br', 'the wildcard reaches every coding: server order'],
    ['*;q=0', undefined, '*;q=0 excludes identity too'],
    ['*;q=0, identity', 'identity', 'unless identity is named'],
    ['*;q=0, gzip', 'gzip', 'named codings beat the wildcard'],
    ['br;q=0, *', 'zstd', 'a named q=0 beats the wildcard'],
    ['br;q=0.5, *', 'zstd', 'the wildcard\'s weight goes to what is not named'],
    ['gzip;q=0.3, *;q=0.5', 'br', 'unnamed codings at 0.5 beat gzip at 0.3'],
    ['*;q=0.1, gzip', 'gzip', 'a named coding above the wildcard'],
    ['gzip;q=abc', 'identity', 'an invalid q drops the member'],
    ['gzip;q=1.5, br;q=0.2', 'br', 'q above 1 is invalid'],
    ['gzip;q=0.0001', 'identity', 'four decimals are invalid'],
    ['gzip;q=.5', 'identity', 'a leading dot is invalid'],
    ['gzip;q=-1', 'identity', 'negative is invalid'],
    ['gzip;q=', 'identity', 'an empty q is invalid'],
    ['gzip;q=1.', 'gzip', '"1." is a valid qvalue'],
    ['gzip;q=1.000', 'gzip', '"1.000" too'],
    ['gzip;q=1.001', 'identity', 'but not 1.001'],
    ['gzip ; q=0.5 , br ; q=0.4', 'gzip', 'whitespace around separators'],
    ['gzip;level=9', 'gzip', 'other parameters are ignored'],
    ['gzip;level=9;q=0', 'identity', 'q found among other parameters'],
    ['gzip;q=0, gzip;q=0.5', 'gzip', 'a coding listed twice keeps its highest weight'],
    ['gzip;q=0, x-gzip', 'gzip', 'x-gzip and gzip are one coding'],
    [['gzip;q=0.5', 'br;q=0.6'], 'br', 'repeated fields are one list'],
    ['zstd;q=0.9,br;q=0.9,gzip;q=1', 'gzip', 'no whitespace at all'],
  ]
  for (const [header, expected, why] of table) {
    t.equal(negotiate(header, ALL), expected, `${JSON.stringify(header)}: ${why}`)
  }
})

t.test('the offered list decides ties and what is possible', async (t) => {
  t.equal(negotiate('br, gzip', ['gzip', 'br']), 'gzip', 'server order gzip first')
  t.equal(negotiate('br', ['gzip']), 'identity', 'br not offered')
  t.equal(negotiate('br', []), 'identity', 'nothing offered')
  t.equal(negotiate('*;q=0', []), undefined)
  t.equal(negotiate('gzip, identity', ['identity', 'gzip']), 'identity', 'identity placed first by the server wins a tie')
  t.equal(negotiate('gzip, identity', ['gzip']), 'gzip', 'implicitly last otherwise')
  t.equal(negotiate('identity;q=0.5, gzip;q=0.5', ['gzip']), 'gzip')
  t.equal(negotiate('*', ['gzip', 'identity']), 'gzip', 'identity through the wildcard, listed after gzip')
})

t.test('parsed weights in thousandths', async (t) => {
  t.same(parseAcceptEncoding('gzip;q=0.8, br, *;q=0'), { br: 1000, zstd: -1, gzip: 800, identity: -1, any: 0 })
  t.same(parseAcceptEncoding('zstd;q=0.123, identity;q=0.01'), { br: -1, zstd: 123, gzip: -1, identity: 10, any: -1 })
  t.same(parseAcceptEncoding(''), { br: -1, zstd: -1, gzip: -1, identity: -1, any: -1 })
})

t.test('remembers values cheaply and boundedly', async (t) => {
  const a = parseAcceptEncoding('gzip, deflate, br, zstd')
  t.equal(parseAcceptEncoding('gzip, deflate, br, zstd'), a, 'the same frozen object for the same value')
  t.ok(Object.isFrozen(a))
  for (let i = 0; i < 1000; i++) parseAcceptEncoding(`gzip;q=0.${i % 10}, x-${i}`)
  const long = `${'x-unknown, '.repeat(100)}br`
  t.equal(negotiate(long, ALL), 'br', 'a long value is parsed (and not remembered)')
  t.not(parseAcceptEncoding(long), parseAcceptEncoding(long), 'parsed afresh each time')
  t.equal(negotiate('gzip, deflate, br, zstd', ALL), 'br', 'still right after evictions')
})
