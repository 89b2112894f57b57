/**
 * ORCA (Open Request Cost Aggregation) load reports, as upstreams send them in
 * the `endpoint-load-metrics` response header for gRPC's and Envoy's load
 * balancers. The value starts with its format:
 *
 * - `TEXT cpu_utilization=0.3, mem_utilization=0.8, named_metrics.foo=1.2`
 *   (`name:value` is accepted too: Envoy's parser and some servers use it)
 * - `JSON {"cpu_utilization":0.3,"named_metrics":{"foo":1.2}}` (the proto3
 *   JSON mapping, so lowerCamel names are accepted as well)
 * - `BIN <base64 of an xds.data.orca.v3.OrcaLoadReport protobuf>`
 *
 * A header is untrusted input from an upstream: anything malformed yields
 * undefined, never an exception, and the report is then simply not used.
 */

/** One load report (xds.data.orca.v3.OrcaLoadReport). Fields absent from the report read 0, as in proto3. */
export interface OrcaLoadReport {
  /** Fraction of the endpoint's CPU in use; may exceed 1 past its soft limit. */
  cpuUtilization: number
  /** Fraction of the endpoint's memory in use, 0..1. */
  memUtilization: number
  /** The application's own notion of how busy it is (e.g. max of CPU and memory); may exceed 1. */
  applicationUtilization: number
  /** Requests per second the endpoint serves. */
  rpsFractional: number
  /** Errors per second the endpoint serves. */
  eps: number
  /** Application-specific metrics, `named_metrics.<name>` in TEXT. */
  namedMetrics: Map<string, number>
}

/** An empty report, to pass to `parseOrcaLoadReport` again and again. */
export function createOrcaLoadReport (): OrcaLoadReport {
  return { cpuUtilization: 0, memUtilization: 0, applicationUtilization: 0, rpsFractional: 0, eps: 0, namedMetrics: new Map() }
}

/**
 * The `endpoint-load-metrics` value of a response head: the first line when
 * the upstream sent the field more than once (one report per response is
 * meant; merging two is guesswork), undefined when it sent none.
 */
export function orcaHeader (value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : value?.[0]
}

/**
 * Parses an `endpoint-load-metrics` header value.
 *
 * @param into a report to overwrite, so a caller on the response path can
 *   reuse one instead of allocating a report per response. Its contents are
 *   unspecified when the result is undefined.
 * @returns `into` filled in, or undefined when the value is not a valid report
 *   (or not a string: pass a repeated field through `orcaHeader` first).
 *
 * @example
 * const report = parseOrcaLoadReport('TEXT cpu_utilization=0.3, rps_fractional=120')
 * report?.cpuUtilization // 0.3
 */
export function parseOrcaLoadReport (value: string, into: OrcaLoadReport = createOrcaLoadReport()): OrcaLoadReport | undefined {
  // A header map's value may be an array at run time whatever its type says.
  if (typeof value !== 'string') return undefined
  into.cpuUtilization = 0
  into.memUtilization = 0
  into.applicationUtilization = 0
  into.rpsFractional = 0
  into.eps = 0
  into.namedMetrics.clear()
  let start = 0
  while (start < value.length && isWhitespace(value.charCodeAt(start))) start++
  let ok = false
  if (value.startsWith('TEXT ', start)) ok = parseText(value, start + 5, into)
  else if (value.startsWith('JSON ', start)) ok = parseJson(value, start + 5, into)
  else if (value.startsWith('BIN ', start)) ok = parseBin(value, start + 4, into)
  return ok ? into : undefined
}

/**
 * How busy the report says the endpoint is: `application_utilization` when the
 * server sets it, else `cpu_utilization` (the order gRPC's weighted round
 * robin uses), NaN when it sets neither. Zero means unset in proto3, so a
 * report of exactly 0 reads as unset too.
 */
export function orcaUtilization (report: OrcaLoadReport): number {
  if (report.applicationUtilization > 0) return report.applicationUtilization
  if (report.cpuUtilization > 0) return report.cpuUtilization
  return Number.NaN
}

// Bits of the known fields, to reject a report that sets one twice (as
// Envoy does): with proto3 defaults there is no telling which one was meant.
const CPU = 1
const MEM = 2
const APPLICATION = 4
const RPS = 8
const EPS = 16

/**
 * Sets a known field. Returns the new seen-mask, or -1 when the field was
 * already set or the value is out of range (these are rates and fractions:
 * negative is nonsense).
 */
function setField (report: OrcaLoadReport, field: number, value: number, seen: number): number {
  if ((seen & field) !== 0 || !(value >= 0) || value === Infinity) return -1
  switch (field) {
    case CPU: report.cpuUtilization = value; break
    case MEM: report.memUtilization = value; break
    case APPLICATION: report.applicationUtilization = value; break
    case RPS: report.rpsFractional = value; break
    case EPS: report.eps = value; break
  }
  return seen | field
}

/** A known field's bit for the name in s[start, end), 0 for an unknown name. Compares in place, without slicing. */
function textField (s: string, start: number, end: number): number {
  const length = end - start
  if (length === 15 && s.startsWith('cpu_utilization', start)) return CPU
  if (length === 15 && s.startsWith('mem_utilization', start)) return MEM
  if (length === 23 && s.startsWith('application_utilization', start)) return APPLICATION
  if (length === 14 && s.startsWith('rps_fractional', start)) return RPS
  if (length === 3 && s.startsWith('eps', start)) return EPS
  return 0
}

const NAMED_PREFIX = 'named_metrics.'
/** A decimal number, as protobuf's text format and absl::SimpleAtod accept; no hex, no Infinity. */
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/

/** `name=value` pairs separated by commas, with optional whitespace around each part. */
function parseText (s: string, from: number, report: OrcaLoadReport): boolean {
  let seen = 0
  let i = from
  const n = s.length
  while (i < n) {
    let end = s.indexOf(',', i)
    if (end === -1) end = n
    while (i < end && isWhitespace(s.charCodeAt(i))) i++
    let sep = i
    while (sep < end && s.charCodeAt(sep) !== 0x3d /* = */ && s.charCodeAt(sep) !== 0x3a /* : */) sep++
    if (sep === end) {
      // Only an empty entry (a trailing comma, or an empty TEXT report) is fine.
      if (i === end) { i = end + 1; continue }
      return false
    }
    let nameEnd = sep
    while (nameEnd > i && isWhitespace(s.charCodeAt(nameEnd - 1))) nameEnd--
    let valueStart = sep + 1
    let valueEnd = end
    while (valueStart < valueEnd && isWhitespace(s.charCodeAt(valueStart))) valueStart++
    while (valueEnd > valueStart && isWhitespace(s.charCodeAt(valueEnd - 1))) valueEnd--
    if (nameEnd === i || valueEnd === valueStart) return false
    const text = s.slice(valueStart, valueEnd)
    if (!DECIMAL.test(text)) return false
    const value = Number(text)

    const field = textField(s, i, nameEnd)
    if (field !== 0) {
      seen = setField(report, field, value, seen)
      if (seen === -1) return false
    } else if (nameEnd - i >= NAMED_PREFIX.length && s.startsWith(NAMED_PREFIX, i)) {
      // Names are percent-encoded by some senders so they may hold , = and :.
      const name = decodeName(s.slice(i + NAMED_PREFIX.length, nameEnd))
      if (!name || report.namedMetrics.has(name) || !Number.isFinite(value)) return false
      report.namedMetrics.set(name, value)
    }
    // Unknown names are skipped rather than fatal: a newer server may send
    // fields this parser does not know yet.
    i = end + 1
  }
  return true
}

function decodeName (raw: string): string | undefined {
  if (!raw.includes('%')) return raw
  try {
    return decodeURIComponent(raw)
  } catch {
    return undefined
  }
}

const JSON_FIELDS: Record<string, number> = {
  cpu_utilization: CPU,
  cpuUtilization: CPU,
  mem_utilization: MEM,
  memUtilization: MEM,
  application_utilization: APPLICATION,
  applicationUtilization: APPLICATION,
  rps_fractional: RPS,
  rpsFractional: RPS,
  eps: EPS,
}

function parseJson (s: string, from: number, report: OrcaLoadReport): boolean {
  let document: unknown
  try {
    document = JSON.parse(s.slice(from))
  } catch {
    return false
  }
  if (!isObject(document)) return false
  let seen = 0
  for (const key of Object.keys(document)) {
    const raw = document[key]
    if (key === 'named_metrics' || key === 'namedMetrics') {
      if (!isObject(raw)) return false
      for (const name of Object.keys(raw)) {
        const value = jsonNumber(raw[name])
        if (!Number.isFinite(value) || report.namedMetrics.has(name)) return false
        report.namedMetrics.set(name, value)
      }
      continue
    }
    const field = Object.hasOwn(JSON_FIELDS, key) ? JSON_FIELDS[key]! : 0
    if (field === 0) continue
    seen = setField(report, field, jsonNumber(raw), seen)
    if (seen === -1) return false
  }
  return true
}

/** proto3 JSON writes a double as a number or as a numeric string. */
function jsonNumber (raw: unknown): number {
  if (typeof raw === 'number') return raw
  if (typeof raw === 'string' && DECIMAL.test(raw)) return Number(raw)
  return Number.NaN
}

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Standard or URL-safe base64, padded or not. */
const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/

// Protobuf wire types (https://protobuf.dev/programming-guides/encoding/).
const VARINT = 0
const I64 = 1
const LEN = 2
const I32 = 5

/**
 * Decodes the OrcaLoadReport message by hand: five doubles and one map are
 * all we read, which takes a few dozen lines against a protobuf runtime and
 * generated code. Field numbers from xds/data/orca/v3/orca_load_report.proto.
 */
function parseBin (s: string, from: number, report: OrcaLoadReport): boolean {
  const text = s.slice(from).trim()
  if (!BASE64.test(text) || text.length % 4 === 1) return false
  const reader = new ProtoReader(Buffer.from(text, 'base64'))
  let seen = 0
  let rps = 0
  while (!reader.done()) {
    const key = reader.varint()
    if (key < 0) return false
    const number = Math.floor(key / 8)
    const type = key % 8
    if (number === 0) return false
    const field = BIN_FIELDS[number] ?? 0
    if (field !== 0) {
      if (type !== I64) return false
      seen = setField(report, field, reader.double(), seen)
      if (seen === -1) return false
    } else if (number === 3 && type === VARINT) {
      // The deprecated integer rps; rps_fractional wins when both are sent.
      rps = reader.varint()
      if (rps < 0) return false
    } else if (number === 8 && type === LEN) {
      if (!readNamedMetric(reader, report)) return false
    } else if (!reader.skip(type)) {
      return false
    }
  }
  if ((seen & RPS) === 0) report.rpsFractional = rps
  return true
}

const BIN_FIELDS: Record<number, number> = { 1: CPU, 2: MEM, 6: RPS, 7: EPS, 9: APPLICATION }

/** One map<string, double> entry: a message with key = 1 and value = 2. */
function readNamedMetric (reader: ProtoReader, report: OrcaLoadReport): boolean {
  const length = reader.varint()
  if (length < 0 || !reader.has(length)) return false
  const end = reader.pos + length
  let name = ''
  let value = 0
  while (reader.pos < end) {
    const key = reader.varint()
    if (key < 0) return false
    if (key === (1 << 3 | LEN)) {
      const size = reader.varint()
      if (size < 0 || reader.pos + size > end) return false
      name = reader.string(size)
    } else if (key === (2 << 3 | I64)) {
      if (reader.pos + 8 > end) return false
      value = reader.double()
    } else if (!reader.skip(key % 8) || reader.pos > end) {
      return false
    }
  }
  if (reader.pos !== end || !Number.isFinite(value)) return false
  report.namedMetrics.set(name, value)
  return true
}

/** A cursor over protobuf bytes. Reads past the end are reported, never thrown. */
class ProtoReader {
  readonly #bytes: Buffer
  pos = 0

  constructor (bytes: Buffer) {
    this.#bytes = bytes
  }

  done (): boolean {
    return this.pos >= this.#bytes.length
  }

  has (length: number): boolean {
    return this.pos + length <= this.#bytes.length
  }

  /** A varint as a number (exact up to 2^53, which is all we need); -1 when truncated or over 10 bytes. */
  varint (): number {
    const bytes = this.#bytes
    let value = 0
    let scale = 1
    for (let i = 0; i < 10; i++) {
      if (this.pos >= bytes.length) return -1
      const byte = bytes[this.pos++]!
      value += (byte & 0x7f) * scale
      if (byte < 0x80) return value
      scale *= 128
    }
    return -1
  }

  /** A little-endian double; NaN when truncated (which setField rejects). */
  double (): number {
    if (!this.has(8)) {
      this.pos = this.#bytes.length + 1
      return Number.NaN
    }
    const value = this.#bytes.readDoubleLE(this.pos)
    this.pos += 8
    return value
  }

  string (length: number): string {
    const value = this.#bytes.toString('utf8', this.pos, this.pos + length)
    this.pos += length
    return value
  }

  /** Skips a field of an unknown number. False for groups (long deprecated) and truncation. */
  skip (type: number): boolean {
    switch (type) {
      case VARINT: return this.varint() >= 0
      case I64: this.pos += 8; break
      case I32: this.pos += 4; break
      case LEN: {
        const length = this.varint()
        if (length < 0) return false
        this.pos += length
        break
      }
      default: return false
    }
    return this.pos <= this.#bytes.length
  }
}

function isWhitespace (code: number): boolean {
  return code === 0x20 || code === 0x09
}
