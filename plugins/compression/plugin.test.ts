import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import zlib from 'node:zlib'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { pipeline } from 'node:stream/promises'
import { Transform, Writable, type Readable } from 'node:stream'
import { request } from 'undici'
import { startUpstream, type Upstream } from '../../test/helpers/upstream.ts'
import { startTestProxy, simpleDoc, type TestProxy } from '../../test/helpers/proxy.ts'

type Headers = Record<string, string | string[] | undefined>
type UpstreamHeaders = Record<string, string | number | string[]>
type Tap = { teardown (fn: () => unknown): void }

/** About 3 KiB of JSON: compressible, over the default minSize. */
const JSON_BODY = Buffer.from(JSON.stringify(Array.from({ length: 60 }, (_, i) => ({ id: i, name: `user-${i}`, email: `user-${i}@example.com` }))))

/** An upstream answering `body` with `headers` (Content-Length added unless `chunked`). */
function fixed (headers: UpstreamHeaders, body: Buffer = JSON_BODY, chunked = false): http.RequestListener {
  return (req, res) => {
    req.resume()
    const h: UpstreamHeaders = { 'content-type': 'application/json', ...headers }
    if (!chunked) h['content-length'] = body.length
    res.writeHead(200, h as http.OutgoingHttpHeaders)
    res.end(req.method === 'HEAD' ? undefined : body)
  }
}

async function setup (t: Tap, config: Record<string, unknown>, handler: http.RequestListener): Promise<{ up: Upstream, proxy: TestProxy }> {
  const up = await startUpstream(handler)
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url, { plugins: [{ name: 'compression', config }] }), t)
  return { up, proxy }
}

async function fetchRaw (proxy: TestProxy, headers: Record<string, string> = {}, method = 'GET', path = '/data'): Promise<{ status: number, headers: Headers, body: Buffer }> {
  const res = await request(`${proxy.url}${path}`, { method: method as 'GET', headers })
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) }
}

function decode (coding: string | string[] | undefined, body: Buffer): Buffer {
  switch (coding) {
    case 'br': return zlib.brotliDecompressSync(body)
    case 'zstd': return zlib.zstdDecompressSync(body)
    case 'gzip': return zlib.gunzipSync(body)
    case undefined: return body
    default: throw new Error(`unexpected coding ${String(coding)}`)
  }
}

function decompressor (coding: string): Transform {
  switch (coding) {
    case 'br': return zlib.createBrotliDecompress()
    case 'zstd': return zlib.createZstdDecompress()
    case 'gzip': return zlib.createGunzip()
    default: throw new Error(`unexpected coding ${coding}`)
  }
}

t.test('negotiates the coding from Accept-Encoding', async (t) => {
  const { proxy } = await setup(t, {}, fixed({}))
  const table: Array<[accept: string | undefined, coding: string | undefined]> = [
    ['gzip, deflate, br, zstd', 'br'],
    ['gzip, deflate, br', 'br'],
    ['gzip, zstd', 'zstd'],
    ['gzip', 'gzip'],
    ['x-gzip', 'gzip'],
    ['GZIP', 'gzip'],
    ['br;q=0.5, gzip;q=0.9', 'gzip'],
    ['br;q=0, zstd;q=0, gzip', 'gzip'],
    ['gzip;q=0', undefined],
    ['identity', undefined],
    ['identity;q=0, gzip;q=0.1', 'gzip'],
    ['*', 'br'],
    ['*;q=0, zstd', 'zstd'],
    ['*;q=0', undefined],
    ['br;q=0, *', 'zstd'],
    ['deflate, compress', undefined],
    ['gzip;q=2', undefined],
    ['', undefined],
    [undefined, undefined],
  ]
  for (const [accept, coding] of table) {
    const res = await fetchRaw(proxy, accept === undefined ? {} : { 'accept-encoding': accept })
    const label = JSON.stringify(accept)
    t.equal(res.status, 200, label)
    t.equal(res.headers['content-encoding'], coding, label)
    t.same(decode(res.headers['content-encoding'], res.body), JSON_BODY, `${label}: the body survives`)
    t.equal(res.headers['content-length'], coding === undefined ? String(JSON_BODY.length) : undefined, `${label}: Content-Length only when not coded`)
    t.equal(res.headers.vary, 'Accept-Encoding', `${label}: Vary either way, so caches key on it`)
  }
})

t.test('the configured order breaks ties', async (t) => {
  const { proxy } = await setup(t, { algorithms: ['gzip', 'br'] }, fixed({}))
  t.equal((await fetchRaw(proxy, { 'accept-encoding': 'br, gzip, zstd' })).headers['content-encoding'], 'gzip')
  t.equal((await fetchRaw(proxy, { 'accept-encoding': 'zstd' })).headers['content-encoding'], undefined, 'zstd is not offered')
  t.equal((await fetchRaw(proxy, { 'accept-encoding': 'br;q=1, gzip;q=0.5' })).headers['content-encoding'], 'br', 'the client\'s weights come first')
})

t.test('merges Vary and weakens strong ETags', async (t) => {
  const cases: Array<[upstream: UpstreamHeaders, vary: string, etag: string | undefined]> = [
    [{ vary: 'Origin', etag: '"v1"' }, 'Origin, Accept-Encoding', 'W/"v1"'],
    [{ vary: 'accept-encoding', etag: 'W/"v1"' }, 'accept-encoding', 'W/"v1"'],
    [{ vary: 'Origin, Accept-Encoding' }, 'Origin, Accept-Encoding', undefined],
    [{ vary: '*' }, '*', undefined],
    [{ vary: ['Origin', 'Accept-Language'] }, 'Origin, Accept-Language, Accept-Encoding', undefined],
    [{ etag: 'not-quoted' }, 'Accept-Encoding', undefined],
  ]
  for (const [upstream, vary, etag] of cases) {
    const { proxy } = await setup(t, {}, fixed(upstream))
    const res = await fetchRaw(proxy, { 'accept-encoding': 'gzip' })
    t.equal(res.headers['content-encoding'], 'gzip')
    t.equal(res.headers.vary, vary, JSON.stringify(upstream))
    t.equal(res.headers.etag, etag, JSON.stringify(upstream))
  }
  const { proxy } = await setup(t, {}, fixed({ etag: '"v1"', vary: 'Origin' }))
  const plain = await fetchRaw(proxy, { 'accept-encoding': 'identity' })
  t.equal(plain.headers.etag, '"v1"', 'not coded: the strong ETag stays')
  t.equal(plain.headers.vary, 'Origin, Accept-Encoding')
})

t.test('a coded body drops what described the uncoded bytes', async (t) => {
  const { proxy } = await setup(t, {}, fixed({ 'accept-ranges': 'bytes', 'content-digest': 'sha-256=:abc=:', 'cache-control': 'public, max-age=60' }))
  const coded = await fetchRaw(proxy, { 'accept-encoding': 'br' })
  t.equal(coded.headers['accept-ranges'], undefined)
  t.equal(coded.headers['content-digest'], undefined)
  t.equal(coded.headers['cache-control'], 'public, max-age=60')
  const plain = await fetchRaw(proxy)
  t.equal(plain.headers['accept-ranges'], 'bytes', 'left alone when not coded')
  t.equal(plain.headers['content-digest'], 'sha-256=:abc=:')
})

t.test('never codes a body twice', async (t) => {
  const gz = zlib.gzipSync(JSON_BODY)
  const { proxy } = await setup(t, {}, fixed({ 'content-encoding': 'gzip', etag: '"g1"' }, gz))
  const res = await fetchRaw(proxy, { 'accept-encoding': 'br, gzip' })
  t.equal(res.headers['content-encoding'], 'gzip')
  t.same(res.body, gz, 'the upstream\'s bytes, untouched')
  t.equal(res.headers['content-length'], String(gz.length))
  t.equal(res.headers.etag, '"g1"')
  t.equal(res.headers.vary, undefined, 'nothing of ours to vary on')

  const { proxy: p2 } = await setup(t, {}, fixed({ 'content-encoding': 'identity' }))
  const id = await fetchRaw(p2, { 'accept-encoding': 'gzip' })
  t.equal(id.headers['content-encoding'], 'gzip', '"identity" is no coding: compressed, and the bogus value replaced')
  t.same(decode('gzip', id.body), JSON_BODY)
})

t.test('HEAD gets the headers GET gets, and no body', async (t) => {
  const { proxy } = await setup(t, {}, fixed({ etag: '"h1"', vary: 'Origin' }))
  const ae = { 'accept-encoding': 'gzip, br' }
  const get = await fetchRaw(proxy, ae)
  const head = await fetchRaw(proxy, ae, 'HEAD')
  t.equal(head.status, 200)
  t.equal(head.body.length, 0)
  for (const name of ['content-encoding', 'vary', 'etag', 'content-length', 'content-type']) t.equal(head.headers[name], get.headers[name], name)
  t.equal(head.headers['content-encoding'], 'br')
  t.equal(head.headers['content-length'], undefined, 'the coded length is unknown without coding (RFC 9110 §9.3.2 allows omitting it)')
  const plainHead = await fetchRaw(proxy, {}, 'HEAD')
  t.equal(plainHead.headers['content-length'], String(JSON_BODY.length))
  t.equal(plainHead.headers.vary, 'Origin, Accept-Encoding')
})

t.test('204, 304, 206 and no-transform are left alone', async (t) => {
  const { proxy } = await setup(t, {}, (req, res) => {
    const inm = req.headers['if-none-match']
    switch (req.url) {
      case '/204': res.writeHead(204, { 'content-type': 'application/json', etag: '"a"' }); res.end(); return
      case '/304': res.writeHead(304, inm === undefined ? { etag: '"a"' } : { etag: '"a"', 'x-inm': inm }); res.end(); return
      case '/304-typed': res.writeHead(304, { etag: '"a"', 'content-type': 'image/png' }); res.end(); return
      case '/304-json': res.writeHead(304, { etag: '"a"', 'content-type': 'application/json' }); res.end(); return
      case '/206':
        res.writeHead(206, { 'content-type': 'application/json', 'content-range': `bytes 0-1999/${JSON_BODY.length}`, 'content-length': 2000, etag: '"a"' })
        res.end(JSON_BODY.subarray(0, 2000)); return
      case '/range-200':
        res.writeHead(200, { 'content-type': 'application/json', 'content-range': 'bytes */4000', 'content-length': JSON_BODY.length }); res.end(JSON_BODY); return
      case '/no-transform':
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'public, No-Transform', 'content-length': JSON_BODY.length, etag: '"a"' })
        res.end(JSON_BODY); return
    }
  })
  const ae = { 'accept-encoding': 'gzip' }
  const r204 = await fetchRaw(proxy, ae, 'GET', '/204')
  t.equal(r204.status, 204)
  t.same([r204.headers['content-encoding'], r204.headers.vary, r204.headers.etag], [undefined, undefined, '"a"'])

  const r304 = await fetchRaw(proxy, { ...ae, 'if-none-match': '"a"' }, 'GET', '/304')
  t.equal(r304.status, 304)
  t.same([r304.headers['content-encoding'], r304.headers.vary, r304.headers.etag], [undefined, undefined, '"a"'], 'revalidating the uncoded variant: untouched')
  const coded304 = await fetchRaw(proxy, { ...ae, 'if-none-match': 'W/"a"' }, 'GET', '/304')
  t.equal(coded304.status, 304)
  t.equal(coded304.headers.etag, 'W/"a"', 'revalidating the coded variant: the ETag it was stored under')
  t.equal(coded304.headers.vary, 'Accept-Encoding')
  t.equal(coded304.headers['content-encoding'], undefined, 'a 304 has no content to code')
  const id304 = await fetchRaw(proxy, { 'accept-encoding': 'identity', 'if-none-match': 'W/"a"' }, 'GET', '/304')
  t.equal(id304.headers.etag, '"a"', 'a client that accepts no coding cannot hold our coded variant')
  const png304 = await fetchRaw(proxy, { ...ae, 'if-none-match': 'W/"a"' }, 'GET', '/304-typed')
  t.same([png304.headers.etag, png304.headers.vary], ['"a"', undefined], 'a type we never compress')
  const json304 = await fetchRaw(proxy, { ...ae, 'if-none-match': '"a"' }, 'GET', '/304-json')
  t.same([json304.headers.etag, json304.headers.vary], ['"a"', 'Accept-Encoding'], 'a compressible type: the Vary its 200 would carry')

  const r206 = await fetchRaw(proxy, { ...ae, range: 'bytes=0-1999' }, 'GET', '/206')
  t.equal(r206.status, 206)
  t.same([r206.headers['content-encoding'], r206.headers.vary, r206.headers.etag, r206.headers['content-length']], [undefined, undefined, '"a"', '2000'])
  t.same(r206.body, JSON_BODY.subarray(0, 2000))
  const ranged = await fetchRaw(proxy, ae, 'GET', '/range-200')
  t.equal(ranged.headers['content-encoding'], undefined, 'anything with Content-Range')

  const nt = await fetchRaw(proxy, ae, 'GET', '/no-transform')
  t.same([nt.headers['content-encoding'], nt.headers.vary, nt.headers.etag], [undefined, undefined, '"a"'], 'no-transform (case-insensitive): RFC 9110 §7.7')
  t.same(nt.body, JSON_BODY)
})

t.test('minSize reads Content-Length; a streamed body is compressed regardless', async (t) => {
  const body = (n: number): Buffer => Buffer.alloc(n, 'a')
  const { proxy } = await setup(t, {}, (req, res) => {
    const n = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('n'))
    const chunked = req.url?.startsWith('/chunked') === true
    fixed({ 'content-type': 'text/plain' }, body(n), chunked)(req, res)
  })
  const ae = { 'accept-encoding': 'gzip' }
  const small = await fetchRaw(proxy, ae, 'GET', '/len?n=1023')
  t.same([small.headers['content-encoding'], small.headers.vary, small.headers['content-length']], [undefined, undefined, '1023'], 'below minSize: as is, and no Vary (no coding would apply)')
  const exact = await fetchRaw(proxy, ae, 'GET', '/len?n=1024')
  t.equal(exact.headers['content-encoding'], 'gzip', 'at minSize')
  t.same(decode('gzip', exact.body), body(1024))
  const empty = await fetchRaw(proxy, ae, 'GET', '/len?n=0')
  t.same([empty.headers['content-encoding'], empty.headers['content-length']], [undefined, '0'])
  const streamed = await fetchRaw(proxy, ae, 'GET', '/chunked?n=10')
  t.equal(streamed.headers['content-encoding'], 'gzip', 'length unknown when the head goes out: compressed')
  t.same(decode('gzip', streamed.body), body(10))

  const { proxy: p0 } = await setup(t, { minSize: '4kib' }, fixed({ 'content-type': 'text/plain' }, body(4095)))
  t.equal((await fetchRaw(p0, ae)).headers['content-encoding'], undefined, 'minSize as a size string')
})

t.test('the content-type allow-list', async (t) => {
  const { proxy } = await setup(t, {}, (req, res) => {
    const type = new URL(req.url ?? '/', 'http://x').searchParams.get('type')
    fixed(type === null ? {} : { 'content-type': type })(req, res)
  })
  const cases: Array<[type: string | null, compressed: boolean]> = [
    ['text/html; charset=utf-8', true],
    ['TEXT/CSS', true],
    ['application/json;charset=UTF-8', true],
    ['application/problem+json', true],
    ['application/atom+xml', true],
    ['image/svg+xml', true],
    ['application/javascript', true],
    ['application/wasm', true],
    ['image/png', false],
    ['application/octet-stream', false],
    ['video/mp4', false],
    ['application/zip', false],
    ['font/woff2', false],
    ['text', false],
    ['text/event-stream', false],
  ]
  for (const [type, compressed] of cases) {
    const res = await fetchRaw(proxy, { 'accept-encoding': 'gzip' }, 'GET', `/x?type=${encodeURIComponent(type ?? '')}`)
    t.equal(res.headers['content-encoding'], compressed ? 'gzip' : undefined, String(type))
    t.equal(res.headers.vary, compressed ? 'Accept-Encoding' : undefined, String(type))
  }

  const up = await startUpstream(fixed({ 'content-type': 'application/octet-stream' }))
  t.teardown(up.close)
  const untyped = await startUpstream((req, res) => { req.resume(); res.writeHead(200, { 'content-length': JSON_BODY.length }); res.end(JSON_BODY) })
  t.teardown(untyped.close)
  const custom = await startTestProxy({
    clusters: [{ name: 'a', endpoints: [{ url: up.url }] }, { name: 'b', endpoints: [{ url: untyped.url }] }],
    routes: [
      { name: 'octets', match: { pathPrefix: '/octets' }, cluster: 'a', plugins: [{ name: 'compression', config: { contentTypes: ['Application/Octet-Stream'] } }] },
      { name: 'untyped', match: { pathPrefix: '/untyped' }, cluster: 'b', plugins: [{ name: 'compression', config: { contentTypes: ['*/*'] } }] },
    ],
  }, t)
  t.equal((await fetchRaw(custom, { 'accept-encoding': 'gzip' }, 'GET', '/octets')).headers['content-encoding'], 'gzip', 'a configured type, case-insensitive')
  t.equal((await fetchRaw(custom, { 'accept-encoding': 'gzip' }, 'GET', '/untyped')).headers['content-encoding'], undefined, 'no Content-Type: never, not even for */*')
})

t.test('event streams: skipped by default, or flushed per chunk', async (t) => {
  // The upstream sends one event and holds the stream open until released.
  const held = { open: false, release: (): void => {} }
  const sse: http.RequestListener = (req, res) => {
    req.resume()
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    res.write('data: first\n\n')
    held.open = true
    held.release = () => { held.open = false; res.end('data: last\n\n') }
  }
  const { proxy: skip } = await setup(t, {}, sse)
  const plain = await request(`${skip.url}/events`, { headers: { 'accept-encoding': 'gzip' } })
  t.equal(plain.headers['content-encoding'], undefined)
  t.equal(plain.headers.vary, undefined)
  held.release()
  t.equal(await plain.body.text(), 'data: first\n\ndata: last\n\n')

  const { proxy: flush } = await setup(t, { eventStreams: 'flush' }, sse)
  for (const coding of ['gzip', 'br', 'zstd']) {
    const res = await request(`${flush.url}/events`, { headers: { 'accept-encoding': coding } })
    t.equal(res.headers['content-encoding'], coding)
    const text = (res.body as Readable).pipe(decompressor(coding))
    text.setEncoding('utf8')
    const events = text[Symbol.asyncIterator]() as AsyncIterator<string>
    const first = await events.next()
    t.equal(first.value, 'data: first\n\n', `${coding}: the first event arrives while the upstream holds the stream open`)
    t.ok(held.open, 'and it has not ended')
    held.release()
    let rest = ''
    for (let r = await events.next(); r.done !== true; r = await events.next()) rest += r.value
    t.equal(rest, 'data: last\n\n')
  }
})

t.test('a streamed body (no Content-Length) is flushed per upstream chunk, not held until it ends', async (t) => {
  const held = { open: false, release: (): void => {} }
  const { proxy } = await setup(t, {}, (req, res) => {
    req.resume()
    res.writeHead(200, { 'content-type': 'application/json' })
    res.write('[{"row":1},')
    held.open = true
    held.release = () => { held.open = false; res.end('{"row":2}]') }
  })
  for (const coding of ['gzip', 'br', 'zstd']) {
    const res = await request(`${proxy.url}/rows`, { headers: { 'accept-encoding': coding } })
    t.equal(res.headers['content-encoding'], coding)
    const text = (res.body as Readable).pipe(decompressor(coding))
    text.setEncoding('utf8')
    const rows = text[Symbol.asyncIterator]() as AsyncIterator<string>
    t.equal((await rows.next()).value, '[{"row":1},', `${coding}: the first chunk arrives while the upstream holds the stream open`)
    t.ok(held.open)
    held.release()
    let rest = ''
    for (let r = await rows.next(); r.done !== true; r = await rows.next()) rest += r.value
    t.equal(rest, '{"row":2}]')
  }
})

t.test('local responses are compressed too', async (t) => {
  // A closed port: the proxy answers 502 problem+json itself.
  const dead = await startUpstream()
  const url = dead.url
  await dead.close()
  const proxy = await startTestProxy(simpleDoc(url, { plugins: [{ name: 'compression', config: { minSize: 0 } }] }), t)
  const res = await fetchRaw(proxy, { 'accept-encoding': 'zstd' })
  t.equal(res.status, 502)
  t.equal(res.headers['content-type'], 'application/problem+json')
  t.equal(res.headers['content-encoding'], 'zstd')
  t.equal(res.headers['content-length'], undefined)
  t.equal((JSON.parse(decode('zstd', res.body).toString()) as { status: number }).status, 502)
  const head = await fetchRaw(proxy, { 'accept-encoding': 'zstd' }, 'HEAD')
  t.same([head.status, head.headers['content-encoding'], head.body.length], [502, 'zstd', 0], 'HEAD: the same headers, no body')
})

/** 20 MiB of log-like JSON lines: compressible, but not trivially. */
function bigBody (): Buffer {
  const lines: string[] = []
  let size = 0
  for (let i = 0; size < 20 * 1024 * 1024; i++) {
    const line = `{"seq":${i},"level":"${['info', 'warn', 'debug'][i % 3] as string}","msg":"request ${(i * 2654435761) % 1000003} served","ms":${(i * 7919) % 997}}\n`
    lines.push(line)
    size += line.length
  }
  return Buffer.from(lines.join(''))
}

/** Writes `body` in 64 KiB slices, honouring backpressure. */
async function writeSlices (res: http.ServerResponse, body: Buffer): Promise<void> {
  for (let i = 0; i < body.length; i += 65536) {
    if (!res.write(body.subarray(i, i + 65536))) await once(res, 'drain')
  }
  res.end()
}

function sha256 (): { sink: Writable, digest: () => string, bytes: () => number } {
  const h = createHash('sha256')
  let n = 0
  const sink = new Writable({ write (chunk: Buffer, _enc, cb) { n += chunk.length; h.update(chunk); cb() } })
  return { sink, digest: () => h.digest('hex'), bytes: () => n }
}

t.test('a 20 MiB streamed body decompresses to the same bytes, per coding', async (t) => {
  const body = bigBody()
  const expected = createHash('sha256').update(body).digest('hex')
  const { proxy } = await setup(t, {}, (req, res) => {
    req.resume()
    // Chunked by default; /sized declares the length (Brotli's size hint, zstd's pledged size).
    res.writeHead(200, req.url === '/sized' ? { 'content-type': 'text/plain', 'content-length': body.length } : { 'content-type': 'text/plain' })
    void writeSlices(res, body)
  })
  for (const coding of ['br', 'zstd', 'gzip']) {
    for (const path of ['/streamed', '/sized']) {
      const res = await request(`${proxy.url}${path}`, { headers: { 'accept-encoding': coding } })
      t.equal(res.headers['content-encoding'], coding, `${coding} ${path}`)
      t.equal(res.headers['content-length'], undefined)
      let wire = 0
      const hash = sha256()
      await pipeline(res.body, new Transform({ transform (c: Buffer, _e, cb) { wire += c.length; cb(null, c) } }), decompressor(coding), hash.sink)
      t.equal(hash.bytes(), body.length, `${coding} ${path}: every byte`)
      t.equal(hash.digest(), expected, `${coding} ${path}: the same bytes`)
      t.ok(wire < body.length / 4, `${coding} ${path}: compressed ${body.length} → ${wire}`)
    }
  }
})

t.test('backpressure: a client that stops reading pauses the upstream', async (t) => {
  const total = 1024 * 1024 * 1024
  const state = { written: 0, waiting: false, drains: 0, ended: false }
  const { proxy } = await setup(t, {}, (req, res) => {
    req.resume()
    res.writeHead(200, { 'content-type': 'text/plain' })
    // Random bytes do not compress: what goes in comes out, so buffers fill as fast as they can.
    const pump = (): void => {
      while (state.written < total) {
        const chunk = randomBytes(65536)
        state.written += chunk.length
        if (!res.write(chunk)) { state.waiting = true; return }
      }
      state.ended = true
      res.end()
    }
    res.on('drain', () => { state.waiting = false; state.drains++; pump() })
    res.on('close', () => { state.waiting = false })
    pump()
  })
  const socket = net.connect(proxy.port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  socket.pause()
  socket.write('GET /big HTTP/1.1\r\nhost: test\r\naccept-encoding: gzip\r\n\r\n')

  // Paused = waiting for 'drain' with no byte written across five looks at it.
  let still = 0
  let last = -1
  while (still < 5 && !state.ended) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    if (state.waiting && state.written === last) still++
    else still = 0
    last = state.written
  }
  t.notOk(state.ended, 'the upstream did not get to the end')
  t.ok(state.written < 64 * 1024 * 1024, `paused after ${(state.written / 1048576).toFixed(1)} MiB of 1024: bounded by socket and stream buffers`)

  if (state.ended) return
  // Reading again lets it go on: the pause was backpressure.
  const drains = state.drains
  socket.on('data', () => {})
  socket.resume()
  while (state.drains === drains) await new Promise((resolve) => setTimeout(resolve, 20))
  t.ok(state.drains > drains, 'the upstream resumed once the client read')
  socket.destroy()
})

t.test('metrics by route and coding', async (t) => {
  const { proxy } = await setup(t, {}, fixed({}))
  await fetchRaw(proxy, { 'accept-encoding': 'gzip' })
  await fetchRaw(proxy, { 'accept-encoding': 'gzip' })
  await fetchRaw(proxy, { 'accept-encoding': 'br' })
  await fetchRaw(proxy, { 'accept-encoding': 'identity' })
  const text = await proxy.metrics.registry.metrics()
  t.match(text, /outrider_compression_responses_total\{route="all",coding="gzip"\} 2\n/)
  t.match(text, /outrider_compression_responses_total\{route="all",coding="br"\} 1\n/)
  t.match(text, /outrider_compression_responses_total\{route="all",coding="identity"\} 1\n/)
  t.match(text, new RegExp(`outrider_compression_bytes_in_total\\{route="all",coding="gzip"\\} ${JSON_BODY.length * 2}\\n`))
  const out = /outrider_compression_bytes_out_total\{route="all",coding="gzip"\} (\d+)\n/.exec(text)
  t.ok(out !== null && Number(out[1]) > 0 && Number(out[1]) < JSON_BODY.length * 2, 'bytes out: fewer than in')
})
