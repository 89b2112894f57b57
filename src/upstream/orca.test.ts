import t from 'tap'
import { createOrcaLoadReport, orcaHeader, orcaUtilization, parseOrcaLoadReport } from './orca.ts'

const full = {
  cpuUtilization: 0.3,
  memUtilization: 0.8,
  applicationUtilization: 0.5,
  rpsFractional: 120,
  eps: 2,
  namedMetrics: new Map([['foo', 1.2]]),
}

t.test('TEXT', async (t) => {
  t.same(parseOrcaLoadReport('TEXT cpu_utilization=0.3, mem_utilization=0.8, rps_fractional=120, eps=2, application_utilization=0.5, named_metrics.foo=1.2'), full)
  t.same(parseOrcaLoadReport('TEXT cpu_utilization:0.3,mem_utilization=.8,rps_fractional:1.2e2,eps=2,application_utilization = 0.5 ,named_metrics.foo:1.2'), full, 'Envoy\'s colons, no spaces, exponents')
  t.same(parseOrcaLoadReport('TEXT cpu_utilization=0.3'), { ...createOrcaLoadReport(), cpuUtilization: 0.3 }, 'absent fields read 0')
  t.same(parseOrcaLoadReport('TEXT '), createOrcaLoadReport(), 'an empty report is valid')
  t.same(parseOrcaLoadReport('TEXT cpu_utilization=1.5, future_field=3'), { ...createOrcaLoadReport(), cpuUtilization: 1.5 }, 'unknown fields are skipped; cpu may exceed 1')
  t.same(parseOrcaLoadReport('TEXT named_metrics.q%2Cdepth=-4, named_metrics.x=0')?.namedMetrics, new Map([['q,depth', -4], ['x', 0]]), 'named metrics may be negative and percent-encoded')
})

t.test('JSON', async (t) => {
  t.same(parseOrcaLoadReport('JSON {"cpu_utilization":0.3,"mem_utilization":0.8,"rps_fractional":120,"eps":2,"application_utilization":0.5,"named_metrics":{"foo":1.2}}'), full)
  t.same(parseOrcaLoadReport('JSON {"cpuUtilization":0.3,"memUtilization":"0.8","rpsFractional":120,"eps":2,"applicationUtilization":0.5,"namedMetrics":{"foo":1.2},"utilization":{"gpu":0.1}}'), full, 'proto3 JSON: lowerCamel names, doubles as strings, unknown fields skipped')
})

/** Encodes an OrcaLoadReport by hand: field numbers from xds/data/orca/v3/orca_load_report.proto. */
function encode (fields: Array<[number, number] | [8, string, number] | [3, 'varint', number]>): string {
  const parts: Buffer[] = []
  for (const field of fields) {
    if (field.length === 2) {
      const value = Buffer.alloc(9)
      value[0] = (field[0] << 3) | 1 // fixed64
      value.writeDoubleLE(field[1], 1)
      parts.push(value)
    } else if (field[1] === 'varint') {
      parts.push(Buffer.from([3 << 3, field[2]]))
    } else {
      const name = Buffer.from(field[1])
      const value = Buffer.alloc(9)
      value[0] = (2 << 3) | 1
      value.writeDoubleLE(field[2], 1)
      const entry = Buffer.concat([Buffer.from([(1 << 3) | 2, name.length]), name, value])
      parts.push(Buffer.from([(8 << 3) | 2, entry.length]), entry)
    }
  }
  return Buffer.concat(parts).toString('base64')
}

t.test('BIN', async (t) => {
  const bin = encode([[1, 0.3], [2, 0.8], [6, 120], [7, 2], [8, 'foo', 1.2], [9, 0.5]])
  t.same(parseOrcaLoadReport(`BIN ${bin}`), full)
  t.same(parseOrcaLoadReport(`BIN ${bin.replace(/=+$/, '').replaceAll('+', '-').replaceAll('/', '_')}`), full, 'URL-safe, unpadded base64')
  t.same(parseOrcaLoadReport(`BIN ${encode([[1, 0.3], [3, 'varint', 42]])}`), { ...createOrcaLoadReport(), cpuUtilization: 0.3, rpsFractional: 42 }, 'the deprecated integer rps fills in for rps_fractional')
  t.same(parseOrcaLoadReport(`BIN ${encode([[6, 7.5], [3, 'varint', 42]])}`)?.rpsFractional, 7.5, 'rps_fractional wins over rps')
  // request_cost (4) and utilization (5) maps are skipped.
  const withMaps = Buffer.concat([Buffer.from([(4 << 3) | 2, 3, 0x0a, 1, 0x61]), Buffer.from(encode([[1, 0.3]]), 'base64')])
  t.same(parseOrcaLoadReport(`BIN ${withMaps.toString('base64')}`), { ...createOrcaLoadReport(), cpuUtilization: 0.3 })
})

t.test('anything malformed is undefined, never an exception', async (t) => {
  const valid = encode([[1, 0.3], [8, 'foo', 1.2]])
  const garbage = [
    '',
    'cpu_utilization=0.3', // no format prefix
    'text cpu_utilization=0.3',
    'XML <load cpu="0.3"/>',
    'TEXT cpu_utilization',
    'TEXT =0.3',
    'TEXT cpu_utilization=',
    'TEXT cpu_utilization=abc',
    'TEXT cpu_utilization=0x10',
    'TEXT cpu_utilization=Infinity',
    'TEXT cpu_utilization=1e999',
    'TEXT cpu_utilization=-0.1',
    'TEXT cpu_utilization=0.1, cpu_utilization=0.2',
    'TEXT named_metrics.=1',
    'TEXT named_metrics.a=1, named_metrics.a=2',
    'TEXT named_metrics.%E0%A4%A=1',
    'JSON',
    'JSON {',
    'JSON []',
    'JSON null',
    'JSON "cpu_utilization"',
    'JSON {"cpu_utilization":"high"}',
    'JSON {"cpu_utilization":-1}',
    'JSON {"cpu_utilization":0.1,"cpuUtilization":0.2}',
    'JSON {"named_metrics":[1]}',
    'JSON {"named_metrics":{"a":null}}',
    'BIN ',
    'BIN !!!!',
    'BIN QQ=QQ',
    `BIN ${valid.slice(0, 8)}`, // truncated double
    `BIN ${Buffer.from(valid, 'base64').subarray(0, 12).toString('base64')}`, // truncated map entry
    `BIN ${Buffer.from([0x08, 1]).toString('base64')}`, // cpu_utilization as a varint
    `BIN ${Buffer.from([0x0b]).toString('base64')}`, // a group
    `BIN ${Buffer.from([0x00, 0x00]).toString('base64')}`, // field number 0
    `BIN ${Buffer.from([0x80, 0x80]).toString('base64')}`, // truncated varint
    `BIN ${Buffer.from([0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0xbf]).toString('base64')}`, // cpu_utilization = -1
  ]
  for (const value of garbage) t.equal(parseOrcaLoadReport(value), undefined, JSON.stringify(value))

  // Random bytes and strings: whatever comes back, nothing throws.
  let seed = 1
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648
  for (let i = 0; i < 2000; i++) {
    const bytes = Buffer.alloc(1 + Math.floor(random() * 40))
    for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(random() * 256)
    parseOrcaLoadReport(`BIN ${bytes.toString('base64')}`)
    parseOrcaLoadReport(`TEXT ${bytes.toString('latin1')}`)
    parseOrcaLoadReport(`JSON ${bytes.toString('latin1')}`)
  }
  t.pass('no exceptions')
})

t.test('a report passed in is reused and cleared', async (t) => {
  const into = createOrcaLoadReport()
  t.equal(parseOrcaLoadReport('TEXT cpu_utilization=0.9, named_metrics.a=1', into), into)
  t.equal(parseOrcaLoadReport('TEXT mem_utilization=0.4', into), into)
  t.same(into, { ...createOrcaLoadReport(), memUtilization: 0.4 })
})

t.test('orcaUtilization prefers application_utilization, then cpu_utilization', async (t) => {
  t.equal(orcaUtilization(parseOrcaLoadReport('TEXT cpu_utilization=0.9, application_utilization=0.4')!), 0.4)
  t.equal(orcaUtilization(parseOrcaLoadReport('TEXT cpu_utilization=0.9')!), 0.9)
  t.equal(orcaUtilization(parseOrcaLoadReport('TEXT cpu_utilization=0.9, application_utilization=0')!), 0.9, '0 means unset in proto3')
  t.ok(Number.isNaN(orcaUtilization(parseOrcaLoadReport('TEXT mem_utilization=0.9')!)))
})

t.test('a repeated endpoint-load-metrics field: the first report counts, nothing throws', async (t) => {
  t.equal(orcaHeader(['TEXT cpu_utilization=0.5', 'TEXT mem_utilization=0.5']), 'TEXT cpu_utilization=0.5')
  t.equal(orcaHeader('TEXT eps=1'), 'TEXT eps=1')
  t.equal(orcaHeader(undefined), undefined)
  t.equal(orcaHeader([]), undefined)
  t.equal(parseOrcaLoadReport(['TEXT cpu_utilization=0.5'] as unknown as string), undefined, 'a non-string is no report')
})
