import http from 'node:http'
import { gunzipSync } from 'node:zlib'
import type { AddressInfo } from 'node:net'

/**
 * A real OTLP/HTTP trace receiver on 127.0.0.1:0: `POST /v1/traces` with an
 * `application/x-protobuf` (or `application/json`) ExportTraceServiceRequest,
 * decoded here into plain spans for assertions. The protobuf decoder is
 * written out by hand for the fields tests need, from the messages in
 * opentelemetry-proto (`collector/trace/v1/trace_service.proto`,
 * `trace/v1/trace.proto`, `common/v1/common.proto`), so the exporter's bytes
 * are checked against the wire format, not against its own serializer.
 */

export type AttributeValue = string | number | boolean | AttributeValue[] | undefined

export interface ReceivedEvent {
  name: string
  attributes: Record<string, AttributeValue>
}

export interface ReceivedSpan {
  /** Lower-case hex, as in `traceparent`. */
  traceId: string
  spanId: string
  /** '' for a root span. */
  parentSpanId: string
  traceState: string
  name: string
  /** SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number
  startTimeUnixNano: bigint
  endTimeUnixNano: bigint
  attributes: Record<string, AttributeValue>
  events: ReceivedEvent[]
  /** StatusCode: 0 unset, 1 ok, 2 error. */
  status: { code: number, message: string }
  resource: Record<string, AttributeValue>
  scope: string
}

export const SPAN_KIND = { INTERNAL: 1, SERVER: 2, CLIENT: 3 } as const
export const STATUS_CODE = { UNSET: 0, OK: 1, ERROR: 2 } as const

export interface OtlpReceiver {
  /** The traces URL to configure as `tracing.endpoint`. */
  readonly url: string
  /** Every span received, in arrival order. */
  readonly spans: ReceivedSpan[]
  /** Content types of the export requests received (one per request, however answered). */
  readonly contentTypes: string[]
  /** Resolves once at least `count` spans (matching `filter`) arrived; rejects after `timeoutMs`. */
  waitForSpans (count: number, filter?: (s: ReceivedSpan) => boolean, timeoutMs?: number): Promise<ReceivedSpan[]>
  /** Behaves as `ok` from now on, and answers the exports held so far with success. */
  release (): void
  close (): Promise<void>
}

/**
 * How the receiver answers exports, to play a collector in trouble:
 * `ok` (the default) accepts them; a number answers every export with that
 * status and records nothing (503: a collector shedding load); `hold` records
 * the spans and never answers (a collector that stopped reading), until close.
 */
export type ReceiverBehaviour = 'ok' | 'hold' | number

export async function startOtlpReceiver (behaviour: ReceiverBehaviour = 'ok'): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = []
  const contentTypes: string[] = []
  const waiters = new Set<() => void>()
  /** Success answers of held exports, sent on release(). */
  const held: Array<() => void> = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces') { res.writeHead(404).end(); return }
      const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim() ?? ''
      contentTypes.push(type)
      if (typeof behaviour === 'number') { res.writeHead(behaviour, { 'content-length': '0' }).end(); return }
      let body = Buffer.concat(chunks)
      let accept: () => void
      try {
        if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body)
        if (type === 'application/x-protobuf') {
          spans.push(...decodeExportTraceServiceRequest(body))
          // An empty ExportTraceServiceResponse: full success.
          accept = () => { res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': '0' }).end() }
        } else if (type === 'application/json') {
          spans.push(...fromJson(JSON.parse(body.toString('utf8')) as JsonRequest))
          accept = () => { res.writeHead(200, { 'content-type': 'application/json' }).end('{}') }
        } else {
          res.writeHead(415).end()
          return
        }
      } catch (err) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end(String(err))
        return
      }
      if (behaviour === 'hold') held.push(accept)
      else accept()
      for (const w of waiters) w()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}/v1/traces`,
    spans,
    contentTypes,
    waitForSpans (count, filter = () => true, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const found = spans.filter(filter)
          if (found.length < count) return
          waiters.delete(check)
          clearTimeout(timer)
          resolve(found)
        }
        const timer = setTimeout(() => {
          waiters.delete(check)
          reject(new Error(`expected ${count} spans, received ${spans.filter(filter).length}: ${spans.map((s) => s.name).join(', ')}`))
        }, timeoutMs)
        waiters.add(check)
        check()
      })
    },
    release () {
      behaviour = 'ok'
      for (const accept of held.splice(0)) accept()
    },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}

// ---- protobuf wire format ------------------------------------------------------

/** One field of a message: its number, and its value by wire type (`bytes` also holds a fixed64's 8 bytes). */
interface Field { no: number, varint?: bigint, bytes?: Buffer, fixed64?: bigint, fixed32?: number }

/** The fields of one message, in order (repeated fields appear repeatedly). */
function fields (buf: Buffer): Field[] {
  const out: Field[] = []
  let pos = 0
  const varint = (): bigint => {
    let result = 0n
    let shift = 0n
    for (;;) {
      if (pos >= buf.length) throw new Error('truncated varint')
      const b = buf[pos++] as number
      result |= BigInt(b & 0x7f) << shift
      if ((b & 0x80) === 0) return result
      shift += 7n
    }
  }
  while (pos < buf.length) {
    const key = Number(varint())
    const no = key >>> 3
    switch (key & 7) {
      case 0: out.push({ no, varint: varint() }); break
      case 1: out.push({ no, fixed64: buf.readBigUInt64LE(pos), bytes: buf.subarray(pos, pos + 8) }); pos += 8; break
      case 2: {
        const len = Number(varint())
        if (pos + len > buf.length) throw new Error('truncated length-delimited field')
        out.push({ no, bytes: buf.subarray(pos, pos + len) }); pos += len
        break
      }
      case 5: out.push({ no, fixed32: buf.readUInt32LE(pos) }); pos += 4; break
      default: throw new Error(`unsupported wire type ${key & 7}`)
    }
  }
  return out
}

const str = (f: Field): string => (f.bytes as Buffer).toString('utf8')
const hex = (f: Field): string => (f.bytes as Buffer).toString('hex')

/** `int64` varints are two's complement in 64 bits. */
function int64 (v: bigint): number {
  return Number(BigInt.asIntN(64, v))
}

/** common.v1.AnyValue: a oneof of string 1, bool 2, int64 3, double 4, array 5, kvlist 6, bytes 7. */
function anyValue (buf: Buffer): AttributeValue {
  for (const f of fields(buf)) {
    switch (f.no) {
      case 1: return str(f)
      case 2: return f.varint !== 0n
      case 3: return int64(f.varint as bigint)
      case 4: return (f.bytes as Buffer).readDoubleLE(0)
      case 5: return fields(f.bytes as Buffer).filter((v) => v.no === 1).map((v) => anyValue(v.bytes as Buffer))
      case 7: return hex(f)
    }
  }
  return undefined
}

/** repeated common.v1.KeyValue { string key = 1; AnyValue value = 2 } */
function keyValues (list: Field[], no: number): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {}
  for (const f of list) {
    if (f.no !== no) continue
    let key = ''
    let value: AttributeValue
    for (const kv of fields(f.bytes as Buffer)) {
      if (kv.no === 1) key = str(kv)
      else if (kv.no === 2) value = anyValue(kv.bytes as Buffer)
    }
    out[key] = value
  }
  return out
}

/**
 * ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1 }
 * ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2 }
 * ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2 }
 */
export function decodeExportTraceServiceRequest (buf: Buffer): ReceivedSpan[] {
  const out: ReceivedSpan[] = []
  for (const rs of fields(buf)) {
    if (rs.no !== 1) continue
    const rsFields = fields(rs.bytes as Buffer)
    const resourceField = rsFields.find((f) => f.no === 1)
    const resource = resourceField === undefined ? {} : keyValues(fields(resourceField.bytes as Buffer), 1)
    for (const ss of rsFields) {
      if (ss.no !== 2) continue
      const ssFields = fields(ss.bytes as Buffer)
      const scopeField = ssFields.find((f) => f.no === 1)
      const scope = scopeField === undefined ? '' : str(fields(scopeField.bytes as Buffer).find((f) => f.no === 1) ?? { no: 1, bytes: Buffer.alloc(0) })
      for (const sp of ssFields) if (sp.no === 2) out.push(decodeSpan(sp.bytes as Buffer, resource, scope))
    }
  }
  return out
}

/**
 * trace.v1.Span: trace_id 1, span_id 2, trace_state 3, parent_span_id 4,
 * name 5, kind 6, start 7, end 8 (fixed64), attributes 9, events 11, status 15.
 */
function decodeSpan (buf: Buffer, resource: Record<string, AttributeValue>, scope: string): ReceivedSpan {
  const span: ReceivedSpan = {
    traceId: '', spanId: '', parentSpanId: '', traceState: '', name: '', kind: 0,
    startTimeUnixNano: 0n, endTimeUnixNano: 0n, attributes: {}, events: [], status: { code: 0, message: '' }, resource, scope,
  }
  const list = fields(buf)
  for (const f of list) {
    switch (f.no) {
      case 1: span.traceId = hex(f); break
      case 2: span.spanId = hex(f); break
      case 3: span.traceState = str(f); break
      case 4: span.parentSpanId = hex(f); break
      case 5: span.name = str(f); break
      case 6: span.kind = Number(f.varint); break
      case 7: span.startTimeUnixNano = f.fixed64 as bigint; break
      case 8: span.endTimeUnixNano = f.fixed64 as bigint; break
      case 11: {
        // Event { fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue attributes = 3 }
        const ev = fields(f.bytes as Buffer)
        const name = ev.find((e) => e.no === 2)
        span.events.push({ name: name === undefined ? '' : str(name), attributes: keyValues(ev, 3) })
        break
      }
      case 15: {
        // Status { string message = 2; StatusCode code = 3 }
        for (const s of fields(f.bytes as Buffer)) {
          if (s.no === 2) span.status.message = str(s)
          else if (s.no === 3) span.status.code = Number(s.varint)
        }
        break
      }
    }
  }
  span.attributes = keyValues(list, 9)
  return span
}

// ---- OTLP/JSON (the same messages, proto3 JSON mapping; ids as hex) --------------

interface JsonAnyValue { stringValue?: string, boolValue?: boolean, intValue?: string | number, doubleValue?: number, arrayValue?: { values?: JsonAnyValue[] } }
interface JsonKeyValue { key: string, value?: JsonAnyValue }
interface JsonSpan {
  traceId: string, spanId: string, parentSpanId?: string, traceState?: string, name: string, kind?: number,
  startTimeUnixNano?: string | number, endTimeUnixNano?: string | number, attributes?: JsonKeyValue[],
  events?: Array<{ name: string, attributes?: JsonKeyValue[] }>, status?: { code?: number, message?: string },
}
interface JsonRequest {
  resourceSpans?: Array<{ resource?: { attributes?: JsonKeyValue[] }, scopeSpans?: Array<{ scope?: { name?: string }, spans?: JsonSpan[] }> }>
}

function jsonValue (v: JsonAnyValue | undefined): AttributeValue {
  if (v === undefined) return undefined
  if (v.stringValue !== undefined) return v.stringValue
  if (v.boolValue !== undefined) return v.boolValue
  if (v.intValue !== undefined) return Number(v.intValue)
  if (v.doubleValue !== undefined) return v.doubleValue
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(jsonValue)
  return undefined
}

function jsonAttributes (list: JsonKeyValue[] | undefined): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {}
  for (const kv of list ?? []) out[kv.key] = jsonValue(kv.value)
  return out
}

function fromJson (body: JsonRequest): ReceivedSpan[] {
  const out: ReceivedSpan[] = []
  for (const rs of body.resourceSpans ?? []) {
    const resource = jsonAttributes(rs.resource?.attributes)
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: s.traceId.toLowerCase(),
          spanId: s.spanId.toLowerCase(),
          parentSpanId: (s.parentSpanId ?? '').toLowerCase(),
          traceState: s.traceState ?? '',
          name: s.name,
          kind: s.kind ?? 0,
          startTimeUnixNano: BigInt(s.startTimeUnixNano ?? 0),
          endTimeUnixNano: BigInt(s.endTimeUnixNano ?? 0),
          attributes: jsonAttributes(s.attributes),
          events: (s.events ?? []).map((e) => ({ name: e.name, attributes: jsonAttributes(e.attributes) })),
          status: { code: s.status?.code ?? 0, message: s.status?.message ?? '' },
          resource,
          scope: ss.scope?.name ?? '',
        })
      }
    }
  }
  return out
}
