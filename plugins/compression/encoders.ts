import zlib from 'node:zlib'
import type { Transform } from 'node:stream'
import { Counter, type Registry } from 'prom-client'
import type { CompressionConfig } from './schema.ts'

export type Produced = 'br' | 'zstd' | 'gzip'

const {
  BROTLI_PARAM_QUALITY, BROTLI_PARAM_MODE, BROTLI_PARAM_SIZE_HINT, BROTLI_PARAM_LGWIN, BROTLI_MODE_TEXT, BROTLI_MODE_GENERIC,
  BROTLI_OPERATION_FLUSH, ZSTD_c_compressionLevel, ZSTD_c_windowLog, ZSTD_e_flush, Z_SYNC_FLUSH,
} = zlib.constants

/** Brotli's size hint is a 32-bit value, and it caps what it uses at 1 GiB anyway. */
const MAX_SIZE_HINT = 2 ** 30

/** Metric children bound to one route and coding, so a response costs no label lookup. */
interface Meter {
  readonly bytesIn: { inc (n: number): void }
  readonly bytesOut: { inc (n: number): void }
}

const kMeter = Symbol('outrider.compression.meter')
const kOut = Symbol('outrider.compression.out')
type Metered = zlib.Zlib & Transform & { [kMeter]: Meter, [kOut]: number }

// Listeners are module-level and find their state on the stream: no closure per response.
function countOut (this: Metered, chunk: Buffer): void { this[kOut] += chunk.length }
function report (this: Metered): void {
  const m = this[kMeter]
  m.bytesIn.inc(this.bytesWritten)
  m.bytesOut.inc(this[kOut])
}

/** A counter declared once per registry: every route's instance (and the next snapshot's) shares it. */
function counter (registry: Registry, name: string, help: string): Counter<'route' | 'coding'> {
  const existing = registry.getSingleMetric(name)
  if (existing !== undefined) return existing as Counter<'route' | 'coding'>
  return new Counter({ name, help, labelNames: ['route', 'coding'], registers: [registry] })
}

export interface Metrics {
  /** Per coding, identity included: the count of compressible responses by what they were sent as. */
  readonly responses: Readonly<Record<Produced | 'identity', { inc (): void }>>
  readonly meters: Readonly<Record<Produced, Meter>>
}

export function declareMetrics (registry: Registry, route: string): Metrics {
  const responses = counter(registry, 'outrider_compression_responses_total',
    'Compressible responses by the content coding they were sent with (identity: the client accepted none offered).')
  const bytesIn = counter(registry, 'outrider_compression_bytes_in_total', 'Bytes fed to the compressors (uncompressed), by coding.')
  const bytesOut = counter(registry, 'outrider_compression_bytes_out_total', 'Bytes the compressors produced, by coding.')
  const meter = (c: Produced): Meter => ({ bytesIn: bytesIn.labels(route, c), bytesOut: bytesOut.labels(route, c) })
  return {
    responses: { br: responses.labels(route, 'br'), zstd: responses.labels(route, 'zstd'), gzip: responses.labels(route, 'gzip'), identity: responses.labels(route, 'identity') },
    meters: { br: meter('br'), zstd: meter('zstd'), gzip: meter('gzip') },
  }
}

/**
 * The largest window an encoder gets: 512 KiB, as ngx_brotli's default. The
 * encoders' defaults (Brotli 4 MiB, zstd 2 MiB at level 3) cost that much
 * memory per response in flight, and Node reports it to V8 as external
 * memory, so big windows also mean frequent major GCs: with Brotli's default
 * the proxy spent more time collecting than compressing. On-the-fly levels
 * find few matches that far back anyway.
 */
const MAX_WINDOW_BITS = 19
const MIN_WINDOW_BITS = 16

/** The smallest window (in bits) that spans a body of `size` bytes, within the limits; the largest when unknown. */
export function windowBits (size: number): number {
  if (size < 0) return MAX_WINDOW_BITS
  let bits = MIN_WINDOW_BITS
  while (bits < MAX_WINDOW_BITS && 2 ** bits < size) bits++
  return bits
}

/**
 * Makes the compressor for one response. Options that do not depend on the
 * response are built once per snapshot; a body of known length gets its own
 * (Brotli's size hint and a window just big enough, zstd's pledged size, from
 * which it sizes its window and tables), one small object.
 */
export class Encoders {
  readonly #levels: CompressionConfig['levels']
  readonly #metrics: Metrics
  readonly #gzip: zlib.ZlibOptions
  readonly #gzipFlush: zlib.ZlibOptions
  readonly #zstd: zlib.ZstdOptions
  readonly #zstdFlush: zlib.ZstdOptions
  readonly #brText: zlib.BrotliOptions
  readonly #brGeneric: zlib.BrotliOptions
  readonly #brFlush: zlib.BrotliOptions

  constructor (levels: CompressionConfig['levels'], metrics: Metrics) {
    this.#levels = levels
    this.#metrics = metrics
    this.#gzip = { level: levels.gzip }
    this.#gzipFlush = { level: levels.gzip, flush: Z_SYNC_FLUSH }
    const zstd = { [ZSTD_c_compressionLevel]: levels.zstd, [ZSTD_c_windowLog]: MAX_WINDOW_BITS }
    this.#zstd = { params: zstd }
    this.#zstdFlush = { params: zstd, flush: ZSTD_e_flush }
    const br = (mode: number): Record<number, number> => ({ [BROTLI_PARAM_QUALITY]: levels.br, [BROTLI_PARAM_MODE]: mode, [BROTLI_PARAM_LGWIN]: MAX_WINDOW_BITS })
    this.#brText = { params: br(BROTLI_MODE_TEXT) }
    this.#brGeneric = { params: br(BROTLI_MODE_GENERIC) }
    this.#brFlush = { params: br(BROTLI_MODE_TEXT), flush: BROTLI_OPERATION_FLUSH }
  }

  /**
   * @param size the body's length when known (Content-Length), else -1
   * @param text the body is text (Brotli's text model)
   * @param flush `chunk`: emit output after every chunk written (event
   *   streams); `idle`: once the chunks that arrived together are written
   *   (a body of unknown length); `none`: only at the end
   */
  create (coding: Produced, size: number, text: boolean, mode: FlushMode): Transform {
    const flush = mode === 'chunk'
    let z: Transform
    switch (coding) {
      case 'gzip':
        z = zlib.createGzip(flush ? this.#gzipFlush : this.#gzip)
        break
      case 'zstd':
        z = zlib.createZstdCompress(flush ? this.#zstdFlush : size >= 0 ? { params: this.#zstd.params, pledgedSrcSize: size } : this.#zstd)
        break
      case 'br':
        z = zlib.createBrotliCompress(flush
          ? this.#brFlush
          : size >= 0
            ? {
                params: {
                  [BROTLI_PARAM_QUALITY]: this.#levels.br,
                  [BROTLI_PARAM_MODE]: text ? BROTLI_MODE_TEXT : BROTLI_MODE_GENERIC,
                  [BROTLI_PARAM_LGWIN]: windowBits(size),
                  [BROTLI_PARAM_SIZE_HINT]: Math.min(size, MAX_SIZE_HINT),
                },
              }
            : text ? this.#brText : this.#brGeneric)
        break
    }
    const m = z as Metered
    m[kMeter] = this.#metrics.meters[coding]
    m[kOut] = 0
    z.on('data', countOut)
    // `close` comes after `end` or a destroy: the counts are final either way.
    z.on('close', report)
    if (mode === 'idle') flushWhenIdle(m)
    return z
  }
}

export type FlushMode = 'chunk' | 'idle' | 'none'

const kFlushQueued = Symbol('outrider.compression.flushQueued')
type Idle = Metered & { [kFlushQueued]: boolean }

/**
 * A stream the client may read as it comes must not wait in the encoder for
 * the upstream to end; a flush per chunk, though, costs a chunked response of
 * many small writes its ratio (2,000 writes of JSON: 63 KB gzipped instead of
 * 36 KB) and a write each. So one flush once the chunks that arrived together
 * are in: after the current turn of the event loop, whatever came with it.
 */
function flushWhenIdle (z: Metered): void {
  const idle = z as Idle
  idle[kFlushQueued] = false
  const transform = z._transform
  z._transform = function (this: Idle, chunk: Buffer, encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    transform.call(this, chunk, encoding, done)
    // A flush is itself written as an empty chunk: it must not queue another.
    if (chunk.length > 0 && !this[kFlushQueued]) { this[kFlushQueued] = true; setImmediate(flushNow, this) }
  }
}

function flushNow (z: Idle): void {
  z[kFlushQueued] = false
  if (!z.writableEnded && !z.destroyed) z.flush()
}
