import { z } from 'zod'
import { size } from '../../src/config/units.ts'

/**
 * RFC 6838 §4.2 restricted-name characters (lower-cased), for a type or a
 * subtype; `*` as a whole type or subtype, or `*+suffix` for a structured
 * syntax suffix (§4.2.8).
 */
const MEDIA_RANGE = /^(?:\*\/\*(?:\+[a-z0-9!#$&^_.-]+)?|[a-z0-9][a-z0-9!#$&^_.+-]*\/(?:\*(?:\+[a-z0-9!#$&^_.-]+)?|[a-z0-9][a-z0-9!#$&^_.+-]*))$/

/** What a proxy can usefully compress on the fly: text and text-like formats, plus a few uncompressed binary ones. */
export const DEFAULT_CONTENT_TYPES: readonly string[] = [
  'text/*',
  'application/json', 'application/javascript', 'application/x-javascript', 'application/ecmascript',
  'application/xml', 'application/yaml', 'application/wasm',
  'image/svg+xml', 'image/x-icon', 'image/bmp',
  'font/ttf', 'font/otf', 'application/vnd.ms-fontobject',
  '*/*+json', '*/*+xml',
]

const coding = z.enum(['br', 'zstd', 'gzip'], { error: 'br, zstd or gzip' })

const mediaRange = z.string().transform((s) => s.trim().toLowerCase()).pipe(z.string().regex(MEDIA_RANGE,
  'a media type without parameters: type/subtype, type/*, type/*+suffix or */*+suffix (e.g. text/*, application/json, */*+json)'))

/**
 * Response compression (RFC 9110 §8.4) chosen from the client's
 * Accept-Encoding. Defaults suit on-the-fly compression: quick levels, text
 * types only, nothing under 1 KiB.
 */
export const schema = z.strictObject({
  algorithms: z.array(coding).min(1).default(['br', 'zstd', 'gzip'])
    .refine((list) => new Set(list).size === list.length, 'each coding once')
    .describe('Codings offered, most preferred first; the order breaks ties between codings the client weights equally.'),
  levels: z.strictObject({
    gzip: z.number().int().min(1).max(9).default(6).describe('zlib level 1–9 (6 is zlib\'s own default).'),
    br: z.number().int().min(0).max(11).default(4).describe('Brotli quality 0–11; 4 is close to gzip 6 in speed and compresses better. 10–11 are for static assets, far too slow per request.'),
    zstd: z.number().int().min(1).max(19).default(3)
      .describe('Zstandard level 1–19 (3 is zstd\'s default). The window stays within 512 KiB at any level, far below the 8 MB limit of RFC 9659.'),
  }).prefault({}).describe('Compression level per coding.'),
  minSize: size.default(1024)
    .describe('Responses whose Content-Length is below this are sent as they are: a small body gains little and costs a compressor. A response without Content-Length (streamed) is compressed regardless.'),
  contentTypes: z.array(mediaRange).min(1).default([...DEFAULT_CONTENT_TYPES])
    .describe('Media types to compress, matched on the type without parameters: type/subtype, type/*, type/*+suffix, */*+suffix. A response without Content-Type is never compressed.'),
  eventStreams: z.enum(['skip', 'flush'], { error: 'skip or flush' }).default('skip')
    .describe('text/event-stream: skip (never compress, the default), or flush (compress, flushing after every chunk so each event reaches the client at once; a little ratio lost).'),
})

export type CompressionConfig = z.output<typeof schema>
