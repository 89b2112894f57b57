import http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

/** One request as a recording upstream parsed it. */
export interface RecordedRequest {
  method: string
  url: string
  httpVersion: string
  rawHeaders: string[]
  body: Buffer
  trailers: Record<string, string | undefined>
}

export interface RecordingUpstream {
  readonly url: string
  readonly port: number
  readonly server: http.Server
  /** Requests fully received, in order. */
  readonly requests: RecordedRequest[]
  /** Every byte received since the last reset, on any connection. */
  readonly received: Buffer[]
  /** `received` as one buffer. */
  raw (): Buffer
  /** Forgets what was recorded (between cases sharing one upstream). */
  reset (): void
  close (): Promise<void>
}

/**
 * An upstream that records exactly what arrived: each parsed request (raw
 * header list, body bytes, trailers) and the raw bytes per connection. Answers
 * `200` with a tiny body naming the request's ordinal and path, so a client can
 * tell pipelined responses apart. Cases sharing one upstream run one at a time.
 */
export async function startRecordingUpstream (): Promise<RecordingUpstream> {
  const requests: RecordedRequest[] = []
  const received: Buffer[] = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      requests.push({
        method: req.method ?? '',
        url: req.url ?? '',
        httpVersion: req.httpVersion,
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks),
        trailers: req.trailers,
      })
      // /big: 4 MiB, more than any socket buffer holds.
      const body = req.url?.includes('/big') === true ? `#${requests.length} ${req.method} ${req.url} ${'.'.repeat(4 << 20)}` : `#${requests.length} ${req.method} ${req.url}`
      // A target with /slow in it is answered 300 ms late: a response still owed
      // when the client's next pipelined request arrives.
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) })
        res.end(body)
      }, req.url?.includes('/slow') === true ? 300 : 0)
    })
  })
  server.on('connection', (socket: net.Socket) => {
    // A 'data' listener makes node's parser hand the stream back to JS
    // (it unconsumes the handle), so both see every byte.
    socket.on('data', (c: Buffer) => received.push(c))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    requests,
    received,
    raw: () => Buffer.concat(received),
    reset () { requests.length = 0; received.length = 0 },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}

/** A response as read off the wire. */
export interface RawResponse {
  status: number
  /** Lower-case names; repeats joined with ', ' (set-cookie kept as the last). */
  headers: Record<string, string>
  rawHeaders: Array<[string, string]>
  body: Buffer
  trailers: Array<[string, string]>
}

export interface RawResult {
  responses: RawResponse[]
  /** The proxy closed the connection (FIN or reset) before we gave up waiting. */
  closed: boolean
  /** Bytes left over that did not form a complete response. */
  rest: Buffer
  /** Everything that came back, interim responses included. */
  raw: Buffer
}

export interface RawOptions {
  /** Methods of the requests sent, in order, so HEAD responses are read right. */
  methods?: string[]
  /** Stop waiting this long after the last byte once `expect` responses arrived. */
  quietMs?: number
  /** Responses to wait for before the quiet period starts (default 1). */
  expect?: number
  /** Give up after this long regardless (default 5 s). */
  maxMs?: number
  /** Written one after the other with `gapMs` between them (for slow clients). */
  gapMs?: number
}

/**
 * Sends `data` byte-exactly on a fresh connection and reads what comes back
 * until the proxy closes, or `expect` responses arrived and nothing more came
 * for `quietMs`. The socket is destroyed afterwards.
 */
export async function rawRequest (port: number, data: string | Buffer | Array<string | Buffer>, options: RawOptions = {}): Promise<RawResult> {
  const socket = net.connect(port, '127.0.0.1')
  socket.setNoDelay(true)
  let buf = Buffer.alloc(0)
  let closed = false
  let lastData = Date.now()
  socket.on('data', (c: Buffer) => { buf = Buffer.concat([buf, c]); lastData = Date.now() })
  socket.on('error', () => {})
  socket.on('close', () => { closed = true })
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  const pieces = Array.isArray(data) ? data : [data]
  for (let i = 0; i < pieces.length; i++) {
    if (i > 0 && options.gapMs !== undefined) await sleep(options.gapMs)
    if (closed) break
    socket.write(pieces[i] as string | Buffer, 'latin1')
  }
  const expect = options.expect ?? 1
  const quietMs = options.quietMs ?? 200
  const deadline = Date.now() + (options.maxMs ?? 5000)
  const methods = options.methods ?? []
  for (;;) {
    await sleep(10)
    if (closed || Date.now() > deadline) break
    const { responses } = parseResponses(buf, methods, false)
    if (responses.length >= expect && Date.now() - lastData >= quietMs) break
  }
  socket.destroy()
  const parsed = parseResponses(buf, methods, closed)
  return { responses: parsed.responses, closed, rest: parsed.rest, raw: buf }
}

/**
 * A small HTTP/1.1 response reader (RFC 9112 §6.3 body length rules, as a
 * client applies them): enough to split pipelined responses and see trailers.
 * Interim (1xx) responses are skipped, except 101 which ends the HTTP part.
 */
export function parseResponses (input: Buffer, methods: string[], eof: boolean): { responses: RawResponse[], rest: Buffer } {
  const responses: RawResponse[] = []
  let pos = 0
  for (;;) {
    const end = input.indexOf('\r\n\r\n', pos)
    if (end === -1) break
    const lines = input.subarray(pos, end).toString('latin1').split('\r\n')
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] as string)
    if (m === null) break
    const status = Number(m[1])
    const rawHeaders: Array<[string, string]> = []
    const headers: Record<string, string> = {}
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':')
      const name = line.slice(0, i).trim()
      const value = line.slice(i + 1).trim()
      rawHeaders.push([name, value])
      const k = name.toLowerCase()
      headers[k] = headers[k] === undefined || k === 'set-cookie' ? value : `${headers[k]}, ${value}`
    }
    let p = end + 4
    const method = methods[responses.length] ?? 'GET'
    const trailers: Array<[string, string]> = []
    let body: Buffer
    if (status === 101) {
      // Switching Protocols: what follows is no longer HTTP.
      responses.push({ status, headers, rawHeaders, body: Buffer.alloc(0), trailers })
      return { responses, rest: input.subarray(p) }
    }
    if (status < 200) { pos = p; continue }
    if (method === 'HEAD' || status === 204 || status === 304) {
      body = Buffer.alloc(0)
    } else if ((headers['transfer-encoding'] ?? '').toLowerCase().includes('chunked')) {
      const parts: Buffer[] = []
      let complete = false
      for (;;) {
        const le = input.indexOf('\r\n', p)
        if (le === -1) break
        const size = parseInt(input.subarray(p, le).toString('latin1').split(';')[0] as string, 16)
        if (size === 0) {
          let q = le + 2
          for (;;) {
            const te = input.indexOf('\r\n', q)
            if (te === -1) { q = -1; break }
            if (te === q) { q = te + 2; complete = true; break }
            const line = input.subarray(q, te).toString('latin1')
            const i = line.indexOf(':')
            trailers.push([line.slice(0, i).trim(), line.slice(i + 1).trim()])
            q = te + 2
          }
          if (complete) p = q
          break
        }
        if (le + 2 + size + 2 > input.length) break
        parts.push(input.subarray(le + 2, le + 2 + size))
        p = le + 2 + size + 2
      }
      if (!complete) break
      body = Buffer.concat(parts)
    } else if (headers['content-length'] !== undefined) {
      const len = Number(headers['content-length'])
      if (p + len > input.length) break
      body = input.subarray(p, p + len)
      p += len
    } else {
      if (!eof) break
      body = input.subarray(p)
      p = input.length
    }
    responses.push({ status, headers, rawHeaders, body, trailers })
    pos = p
  }
  return { responses, rest: input.subarray(pos) }
}

/** One request as read off the wire by `parseRequests`. */
export interface RawRequestHead {
  requestLine: string
  headers: Array<[string, string]>
  /** How the body was delimited. */
  framing: 'none' | 'content-length' | 'chunked'
  body: Buffer
}

/**
 * Splits raw bytes an upstream received into requests, strictly: exactly one
 * of Content-Length or chunked, CRLF only. Whatever does not parse is `rest`,
 * so a test can insist the bytes were exactly N well-formed requests.
 */
export function parseRequests (input: Buffer): { requests: RawRequestHead[], rest: Buffer } {
  const requests: RawRequestHead[] = []
  let pos = 0
  for (;;) {
    const end = input.indexOf('\r\n\r\n', pos)
    if (end === -1) break
    const text = input.subarray(pos, end).toString('latin1')
    if (/[\r\n]/.test(text.replaceAll('\r\n', ''))) break
    const lines = text.split('\r\n')
    const requestLine = lines[0] as string
    if (!/^[A-Z]+ \S+ HTTP\/1\.1$/.test(requestLine)) break
    const headers: Array<[string, string]> = []
    for (const line of lines.slice(1)) {
      const m = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/.exec(line)
      if (m === null) return { requests, rest: input.subarray(pos) }
      headers.push([m[1] as string, m[2] as string])
    }
    const cl = headers.filter(([k]) => k.toLowerCase() === 'content-length')
    const te = headers.filter(([k]) => k.toLowerCase() === 'transfer-encoding')
    if (cl.length > 1 || te.length > 1 || (cl.length === 1 && te.length === 1)) break
    let p = end + 4
    let body: Buffer
    let framing: RawRequestHead['framing'] = 'none'
    if (te.length === 1) {
      if ((te[0] as [string, string])[1] !== 'chunked') break
      framing = 'chunked'
      const parts: Buffer[] = []
      let complete = false
      for (;;) {
        const le = input.indexOf('\r\n', p)
        if (le === -1) break
        const sizeText = input.subarray(p, le).toString('latin1')
        if (!/^[0-9a-fA-F]+$/.test(sizeText)) break
        const size = parseInt(sizeText, 16)
        if (size === 0) {
          // No request trailers are expected: the last-chunk is followed by CRLF.
          if (input.subarray(le + 2, le + 4).toString('latin1') === '\r\n') { p = le + 4; complete = true }
          break
        }
        if (input.subarray(le + 2 + size, le + 4 + size).toString('latin1') !== '\r\n') break
        parts.push(input.subarray(le + 2, le + 2 + size))
        p = le + 4 + size
      }
      if (!complete) break
      body = Buffer.concat(parts)
    } else if (cl.length === 1) {
      const v = (cl[0] as [string, string])[1]
      if (!/^\d+$/.test(v)) break
      framing = 'content-length'
      const len = Number(v)
      if (p + len > input.length) break
      body = input.subarray(p, p + len)
      p += len
    } else {
      body = Buffer.alloc(0)
    }
    requests.push({ requestLine, headers, framing, body })
    pos = p
  }
  return { requests, rest: input.subarray(pos) }
}

export interface ScriptedUpstream {
  readonly url: string
  readonly port: number
  /** Request heads received (bodiless requests only), as text. */
  readonly heads: string[]
  close (): Promise<void>
}

/**
 * An upstream that answers each bodiless request with exactly the bytes
 * `respond` returns: for responses node's http server would not produce
 * (hop-by-hop fields of our choosing, malformed framing, early resets). If
 * `respond` returns `null` the connection is destroyed instead.
 */
export async function startScriptedUpstream (respond: (head: string, socket: net.Socket) => string | Buffer | null | undefined): Promise<ScriptedUpstream> {
  const heads: string[] = []
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let buf = ''
    socket.on('data', (c: Buffer) => {
      buf += c.toString('latin1')
      for (let end = buf.indexOf('\r\n\r\n'); end !== -1; end = buf.indexOf('\r\n\r\n')) {
        const head = buf.slice(0, end)
        buf = buf.slice(end + 4)
        heads.push(head)
        const out = respond(head, socket)
        if (out === null) { socket.destroy(); return }
        if (out !== undefined) socket.write(typeof out === 'string' ? Buffer.from(out, 'latin1') : out)
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    heads,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy()
      server.close(() => resolve())
    }),
  }
}
