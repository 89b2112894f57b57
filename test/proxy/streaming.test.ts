import t from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import v8 from 'node:v8'
import vm from 'node:vm'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.ts'
import { startTestProxy, simpleDoc } from '../helpers/proxy.ts'
import { rawRequest, startScriptedUpstream } from '../helpers/raw-http.ts'

/**
 * Bodies are streamed with backpressure end to end (ARCHITECTURE §1): the
 * proxy never holds a whole body, a slow reader slows the upstream down, and
 * framing details (chunked, trailers, bodiless responses) survive the hop.
 */

const MB = 1024 * 1024
const CHUNK = Buffer.alloc(64 * 1024, 'x')

/** `total` bytes from one shared chunk: generating costs no memory. */
function generated (total: number): Readable {
  let left = total
  return new Readable({
    read () {
      if (left <= 0) { this.push(null); return }
      const n = Math.min(left, CHUNK.length)
      left -= n
      this.push(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))
    },
  })
}

/** Writes `total` bytes to `res`, honouring write()'s backpressure signal. */
async function writeGenerated (res: http.ServerResponse, total: number, state?: { written: number, blocked: boolean, sawFalse: boolean }): Promise<void> {
  let left = total
  while (left > 0) {
    const n = Math.min(left, CHUNK.length)
    left -= n
    const ok = res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))
    if (state !== undefined) state.written += n
    if (!ok) {
      if (state !== undefined) { state.sawFalse = true; state.blocked = true }
      await once(res, 'drain')
      if (state !== undefined) state.blocked = false
    }
  }
  res.end()
}

// Socket reads allocate a fresh buffer each time, and a fast transfer outruns
// the collector: without a GC before each sample, RSS measures garbage (a
// direct client → upstream copy "grows" 70 MB too). With one, it measures what
// is actually held, which is what a buffering bug would inflate.
v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void

/** Samples RSS (after a GC) while `fn` runs; resolves to the peak growth. */
async function peakRssGrowth (fn: () => Promise<void>): Promise<number> {
  gc()
  const base = process.memoryUsage().rss
  let peak = base
  const timer = setInterval(() => { gc(); peak = Math.max(peak, process.memoryUsage().rss) }, 50)
  try {
    await fn()
  } finally {
    clearInterval(timer)
  }
  peak = Math.max(peak, process.memoryUsage().rss)
  return peak - base
}

t.test('a 200 MB upload streams through with bounded memory', async (t) => {
  const size = 200 * MB
  let received = 0
  const up = await startUpstream((req, res) => {
    req.on('data', (c: Buffer) => { received += c.length })
    req.on('end', () => { res.end(String(received)) })
  })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  const growth = await peakRssGrowth(async () => {
    const res = await request(`${proxy.url}/upload`, {
      method: 'PUT',
      body: generated(size),
      headers: { 'content-length': String(size) },
    })
    t.equal(res.statusCode, 200)
    t.equal(await res.body.text(), String(size), 'the upstream received every byte')
  })
  t.equal(up.seen[0]?.headers['content-length'], String(size), 'the declared length is relayed')
  t.ok(growth < 100 * MB, `RSS grew by ${(growth / MB).toFixed(1)} MB (< 100 MB)`)
})

t.test('a 200 MB chunked download streams through with bounded memory', async (t) => {
  const size = 200 * MB
  const up = await startUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    void writeGenerated(res, size)
  })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  let got = 0
  const growth = await peakRssGrowth(async () => {
    const res = await request(`${proxy.url}/download`)
    t.equal(res.statusCode, 200)
    t.equal(res.headers['transfer-encoding'], 'chunked')
    for await (const c of res.body) got += (c as Buffer).length
  })
  t.equal(got, size, 'every byte arrived')
  t.ok(growth < 100 * MB, `RSS grew by ${(growth / MB).toFixed(1)} MB (< 100 MB)`)
})

t.test('a slow reader throttles the upstream through backpressure', async (t) => {
  const size = 256 * MB
  const state = { written: 0, blocked: false, sawFalse: false }
  const up = await startUpstream((_req, res) => {
    res.writeHead(200, { 'content-length': String(size) })
    void writeGenerated(res, size, state)
  })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)

  const req = http.get(`${proxy.url}/slow`)
  const [res] = await once(req, 'response') as [http.IncomingMessage]
  res.pause()
  t.teardown(() => { req.destroy() })
  // Wait until the upstream has been stuck on 'drain' for a while: the proxy
  // stopped reading because the client stopped reading.
  let stuckSince = 0
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    await sleep(25)
    if (!state.blocked) { stuckSince = 0; continue }
    if (stuckSince === 0) stuckSince = Date.now()
    else if (Date.now() - stuckSince > 300) break
  }
  t.ok(state.sawFalse, 'the upstream\'s write() returned false')
  t.ok(state.blocked, 'the upstream is waiting for drain while the client does not read')
  t.ok(state.written < 64 * MB, `the upstream stalled after ${(state.written / MB).toFixed(1)} MB of ${size / MB} MB`)

  let got = 0
  res.on('data', (c: Buffer) => { got += c.length })
  res.resume()
  await once(res, 'end')
  t.equal(got, size, 'everything arrives once the client reads again')
})

t.test('a slow upstream reader throttles the client\'s upload through backpressure', async (t) => {
  const size = 256 * MB
  let upstreamReq: http.IncomingMessage | undefined
  const up = await startUpstream((req, res) => {
    // Read nothing until told to.
    req.pause()
    upstreamReq = req
    let got = 0
    req.on('data', (c: Buffer) => { got += c.length })
    req.on('end', () => { res.end(String(got)) })
  })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)

  let pulled = 0
  let left = size
  const body = new Readable({
    read () {
      if (left <= 0) { this.push(null); return }
      left -= CHUNK.length
      pulled += CHUNK.length
      this.push(CHUNK)
    },
  })
  const responded = request(`${proxy.url}/upload`, { method: 'PUT', body, headers: { 'content-length': String(size) } })
  // Wait until the client has not been able to push anything for a while.
  let last = -1
  let stillSince = 0
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    await sleep(25)
    if (pulled !== last) { last = pulled; stillSince = Date.now(); continue }
    if (upstreamReq !== undefined && Date.now() - stillSince > 300) break
  }
  t.ok(upstreamReq !== undefined, 'the request reached the upstream')
  t.ok(pulled < 64 * MB, `the client stalled after ${(pulled / MB).toFixed(1)} MB of ${size / MB} MB`)
  upstreamReq?.resume()
  const res = await responded
  t.equal(await res.body.text(), String(size), 'everything arrives once the upstream reads again')
})

t.test('chunked request and chunked response keep their framing', async (t) => {
  const up = await startUpstream((req, res) => {
    const parts: Buffer[] = []
    req.on('data', (c: Buffer) => parts.push(c))
    req.on('end', () => {
      res.writeHead(200, { 'x-te': String(req.headers['transfer-encoding']), 'x-cl': String(req.headers['content-length']) })
      res.write('echo:')
      res.end(Buffer.concat(parts))
    })
  })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  // Sent in pieces, so the body is still open when the proxy dispatches:
  // its length is unknown and it must be relayed chunked.
  const slow = await rawRequest(proxy.port, [
    'POST /c HTTP/1.1\r\nHost: x.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n',
    '4\r\ndefg\r\n',
    '0\r\n\r\n',
  ], { gapMs: 100 })
  const r = slow.responses[0]
  t.equal(r?.status, 200)
  t.equal(r?.headers['x-te'], 'chunked', 'the upstream got a chunked request')
  t.equal(r?.headers['x-cl'], 'undefined', 'and no Content-Length')
  t.equal(r?.headers['transfer-encoding'], 'chunked', 'the client got a chunked response')
  t.equal(r?.body.toString(), 'echo:abcdefg')

  // All in one packet, the body is complete before dispatch: undici may frame
  // it with its length instead (RFC 9112 §7: a proxy may decode chunked). Either
  // way the upstream sees exactly one framing and the same bytes.
  const fast = await rawRequest(proxy.port,
    'POST /c HTTP/1.1\r\nHost: x.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n')
  const f = fast.responses[0]
  t.ok((f?.headers['x-te'] === 'chunked') !== (f?.headers['x-cl'] === '7'), `one framing upstream (te=${f?.headers['x-te']}, cl=${f?.headers['x-cl']})`)
  t.equal(f?.body.toString(), 'echo:abcdefg')
})

t.test('response trailers are forwarded', async (t) => {
  const up = await startUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum, x-count' })
    res.write('hello ')
    res.write('world')
    res.addTrailers({ 'x-checksum': 'abc123', 'x-count': '2' })
    res.end()
  })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  const result = await rawRequest(proxy.port, 'GET /t HTTP/1.1\r\nHost: x.test\r\nTE: trailers\r\n\r\n')
  const r = result.responses[0]
  t.equal(r?.status, 200)
  t.equal(r?.body.toString(), 'hello world')
  t.equal(r?.headers.trailer, 'x-checksum, x-count', 'the Trailer field announces them')
  t.same(r?.trailers.map(([k, v]) => [k.toLowerCase(), v]), [['x-checksum', 'abc123'], ['x-count', '2']])

  // And through undici, as an ordinary client would read them.
  const res = await request(`${proxy.url}/t`)
  t.equal(await res.body.text(), 'hello world')
  t.same(res.trailers, { 'x-checksum': 'abc123', 'x-count': '2' })
})

t.test('trailers that would change framing, routing or authentication are not relayed (RFC 9110 §6.5.1)', async (t) => {
  const up = await startUpstream((_req, res) => {
    // (A Content-Length trailer never gets this far: undici's parser refuses the response.)
    res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum, set-cookie, location, www-authenticate' })
    res.write('body')
    res.addTrailers({ 'x-checksum': 'abc', 'set-cookie': 'session=evil', location: 'https://evil.test/', 'www-authenticate': 'Basic realm="x"' })
    res.end()
  })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  const res = await request(`${proxy.url}/t`)
  t.equal(await res.body.text(), 'body')
  t.same(res.trailers, { 'x-checksum': 'abc' }, 'only the harmless one')
})

t.test('HEAD, 204 and 304 carry no body, and the connection stays in sync', async (t) => {
  const up = await startUpstream((req, res) => {
    switch (req.url) {
      case '/head':
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' })
        res.end(req.method === 'HEAD' ? undefined : 'x'.repeat(1000))
        return
      case '/204':
        res.writeHead(204, { 'x-a': '1' })
        res.end()
        return
      case '/304':
        res.writeHead(304, { etag: '"v1"', 'cache-control': 'max-age=60' })
        res.end()
        return
      default:
        res.end(`after ${req.url}`)
    }
  })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  const H = 'Host: x.test\r\n'
  // Pipelined on one connection: a stray body byte would corrupt what follows.
  const result = await rawRequest(proxy.port, [
    `HEAD /head HTTP/1.1\r\n${H}\r\n`,
    `GET /next1 HTTP/1.1\r\n${H}\r\n`,
    `DELETE /204 HTTP/1.1\r\n${H}\r\n`,
    `GET /next2 HTTP/1.1\r\n${H}\r\n`,
    `GET /304 HTTP/1.1\r\n${H}If-None-Match: "v1"\r\n\r\n`,
    `GET /next3 HTTP/1.1\r\n${H}\r\n`,
  ], { methods: ['HEAD', 'GET', 'DELETE', 'GET', 'GET', 'GET'], expect: 6 })
  const [head, n1, noContent, n2, notModified, n3] = result.responses
  t.equal(result.responses.length, 6, 'six responses')
  t.equal(result.rest.length, 0, 'no stray bytes')
  t.equal(head?.status, 200)
  t.equal(head?.headers['content-length'], '1000', 'HEAD keeps the length of the GET')
  t.equal(head?.body.length, 0)
  t.equal(n1?.body.toString(), 'after /next1')
  t.equal(noContent?.status, 204)
  t.equal(noContent?.headers['content-length'], undefined, 'no Content-Length on 204 (RFC 9110 §8.6)')
  t.equal(noContent?.headers['transfer-encoding'], undefined, 'no Transfer-Encoding on 204 (RFC 9112 §6.1)')
  t.equal(noContent?.headers['x-a'], '1')
  t.equal(n2?.body.toString(), 'after /next2')
  t.equal(notModified?.status, 304)
  t.equal(notModified?.headers.etag, '"v1"')
  t.equal(notModified?.headers['transfer-encoding'], undefined, 'no Transfer-Encoding on 304')
  t.equal(n3?.body.toString(), 'after /next3')
})

t.test('a stray Content-Length on an upstream 204 is not relayed', async (t) => {
  const up = await startScriptedUpstream((head) => head.startsWith('DELETE')
    ? 'HTTP/1.1 204 No Content\r\nContent-Length: 12\r\nX-A: 1\r\n\r\n'
    : 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext')
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  const result = await rawRequest(proxy.port, 'DELETE /x HTTP/1.1\r\nHost: x.test\r\n\r\nGET /y HTTP/1.1\r\nHost: x.test\r\n\r\n', { methods: ['DELETE', 'GET'], expect: 2 })
  t.equal(result.responses[0]?.status, 204)
  t.equal(result.responses[0]?.headers['content-length'], undefined, 'RFC 9110 §8.6')
  t.equal(result.responses[0]?.headers['x-a'], '1')
  t.equal(result.responses[1]?.body.toString(), 'next', 'the next response is intact')
})

/**
 * Sends a chunked POST's head and first chunk on a raw connection; once the
 * response head is in, the rest of the body and a pipelined GET. Resolves to
 * that head and to whether the GET was answered (else the proxy closed); a
 * head without `Connection: close` ends the test at once.
 */
async function uploadThenGet (port: number): Promise<{ head: string, second: boolean }> {
  const net = await import('node:net')
  const s = net.connect(port, '127.0.0.1')
  s.on('error', () => {}) // the proxy may close while the rest of the body is still going out
  const chunk = `10000\r\n${'a'.repeat(0x10000)}\r\n`
  let seen = ''
  let head = ''
  s.on('data', (d: Buffer) => {
    seen += d.toString('latin1')
    if (head === '' && seen.includes('\r\n\r\n')) {
      head = seen.slice(0, seen.indexOf('\r\n\r\n')).toLowerCase()
      // A connection promised to stay open would stall here: the head says enough.
      if (!head.includes('\r\nconnection: close')) { s.destroy(); return }
      for (let i = 0; i < 16; i++) s.write(chunk)
      s.write('0\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n')
    }
    if (seen.includes('second ok')) s.end()
  })
  const closed = new Promise((resolve) => s.on('close', resolve)) // not once(): it rejects on the EPIPE
  s.write(`POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${chunk}`)
  await closed
  return { head, second: seen.includes('second ok') }
}

t.test('an upstream answering before the request body is in: the connection closes after the answer instead of stalling', async (t) => {
  // An auth or size refusal that does not wait for the upload, then closes.
  const up = await startUpstream((req, res) => {
    if (req.method === 'GET') { res.end('second ok'); return }
    res.writeHead(401, { 'content-length': '6', connection: 'close' })
    res.end('denied', () => { req.socket.destroy() })
  })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  const early = await uploadThenGet(proxy.port)
  t.match(early.head, /^http\/1\.1 401/)
  t.match(early.head, /\r\nconnection: close/, 'the answer says the connection ends (RFC 9112 §9.6)')
  t.notOk(early.second, 'and it does: nothing more is read from it')
})

t.test('an upstream answering early but reading the whole body: the connection is closed too, never left stalled', async (t) => {
  const up = await startUpstream((req, res) => {
    if (req.method === 'GET') { res.end('second ok'); return }
    res.writeHead(401, { 'content-length': '6' })
    res.end('denied')
    req.resume()
  })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  const early = await uploadThenGet(proxy.port)
  t.match(early.head, /\r\nconnection: close/)
})

t.test('an upstream that reads the whole body before answering keeps the connection', async (t) => {
  const up = await startUpstream((req, res) => {
    req.resume()
    req.on('end', () => { res.end(req.method === 'GET' ? 'second ok' : 'stored') })
  })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  const net = await import('node:net')
  const s = net.connect(proxy.port, '127.0.0.1')
  let seen = ''
  s.on('data', (d: Buffer) => { seen += d.toString('latin1'); if (seen.includes('second ok')) s.end() })
  s.write(`POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n${'a'.repeat(16)}\r\n0\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n`)
  await once(s, 'close')
  t.match(seen, /stored/)
  t.match(seen, /second ok/, 'the next request on it is answered')
  t.notMatch(seen.toLowerCase(), /connection: close/)
})
