import t from 'tap'
import zlib from 'node:zlib'
import { Registry } from 'prom-client'
import { Encoders, declareMetrics, windowBits } from './encoders.ts'
import { schema } from './schema.ts'

t.test('windows: just big enough for a known body, at most 512 KiB', async (t) => {
  t.equal(windowBits(-1), 19, 'unknown length: the cap')
  t.equal(windowBits(0), 16)
  t.equal(windowBits(65536), 16)
  t.equal(windowBits(65537), 17)
  t.equal(windowBits(2 ** 19), 19)
  t.equal(windowBits(20 * 1024 * 1024), 19)
})

t.test('every coding, size known or not, round-trips', async (t) => {
  const encoders = new Encoders(schema.parse({}).levels, declareMetrics(new Registry(), 'r'))
  const body = Buffer.from('{"hello":"world","n":[1,2,3]}\n'.repeat(40_000))
  const decode = { br: zlib.brotliDecompressSync, zstd: zlib.zstdDecompressSync, gzip: zlib.gunzipSync }
  for (const coding of ['br', 'zstd', 'gzip'] as const) {
    for (const size of [-1, body.length]) {
      for (const flush of [false, true]) {
        const z = encoders.create(coding, size, true, flush)
        const out: Buffer[] = []
        z.on('data', (c: Buffer) => out.push(c))
        const ended = new Promise((resolve) => z.on('end', resolve))
        for (let i = 0; i < body.length; i += 50_000) z.write(body.subarray(i, i + 50_000))
        z.end()
        await ended
        t.same(decode[coding](Buffer.concat(out)), body, `${coding}, size ${size}, flush ${flush}`)
      }
    }
  }
})
