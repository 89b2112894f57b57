import t from 'tap'
import type { Test } from 'tap'
import http2 from 'node:http2'
import net from 'node:net'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { freePort, runCli } from '../helpers/cli.ts'
import { waitFor } from '../helpers/resilience.ts'

// An upload to an HTTP/2 upstream cancelled before node sent its first DATA
// used to spin the proxy at 100 % CPU inside node's HTTP/2 send loop. So the
// proxy runs in a child process: a spinning one answers nothing, and the
// bounded waits below fail instead of hanging the test.

interface Silent {
  port: number
  /** Each upstream stream's path, and its RST_STREAM code once it closes. */
  streams: Array<{ path: string, rstCode: number | undefined }>
  /** Starts reading the bodies of /held requests. */
  release (): void
}

/**
 * An HTTP/2 upstream that never answers. It reads request bodies, those of
 * /held requests only once released: until then flow control stops them.
 */
async function silentUpstream (t: Test): Promise<Silent> {
  const streams: Silent['streams'] = []
  const held: http2.ServerHttp2Stream[] = []
  const server = http2.createServer()
  server.on('stream', (stream, headers) => {
    const s = { path: String(headers[':path']), rstCode: undefined as number | undefined }
    streams.push(s)
    stream.on('error', () => {})
    if (s.path.startsWith('/held')) held.push(stream)
    else stream.resume()
    stream.on('close', () => { s.rstCode = stream.rstCode })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  return { port: (server.address() as net.AddressInfo).port, streams, release: () => { for (const s of held) s.resume() } }
}

async function startProxy (t: Test, upstreamPort: number): Promise<string> {
  const [port, admin] = [await freePort(), await freePort()]
  const dir = await mkdtemp(path.join(tmpdir(), 'outrider-h2-cancel-'))
  const file = path.join(dir, 'outrider.yaml')
  await writeFile(file, `listen: { host: 127.0.0.1, port: ${port}, h2c: true }
admin: { host: 127.0.0.1, port: ${admin} }
clusters:
  - name: silent
    protocol: http2
    endpoints: [{ url: http://127.0.0.1:${upstreamPort} }]
routes:
  - name: slow
    match: { pathPrefix: /slow }
    cluster: silent
    timeouts: { overall: 200ms }
  - name: held
    match: { pathPrefix: /held }
    cluster: silent
    timeouts: { overall: 200ms }
    retry: { maxReplayBodySize: 1048576 }
  - name: small
    match: { pathPrefix: / }
    cluster: silent
    maxBodySize: 1024
`)
  const proc = runCli(['--config', file])
  t.teardown(() => { proc.child.kill('SIGKILL') })
  await proc.waitForLog('proxy listening')
  return `http://127.0.0.1:${port}`
}

function connect (t: Test, url: string): http2.ClientHttp2Session {
  const session = http2.connect(url)
  session.on('error', () => {})
  t.teardown(() => { session.destroy() })
  return session
}

/** The status of a request, or 0 if there is none within 5 s. */
function status (session: http2.ClientHttp2Session, path: string): Promise<number> {
  return new Promise((resolve) => {
    const stream = session.request({ ':path': path })
    const timer = setTimeout(() => { stream.destroy(); resolve(0) }, 5000)
    stream.on('error', () => {})
    stream.on('response', (h) => { clearTimeout(timer); resolve(Number(h[':status'])); stream.destroy() })
  })
}

/** Opens the proxy's session to the upstream: a call the route deadline ends. */
async function warmUp (t: Test, session: http2.ClientHttp2Session): Promise<void> {
  t.equal(await status(session, '/slow/warm-up'), 504, 'the route deadline answers 504')
}

t.test('a streamed upload over the body limit is a 413, the upstream stream is reset, and the proxy keeps serving', async (t) => {
  const up = await silentUpstream(t)
  const session = connect(t, await startProxy(t, up.port))
  await warmUp(t, session)
  const upload = session.request({ ':method': 'POST', ':path': '/up' }, { endStream: false })
  upload.on('error', () => {})
  upload.write(Buffer.alloc(4096))
  const got = await new Promise<number>((resolve) => {
    const timer = setTimeout(() => { resolve(0) }, 5000)
    upload.on('response', (h) => { clearTimeout(timer); resolve(Number(h[':status'])) })
  })
  t.equal(got, 413, 'the upload is answered 413')
  t.equal(await status(session, '/slow/after'), 504, 'and the proxy still answers the next request')
  const s = await waitFor(() => up.streams.find((x) => x.path === '/up' && x.rstCode !== undefined), 'the upload stream to close upstream')
  t.equal(s.rstCode, http2.constants.NGHTTP2_CANCEL, 'the upstream got RST_STREAM(CANCEL)')
})

t.test('a client that ends and resets its upload in one packet does not stall the proxy', async (t) => {
  const up = await silentUpstream(t)
  const url = await startProxy(t, up.port)
  await warmUp(t, connect(t, url))
  // HEADERS, DATA, END_STREAM and RST_STREAM in one write, so that the proxy
  // opens the upstream stream and cancels it in the same turn.
  const socket = net.connect(Number(new URL(url).port), '127.0.0.1')
  socket.on('error', () => {})
  t.teardown(() => { socket.destroy() })
  socket.write(Buffer.concat([
    Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
    frame(0x4, 0, 0, Buffer.alloc(0)), // SETTINGS
    frame(0x1, 0x4, 1, Buffer.concat([Buffer.from([0x83, 0x86]), literal(0x44, '/slow/up'), literal(0x41, 'x.test')])), // HEADERS: POST http /slow/up x.test
    frame(0x0, 0, 1, Buffer.alloc(100)), // DATA
    frame(0x0, 0x1, 1, Buffer.alloc(0)), // DATA, END_STREAM
    frame(0x3, 0, 1, Buffer.from([0, 0, 0, http2.constants.NGHTTP2_CANCEL])), // RST_STREAM
  ]))
  t.equal(await status(connect(t, url), '/slow/after'), 504, 'the proxy still answers the next request')
  const s = await waitFor(() => up.streams.find((x) => x.path === '/slow/up' && x.rstCode !== undefined), 'the upload stream to close upstream')
  t.equal(s.rstCode, http2.constants.NGHTTP2_CANCEL, 'the upstream got RST_STREAM(CANCEL)')
})

/** An HTTP/2 frame (RFC 9113 §4.1). */
function frame (type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(stream, 5)
  return Buffer.concat([head, payload])
}

/** An HPACK literal field with an indexed name, not Huffman-coded (RFC 7541 §6.2.1). */
function literal (name: number, value: string): Buffer {
  return Buffer.concat([Buffer.from([name, value.length]), Buffer.from(value)])
}

t.test('a route deadline during an upload resets the upstream stream', async (t) => {
  const up = await silentUpstream(t)
  const session = connect(t, await startProxy(t, up.port))
  await warmUp(t, session)
  const upload = session.request({ ':method': 'POST', ':path': '/slow/up' }, { endStream: false })
  upload.on('error', () => {})
  upload.write(Buffer.alloc(100))
  const got = await new Promise<number>((resolve) => { upload.on('response', (h) => { resolve(Number(h[':status'])) }) })
  t.equal(got, 504)
  // Without the reset the upstream's stream stayed open: the call went on there.
  const s = await waitFor(() => up.streams.find((x) => x.path === '/slow/up' && x.rstCode !== undefined), 'the upload stream to close upstream')
  t.equal(s.rstCode, http2.constants.NGHTTP2_CANCEL, 'the upstream got RST_STREAM(CANCEL)')
})

t.test('a route deadline during a buffered upload held up by flow control resets the upstream stream', async (t) => {
  const up = await silentUpstream(t)
  const session = connect(t, await startProxy(t, up.port))
  await warmUp(t, session)
  // Kept for replay, so undici gets it as a buffer; more than the upstream's window.
  const body = Buffer.alloc(200_000)
  const upload = session.request({ ':method': 'PUT', ':path': '/held/up', 'content-length': String(body.length) })
  upload.on('error', () => {})
  upload.end(body)
  const got = await new Promise<number>((resolve) => { upload.on('response', (h) => { resolve(Number(h[':status'])) }) })
  t.equal(got, 504)
  // Its WINDOW_UPDATEs used to set node sending the stream it had forgotten: the spin.
  up.release()
  const s = await waitFor(() => up.streams.find((x) => x.path === '/held/up' && x.rstCode !== undefined), 'the upload stream to close upstream')
  t.equal(s.rstCode, http2.constants.NGHTTP2_CANCEL, 'the upstream got RST_STREAM(CANCEL)')
  t.equal(await status(session, '/slow/after'), 504, 'and the proxy still answers the next request')
})
