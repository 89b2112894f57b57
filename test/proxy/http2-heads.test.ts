import t from 'tap'
import http2 from 'node:http2'
import { once } from 'node:events'
import { startUpstream } from '../helpers/upstream.ts'
import { startTestProxy, simpleDoc } from '../helpers/proxy.ts'

/**
 * An HTTP/2 client's request head is held to what an HTTP/1.1 one is:
 * limits.maxHeaderSize (431), Max-Forwards (RFC 9110 §7.6.2) and
 * `Expect: 100-continue` (RFC 9110 §10.1.1).
 */

const H2C = { host: '127.0.0.1', port: 0, h2c: true }

interface H2Response { status: number | undefined, headers: http2.IncomingHttpHeaders, body: string, rstCode: number | undefined }

/** One request on `session`; the stream's reset code when it was refused. */
async function h2request (session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: string): Promise<H2Response> {
  const stream = session.request(headers)
  stream.on('error', () => {})
  let response: http2.IncomingHttpHeaders = {}
  let text = ''
  stream.on('response', (h) => { response = h })
  stream.setEncoding('utf8')
  stream.on('data', (c: string) => { text += c })
  stream.end(body)
  await once(stream, 'close')
  return { status: response[':status'] as number | undefined, headers: response, body: text, rstCode: stream.rstCode }
}

function connect (port: number, t: { teardown (fn: () => unknown): void }): http2.ClientHttp2Session {
  const session = http2.connect(`http://127.0.0.1:${port}`)
  session.on('error', () => {})
  t.teardown(() => { session.destroy() })
  return session
}

t.test('limits.maxHeaderSize holds HTTP/2 heads too: a larger one is a 431 problem, never forwarded', async (t) => {
  // An upstream that would take any head: the refusal must be the proxy's.
  const up = await startUpstream((_req, res) => { res.end('ok') }, { maxHeaderSize: 1 << 20 })
  t.teardown(up.close)
  const proxy = await startTestProxy({ ...simpleDoc(up.url), listen: H2C }, t)
  // A fresh session each: node itself only enforces the announced size once
  // the client has acknowledged the SETTINGS, so a session's first stream is
  // the one that reached the upstream.
  for (const kib of [20, 60]) {
    const r = await h2request(connect(proxy.port, t), { ':path': '/x', 'x-big': 'a'.repeat(kib * 1024) })
    t.equal(r.status, 431, `${kib} KiB`)
    t.match(JSON.parse(r.body), { code: 'HEADERS_TOO_LARGE', status: 431 })
  }
  t.equal(up.seen.length, 0, 'the upstream saw none of them')

  const session = connect(proxy.port, t)
  t.equal((await h2request(session, { ':path': '/x', 'x-big': 'a'.repeat(8 * 1024) })).status, 200, '8 KiB is within the default 16 KiB')
  t.equal(session.remoteSettings.maxHeaderListSize, 16 * 1024, 'and the limit is announced')
})

t.test('HTTP/2: many small fields are measured by size, as on HTTP/1.1, not refused for their number', async (t) => {
  const up = await startUpstream((_req, res) => { res.end('ok') })
  t.teardown(up.close)
  const proxy = await startTestProxy({ ...simpleDoc(up.url), listen: H2C }, t)
  const many: http2.OutgoingHttpHeaders = { ':path': '/x' }
  for (let i = 0; i < 300; i++) many[`x-h${i}`] = 'v'
  const r = await h2request(connect(proxy.port, t), many)
  t.equal(r.status, 200, 'node\'s default of 128 fields would reset the stream')
  t.equal(Object.keys(up.seen[0]?.headers ?? {}).filter((k) => k.startsWith('x-h')).length, 300, 'every field reached the upstream')
})

t.test('HTTP/2: Max-Forwards on OPTIONS and TRACE is decremented; at 0 the proxy answers as the final recipient', async (t) => {
  const up = await startUpstream((_req, res) => { res.end('from upstream') })
  t.teardown(up.close)
  const proxy = await startTestProxy({ ...simpleDoc(up.url), listen: H2C }, t)
  const session = connect(proxy.port, t)
  const options = await h2request(session, { ':method': 'OPTIONS', ':path': '/x', 'max-forwards': '0' })
  t.equal(options.status, 200)
  t.match(options.headers.allow, /OPTIONS/)
  const trace = await h2request(session, { ':method': 'TRACE', ':path': '/x', 'max-forwards': '0', authorization: 'Bearer secret' })
  t.equal(trace.status, 405, 'TRACE is never reflected')
  t.notMatch(trace.body, /secret/)
  t.equal(up.seen.length, 0, 'neither was forwarded')

  t.equal((await h2request(session, { ':method': 'OPTIONS', ':path': '/x', 'max-forwards': '5' })).status, 200)
  t.equal(up.seen[0]?.headers['max-forwards'], '4', 'forwarded with one hop less')
})

t.test('HTTP/2: Expect: 100-continue gets 100 Continue once the body is wanted, and none when it is not', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  // A stream left waiting for a body is reset after this: a client that
  // never sees its 100 ends the test instead of hanging it.
  const proxy = await startTestProxy({ ...simpleDoc(up.url, { match: { pathPrefix: '/api/' } }), listen: H2C, limits: { streamIdleTimeout: '1s' } }, t)
  const session = connect(proxy.port, t)

  const stream = session.request({ ':method': 'POST', ':path': '/api/u', expect: '100-continue', 'content-length': '5' })
  stream.on('error', () => {})
  // As curl does: the body only after the 100.
  const first = await Promise.race([once(stream, 'continue').then(() => 'continue'), once(stream, 'close').then(() => 'closed')])
  if (first !== 'continue') { t.fail('no 100 Continue: the stream was reset waiting for the body'); return }
  stream.end('hello')
  const [headers] = await once(stream, 'response') as [http2.IncomingHttpHeaders]
  t.equal(headers[':status'], 200)
  stream.resume()
  await once(stream, 'close')
  t.equal(up.seen.length, 1)

  const unwanted = session.request({ ':method': 'POST', ':path': '/nowhere', expect: '100-continue', 'content-length': '5' })
  unwanted.on('error', () => {})
  let continued = false
  unwanted.on('continue', () => { continued = true })
  const [refused] = await once(unwanted, 'response') as [http2.IncomingHttpHeaders]
  t.equal(refused[':status'], 404)
  t.notOk(continued, 'no 100 for a body that is not wanted')
  unwanted.resume()
})
