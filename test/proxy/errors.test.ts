import t from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.ts'
import { startTestProxy, simpleDoc } from '../helpers/proxy.ts'
import { rawRequest, startScriptedUpstream } from '../helpers/raw-http.ts'
import { closedPort } from '../helpers/ports.ts'

/**
 * Failures become RFC 9457 problems with a stable `code` (src/errors.ts), and
 * a response that already started is cut, never completed with a lie.
 */

const H = 'Host: x.test\r\n'

interface Problem { type: string, title: string, status: number, code: string, requestId?: string }

async function problem (res: Awaited<ReturnType<typeof request>>): Promise<Problem> {
  return await res.body.json() as Problem
}

t.test('upstream refuses the connection → 502 UPSTREAM_CONNECT_FAILED', async (t) => {
  const port = await closedPort()
  const proxy = await startTestProxy(simpleDoc(`http://127.0.0.1:${port}`), t)
  const res = await request(`${proxy.url}/x`, { headers: { 'x-request-id': 'refused-1' } })
  t.equal(res.statusCode, 502)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  const p = await problem(res)
  t.equal(p.code, 'UPSTREAM_CONNECT_FAILED')
  t.equal(p.status, 502)
  t.equal(p.requestId, 'refused-1', 'the problem names the request')
  t.equal(res.headers['x-request-id'], 'refused-1')
})

t.test('upstream never answers → 504 UPSTREAM_TIMEOUT', async (t) => {
  const up = await startScriptedUpstream(() => undefined)
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url, {}, { timeouts: { request: 200 } }), t)
  const res = await request(`${proxy.url}/x`)
  t.equal(res.statusCode, 504)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  t.equal((await problem(res)).code, 'UPSTREAM_TIMEOUT')
})

t.test('a per-route request timeout overrides the cluster\'s', async (t) => {
  const up = await startScriptedUpstream(() => undefined)
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url, { timeouts: { request: 150 } }), t)
  const res = await request(`${proxy.url}/x`)
  t.equal(res.statusCode, 504)
  t.equal((await problem(res)).code, 'UPSTREAM_TIMEOUT')
})

t.test('upstream resets mid-body → the client\'s response is cut, not ended', async (t) => {
  for (const framing of ['content-length', 'chunked'] as const) {
    const up = await startScriptedUpstream((_head, socket) => {
      socket.write(framing === 'content-length'
        ? 'HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n' + 'a'.repeat(1000)
        : 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n' + 'a'.repeat(1000) + '\r\n')
      setTimeout(() => { socket.resetAndDestroy() }, 50)
      return undefined
    })
    t.teardown(up.close)
    const proxy = await startTestProxy(simpleDoc(up.url), t)

    const res = await request(`${proxy.url}/x`)
    t.equal(res.statusCode, 200, `${framing}: the head was already relayed`)
    const err = await res.body.text().then(() => undefined, (e: unknown) => e)
    t.ok(err instanceof Error, `${framing}: reading the body fails`)

    // On the wire: the connection closes without a complete message.
    const raw = await rawRequest(proxy.port, `GET /x HTTP/1.1\r\n${H}\r\n`, { expect: 1, maxMs: 3000 })
    t.ok(raw.closed, `${framing}: connection closed`)
    t.equal(raw.responses.length, 0, `${framing}: no complete response`)
    if (framing === 'chunked') t.notMatch(raw.rest.toString('latin1'), /\r\n0\r\n\r\n$/, 'no last-chunk')
  }
})

t.test('upstream answers with garbage → 502 UPSTREAM_PROTOCOL_ERROR', async (t) => {
  const garbage: Record<string, string> = {
    'not HTTP': 'HELLO WORLD\r\n\r\n',
    'bad status line': 'HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n',
    'CL and TE together': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'conflicting Content-Length': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello',
    'NUL in a header': 'HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n',
    'bad chunk size': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n',
    'closed before the head': '',
  }
  for (const [name, bytes] of Object.entries(garbage)) {
    const up = await startScriptedUpstream((_head, socket) => {
      if (bytes === '') return null
      socket.end(Buffer.from(bytes, 'latin1'))
      return undefined
    })
    t.teardown(up.close)
    const proxy = await startTestProxy(simpleDoc(up.url), t)
    const r = await rawRequest(proxy.port, `GET /x HTTP/1.1\r\n${H}\r\n`, { maxMs: 3000 })
    const first = r.responses[0]
    if (name === 'bad chunk size') {
      // The head was fine and already relayed: the body error can only cut the connection.
      t.ok(r.closed, `${name}: connection cut`)
      t.equal(r.responses.length, 0, `${name}: no complete response`)
      continue
    }
    t.equal(first?.status, 502, `${name}: 502`)
    t.match(first?.headers['content-type'], /^application\/problem\+json/)
    t.match(JSON.parse(first?.body.toString() ?? '{}') as Problem, { code: /^UPSTREAM_(PROTOCOL_ERROR|CONNECT_FAILED)$/ }, `${name}: an upstream code`)
  }
})

t.test('bytes after an upstream response are never served as the next response', async (t) => {
  // Response queue poisoning: a broken upstream appends a whole extra response.
  // The pooled connection must be dropped, not read for the next request.
  let n = 0
  const up = await startScriptedUpstream(() => {
    n++
    return n === 1
      ? 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirstHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned'
      : `HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nclean${n}`
  })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)
  const first = await request(`${proxy.url}/1`)
  t.equal(await first.body.text(), 'first')
  for (let i = 0; i < 3; i++) {
    const res = await request(`${proxy.url}/next`)
    const text = await res.body.text()
    t.not(text, 'poisoned', 'the stray response is never delivered')
    t.match(text, /^clean\d$/)
  }
})

t.test('a Content-Length over maxBodySize → 413 and the connection closed', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy({ ...simpleDoc(up.url), limits: { maxBodySize: 1000 } }, t)
  const r = await rawRequest(proxy.port, `POST /x HTTP/1.1\r\n${H}Content-Length: 5000\r\n\r\n${'a'.repeat(5000)}GET /smuggled HTTP/1.1\r\n${H}\r\n`)
  t.equal(r.responses[0]?.status, 413)
  t.equal(r.responses[0]?.headers.connection, 'close')
  t.equal((JSON.parse(r.responses[0]?.body.toString() ?? '{}') as Problem).code, 'PAYLOAD_TOO_LARGE')
  t.ok(r.closed, 'closed')
  t.equal(r.responses.length, 1)
  t.equal(up.seen.length, 0, 'nothing reached the upstream')

  // At the limit is fine.
  const ok = await request(`${proxy.url}/x`, { method: 'POST', body: 'b'.repeat(1000) })
  t.equal(ok.statusCode, 200)
  t.equal((await ok.body.json() as { body: string }).body.length, 1000)
})

t.test('a per-route maxBodySize overrides the global one', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy({ ...simpleDoc(up.url, { maxBodySize: 10 }), limits: { maxBodySize: 1000 } }, t)
  const res = await request(`${proxy.url}/x`, { method: 'POST', body: 'c'.repeat(11) })
  t.equal(res.statusCode, 413)
  t.equal((await problem(res)).code, 'PAYLOAD_TOO_LARGE')
})

t.test('a chunked body over maxBodySize → 413', async (t) => {
  const completed: number[] = []
  const up = await startUpstream((req, res) => {
    let n = 0
    req.on('data', (c: Buffer) => { n += c.length })
    req.on('end', () => { completed.push(n); res.end(JSON.stringify({ body: 'e'.repeat(n) })) })
    req.on('error', () => {})
  })
  t.teardown(up.close)
  const proxy = await startTestProxy({ ...simpleDoc(up.url), limits: { maxBodySize: 1000 } }, t)

  // All at once, and in pieces that arrive after the request was dispatched.
  for (const gapMs of [undefined, 50]) {
    const chunk = `400\r\n${'d'.repeat(1024)}\r\n`
    const pieces = [`POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${chunk}`, chunk, chunk, '0\r\n\r\n']
    const r = await rawRequest(proxy.port, gapMs === undefined ? pieces.join('') : pieces, { gapMs, maxMs: 3000 })
    const label = gapMs === undefined ? 'one packet' : 'streamed'
    t.equal(r.responses[0]?.status, 413, `${label}: 413`)
    t.equal(r.responses[0]?.headers.connection, 'close', `${label}: Connection: close`)
    t.equal((JSON.parse(r.responses[0]?.body.toString() ?? '{}') as Problem).code, 'PAYLOAD_TOO_LARGE')
    t.ok(r.closed, `${label}: closed`)
  }
  // A streamed body may have started upstream, but it never completed.
  await sleep(50)
  t.same(completed, [], 'no oversized body completed upstream')

  const small = await request(`${proxy.url}/x`, { method: 'POST', body: Readable.from(['e'.repeat(500), 'e'.repeat(500)]) })
  t.equal(small.statusCode, 200, 'a chunked body at the limit passes')
  t.equal((await small.body.json() as { body: string }).body.length, 1000)
})

t.test('the client going away mid-response tears down the upstream request', async (t) => {
  let upstreamClosed: (v: { finished: boolean }) => void
  const closed = new Promise<{ finished: boolean }>((resolve) => { upstreamClosed = resolve })
  let sent = 0
  const up = await startUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    const chunk = Buffer.alloc(16 * 1024, 'z')
    const timer = setInterval(() => { res.write(chunk); sent += chunk.length }, 5)
    res.on('close', () => { clearInterval(timer); upstreamClosed({ finished: res.writableFinished }) })
  })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url), t)

  const req = http.get(`${proxy.url}/stream`)
  const [res] = await once(req, 'response') as [http.IncomingMessage]
  await once(res, 'data')
  req.destroy()
  const outcome = await closed
  t.notOk(outcome.finished, 'the upstream response was aborted, not finished')
  t.ok(sent > 0)
  // The pool does not keep a connection with a half-sent response.
  await sleep(50)
  const stats = proxy.snapshot.clusters.get('up')?.endpoints[0]?.pool.stats
  t.equal(stats?.running, 0, 'nothing left running upstream')
})

t.test('no route → 404 problem, counted under __unmatched__', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy({
    clusters: [{ name: 'up', endpoints: [{ url: up.url }] }],
    routes: [{ name: 'api', match: { pathPrefix: '/api' }, cluster: 'up' }],
  }, t)
  const res = await request(`${proxy.url}/nowhere`, { headers: { 'x-request-id': 'nr-1' } })
  t.equal(res.statusCode, 404)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  const p = await problem(res)
  t.match(p, { status: 404, code: 'NO_ROUTE', requestId: 'nr-1' })
  t.equal(up.seen.length, 0)

  const head = await request(`${proxy.url}/nowhere`, { method: 'HEAD' })
  t.equal(head.statusCode, 404)
  t.equal(await head.body.text(), '', 'HEAD gets no problem body')

  const metrics = await (await request(`${proxy.adminUrl}/metrics`)).body.text()
  t.match(metrics, /outrider_requests_total\{route="__unmatched__",method="GET",status_class="4xx"\} 1\n/)
  t.match(metrics, /outrider_requests_total\{route="__unmatched__",method="HEAD",status_class="4xx"\} 1\n/)
  t.match(metrics, /outrider_local_replies_total\{route="__unmatched__",code="NO_ROUTE"\} 2\n/)
  t.notMatch(metrics, /nowhere/, 'no raw path in any label')
})

t.test('paths are normalised before routing', async (t) => {
  const pub = await startUpstream()
  const admin = await startUpstream()
  t.teardown(pub.close)
  t.teardown(admin.close)
  const proxy = await startTestProxy({
    clusters: [{ name: 'pub', endpoints: [{ url: pub.url }] }, { name: 'admin', endpoints: [{ url: admin.url }] }],
    routes: [
      { name: 'public', match: { pathPrefix: '/public/' }, cluster: 'pub' },
      { name: 'admin', match: { pathPrefix: '/admin' }, cluster: 'admin' },
    ],
  }, t)
  const cases: Array<[string, 'pub' | 'admin' | 404 | 400, string?]> = [
    ['/public/../admin', 'admin', '/admin'],
    ['/public/%2e%2e/admin', 'admin', '/admin'],
    ['/public/%2E%2E/admin/users?x=1', 'admin', '/admin/users?x=1'],
    ['/public/./a/../b', 'pub', '/public/b'],
    ['//admin', 'admin', '/admin'],
    ['/public//x', 'pub', '/public/x'],
    ['/public/../../../../admin', 'admin', '/admin'],
    ['/public/a/..', 'pub', '/public/'],
    ['/public/..', 404],
    ['/%61dmin/users', 'admin', '/admin/users'],
    ['/adm%69n', 'admin', '/admin'],
    ['/public/%7Euser/%2D%5F', 'pub', '/public/~user/-_'],
    ['/public/a%2Fb%3F', 'pub', '/public/a%2Fb%3F'],
    ['/public/%252e%252e/admin', 'pub', '/public/%252e%252e/admin'],
    ['/public/..%2fadmin', 400],
    ['/public/..%5Cadmin', 400],
    ['/public/..\\admin', 400],
    ['/public/%2e%2e%2Fadmin', 400],
    ['/public/..;/admin', 400],
    ['/public/.;x/admin', 400],
    ['/public/v1;jsessionid=1/x', 'pub', '/public/v1;jsessionid=1/x'],
    ['/public/a..b%2Fc', 'pub', '/public/a..b%2Fc'],
  ]
  for (const [sent, where, upstreamPath] of cases) {
    pub.seen.length = 0
    admin.seen.length = 0
    const r = await rawRequest(proxy.port, `GET ${sent} HTTP/1.1\r\n${H}\r\n`)
    if (where === 404 || where === 400) {
      t.equal(r.responses[0]?.status, where, `${sent} → ${where === 404 ? 'no route' : 'refused'}`)
      t.same([pub.seen.length, admin.seen.length], [0, 0], `${sent} reached no upstream`)
      continue
    }
    t.equal(r.responses[0]?.status, 200, `${sent} answered`)
    const seen = where === 'admin' ? admin.seen : pub.seen
    const other = where === 'admin' ? pub.seen : admin.seen
    t.equal(seen.length, 1, `${sent} → ${where}`)
    t.equal(other.length, 0, `${sent} not on the other route`)
    t.equal(seen[0]?.url, upstreamPath, `${sent} sent upstream as ${upstreamPath}`)
  }
})

t.test('a request body that stalls → 408 when requestTimeout is set', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy({ ...simpleDoc(up.url), limits: { headersTimeout: 300, requestTimeout: 400 } }, t)
  const r = await rawRequest(proxy.port, `POST /x HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\nhello`, { maxMs: 5000, quietMs: 5000 })
  t.equal(r.responses[0]?.status, 408)
  t.equal(r.responses[0]?.headers.connection, 'close')
  t.ok(r.closed)
})
