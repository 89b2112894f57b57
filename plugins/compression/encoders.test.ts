import t from 'tap'
import zlib from 'node:zlib'
import type { Transform } from 'node:stream'
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
      for (const flush of ['none', 'chunk', 'idle'] as const) {
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

t.test('idle flushing: one flush for the chunks written together, not one each', async (t) => {
  const encoders = new Encoders(schema.parse({}).levels, declareMetrics(new Registry(), 'r'))
  const row = (i: number): Buffer => Buffer.from(`{"id":${i},"name":"item ${i}","tags":["a","b"]},`)
  for (const coding of ['br', 'zstd', 'gzip'] as const) {
    const sizes: Record<string, number> = {}
    for (const mode of ['chunk', 'idle'] as const) {
      const z = encoders.create(coding, -1, true, mode)
      const out: Buffer[] = []
      z.on('data', (c: Buffer) => out.push(c))
      const ended = new Promise((resolve) => z.on('end', resolve))
      for (let i = 0; i < 2000; i++) z.write(row(i))
      // Everything written so far comes out without the stream ending (the
      // encoder works off the thread pool: wait for its output, not a time).
      const decodedSoFar = (): string => {
        const partial = Buffer.concat(out)
        try {
          return (coding === 'gzip'
            ? zlib.gunzipSync(partial, { finishFlush: zlib.constants.Z_SYNC_FLUSH })
            : coding === 'br'
              ? zlib.brotliDecompressSync(partial, { finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH })
              : zlib.zstdDecompressSync(partial, { finishFlush: zlib.constants.ZSTD_e_flush } as zlib.ZstdOptions)).toString()
        } catch { return '' }
      }
      let decoded = ''
      for (let turns = 0; turns < 10_000 && !decoded.endsWith('"item 1999","tags":["a","b"]},'); turns++) {
        await new Promise((resolve) => z.once('data', resolve))
        decoded = decodedSoFar()
      }
      t.ok(decoded.endsWith('"item 1999","tags":["a","b"]},'), `${coding}, ${mode}: what was written is out before the end`)
      z.end()
      await ended
      sizes[mode] = Buffer.concat(out).length
    }
    t.ok((sizes.idle as number) < (sizes.chunk as number) * 0.8, `${coding}: idle ${sizes.idle} bytes against ${sizes.chunk} flushed per chunk`)
  }
})

t.test('idle flushing: a stream held open after a chunk is flushed once, not on every turn of the event loop', async (t) => {
  const encoders = new Encoders(schema.parse({}).levels, declareMetrics(new Registry(), 'r'))
  for (const coding of ['br', 'zstd', 'gzip'] as const) {
    const z = encoders.create(coding, -1, true, 'idle') as Transform & { flush (...args: unknown[]): void }
    let flushes = 0
    const flush = z.flush.bind(z)
    z.flush = (...args: unknown[]) => { flushes++; flush(...args) }
    z.resume()
    z.write(Buffer.from('{"first":"chunk"}'))
    for (let i = 0; i < 200; i++) await new Promise((resolve) => setImmediate(resolve))
    t.equal(flushes, 1, `${coding}: one flush for the one chunk`)
    z.destroy()
  }
})
