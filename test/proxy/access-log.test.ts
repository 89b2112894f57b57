import t from 'tap'
import { mkdtemp, readFile, rename } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.ts'
import { startTestProxy } from '../helpers/proxy.ts'
import { rawRequest } from '../helpers/raw-http.ts'
import { flushAccessLogs, type AccessRecord } from '../../src/access-log.ts'

/** An exchange as AccessLog.write takes it: a 200 GET /a on route api, with `over` on top. */
function record (over: Partial<AccessRecord>): AccessRecord {
  return {
    requestId: 'r-1', traceId: undefined, route: 'api', cluster: 'c', endpoint: undefined, method: 'GET', path: '/a', query: '',
    status: 200, bytesIn: 0, bytesOut: 5, durationMs: 1.5, upstreamMs: 1, attempts: 1, clientIp: '10.0.0.1', error: undefined, annotations: undefined,
    ...over,
  }
}

/** A fresh access-log path in a temporary directory of its own. */
async function logFile (): Promise<string> {
  return path.join(await mkdtemp(path.join(tmpdir(), 'outrider-access-')), 'access.log')
}

/** The file's records once at least `atLeast` were written (async destination: poll, bounded). */
async function lines (file: string, atLeast = 1): Promise<Array<Record<string, unknown>>> {
  let recs: Array<Record<string, unknown>> = []
  for (let i = 0; i < 100; i++) {
    flushAccessLogs()
    const text = await readFile(file, 'utf8').catch(() => '')
    recs = text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>)
    if (recs.length >= atLeast) break
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return recs
}

t.test('one JSON line per exchange, with the fields operators need', async (t) => {
  const up = await startUpstream((req, res) => {
    if (req.url?.startsWith('/fail') === true) { res.statusCode = 503; res.end('down'); return }
    res.end('hello')
  })
  t.teardown(up.close)
  const file = await logFile()
  const proxy = await startTestProxy({
    accessLog: { destination: file },
    clusters: [{ name: 'c', endpoints: [{ url: up.url }] }],
    routes: [
      { name: 'quiet', match: { pathPrefix: '/quiet' }, cluster: 'c', accessLog: false },
      { name: 'api', match: { pathPrefix: '/', methods: ['GET', 'POST'] }, cluster: 'c' },
    ],
  }, t)
  await (await request(`${proxy.url}/users/1?token=secret`, { headers: { 'x-request-id': 'req-1' } })).body.text()
  await (await request(`${proxy.url}/fail`, { method: 'POST', body: 'abcd' })).body.text()
  await (await request(`${proxy.url}/quiet`)).body.text()
  await (await request(`${proxy.url}/nowhere`, { method: 'DELETE' })).body.text()
  await (await request(`${proxy.url}/hop`, { method: 'OPTIONS', headers: { 'max-forwards': '0' } })).body.text()
  const recs = await lines(file, 4)
  t.equal(recs.length, 4, 'the route that opted out is not logged')
  t.match(recs[2], { route: '__unmatched__', status: 404, method: 'DELETE', path: '/nowhere', error: 'NO_ROUTE' }, 'unmatched requests are logged too')
  t.match(recs[3], { route: '__unmatched__', status: 200, method: 'OPTIONS', path: '/hop' }, 'so is an OPTIONS answered here for Max-Forwards: 0')
  t.equal(recs[3]?.error, undefined)
  t.match(recs[0], { requestId: 'req-1', route: 'api', cluster: 'c', endpoint: up.url, method: 'GET', path: '/users/1', status: 200, bytesOut: 5, attempts: 1, clientIp: '127.0.0.1' })
  t.type(recs[0]?.time, 'string')
  t.type(recs[0]?.durationMs, 'number')
  t.type(recs[0]?.upstreamMs, 'number')
  t.notOk(JSON.stringify(recs).includes('secret'), 'the query string is left out by default')
  t.match(recs[1], { method: 'POST', status: 503, bytesIn: 4 })
  t.equal(recs[0]?.log, 'access', 'tagged as an access record, no level')

  // logrotate: move the file away, SIGUSR2, and new lines go to a new file.
  await rename(file, `${file}.1`)
  process.emit('SIGUSR2')
  await new Promise((resolve) => setTimeout(resolve, 100))
  await (await request(`${proxy.url}/after-rotation`)).body.text()
  const fresh = await lines(file)
  t.equal(fresh.length, 1)
  t.equal(fresh[0]?.path, '/after-rotation')
})

t.test('requests the listener refuses on the raw socket (CONNECT, a WebSocket handshake no route takes) are counted and logged too', async (t) => {
  const up = await startUpstream()
  t.teardown(up.close)
  const file = await logFile()
  const proxy = await startTestProxy({
    accessLog: { destination: file },
    clusters: [{ name: 'c', endpoints: [{ url: up.url }] }],
    routes: [{ name: 'api', match: { pathPrefix: '/api/' }, cluster: 'c' }],
  }, t)
  const connect = await rawRequest(proxy.port, 'CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\nx-request-id: r-connect\r\n\r\n')
  t.equal(connect.responses[0]?.status, 405)
  const ws = await rawRequest(proxy.port, 'GET /nope HTTP/1.1\r\nHost: x.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nx-request-id: r-ws\r\n' +
    'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
  t.equal(ws.responses[0]?.status, 404)
  const recs = await lines(file, 2)
  t.match(recs, [
    { requestId: 'r-connect', route: '__unmatched__', method: 'CONNECT', status: 405, error: 'METHOD_NOT_ALLOWED' },
    { requestId: 'r-ws', route: '__unmatched__', method: 'GET', path: '/nope', status: 404, error: 'NO_ROUTE' },
  ])
  const metrics = await proxy.metrics.registry.metrics()
  t.match(metrics, /^outrider_requests_total\{route="__unmatched__",method="OTHER",status_class="4xx"\} 1$/m, 'CONNECT is counted')
  t.match(metrics, /^outrider_requests_total\{route="__unmatched__",method="GET",status_class="4xx"\} 1$/m, 'so is the handshake')
})

t.test('query on request; sampling keeps 5xx', async (t) => {
  const up = await startUpstream((_req, res) => { res.end('ok') })
  t.teardown(up.close)
  const file = await logFile()
  const proxy = await startTestProxy({
    accessLog: { destination: file, includeQuery: true, sampleRate: 0 },
    clusters: [{ name: 'c', endpoints: [{ url: up.url }, { url: 'http://127.0.0.1:1' }], loadBalancer: { policy: 'round_robin' }, outlierDetection: { enabled: false } }],
    routes: [{ name: 'api', match: { pathPrefix: '/api' }, cluster: 'c' }],
  }, t)
  for (let i = 0; i < 4; i++) await (await request(`${proxy.url}/api?i=${i}`)).body.text()
  await (await request(`${proxy.url}/nowhere?x=1`)).body.text()
  const recs = await lines(file)
  t.ok(recs.every((r) => (r.status as number) >= 400), 'with sampleRate 0 only errors are logged')
  t.ok(recs.some((r) => r.status === 502 && typeof r.path === 'string' && (r.path as string).startsWith('/api?i=') && r.error === 'UPSTREAM_CONNECT_FAILED'))
  t.notOk(recs.some((r) => r.route === '__unmatched__'), 'a 404 is sampled like any non-5xx')
})

t.test('a plugin annotation named like a core field never replaces it', async (t) => {
  const { AccessLog } = await import('../../src/access-log.ts')
  const file = await logFile()
  const log = await AccessLog.open({ enabled: true, destination: file, sampleRate: 1, includeQuery: false })
  log.write(record({ annotations: { status: 'forged', route: 'other', clientIp: '6.6.6.6', waf: 'pass' } }))
  const [rec] = await lines(file)
  t.match(rec, { status: 200, route: 'api', clientIp: '10.0.0.1' }, 'the exchange\'s own values')
  t.equal(rec?.waf, 'pass', 'other annotations are kept')
})

t.test('a plugin annotation named time or log never shadows the ones pino writes', async (t) => {
  const { AccessLog } = await import('../../src/access-log.ts')
  const file = await logFile()
  const log = await AccessLog.open({ enabled: true, destination: file, sampleRate: 1, includeQuery: false })
  log.write(record({ annotations: { time: 'forged', log: 'error', waf: 'pass' } }))
  await lines(file)
  const text = await readFile(file, 'utf8')
  t.equal(text.split('"time"').length - 1, 1, 'one time key in the line')
  t.equal(text.split('"log"').length - 1, 1, 'one log key in the line')
  const [rec] = await lines(file)
  t.equal(rec?.log, 'access')
  t.not(rec?.time, 'forged')
  t.equal(rec?.waf, 'pass', 'other annotations are kept')
})

t.test('lines dropped past the backlog are reported, not lost in silence', async (t) => {
  const { spawn } = await import('node:child_process')
  const { fileURLToPath } = await import('node:url')
  const module = fileURLToPath(new URL('../../src/access-log.ts', import.meta.url))
  // A child logs to a stdout pipe nobody reads: the backlog passes 16 MiB.
  const script = `
    const { AccessLog } = await import(${JSON.stringify(module)})
    const log = await AccessLog.open({ enabled: true, destination: 'stdout', sampleRate: 1, includeQuery: false })
    const r = { requestId: 'x'.repeat(36), traceId: undefined, route: 'r', cluster: 'c', endpoint: 'http://10.0.0.1:8080', method: 'GET', path: '/p'.repeat(40), query: '', status: 200, bytesIn: 0, bytesOut: 10, durationMs: 1, upstreamMs: 1, attempts: 1, clientIp: '10.1.1.1', error: undefined, annotations: undefined }
    for (let i = 0; i < 120000; i++) log.write(r)
    setImmediate(() => { process.stderr.write('written\\n'); process.exit(0) })
  `
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { child.kill('SIGKILL') })
  let stderr = ''
  const exited = new Promise((resolve) => child.once('exit', resolve))
  // Read stdout only once the child says something (the warning, or that it
  // wrote everything): pino flushes what is left synchronously on exit.
  child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); child.stdout.resume() })
  await exited
  t.match(stderr, /access log stdout: \d+ line\(s\) dropped/, 'a warning says lines were dropped')
})

t.test('includeQuery logs the query, but never the values of credential parameters', async (t) => {
  const { AccessLog, loggedQuery } = await import('../../src/access-log.ts')
  t.equal(loggedQuery('page=2&api_key=rk_live_123&q=shoes'), 'page=2&api_key=[redacted]&q=shoes')
  t.equal(loggedQuery('access_token=eyJ&X-Amz-Signature=abc&X-Amz-Date=20250101&sig=zz&code=42&key=AIza'), 'access_token=[redacted]&X-Amz-Signature=[redacted]&X-Amz-Date=20250101&sig=[redacted]&code=[redacted]&key=[redacted]')
  t.equal(loggedQuery('api%5Fkey=secret&monkey=1&tokens=3'), 'api%5Fkey=[redacted]&monkey=1&tokens=3', 'by the decoded name; names that only end alike are kept')
  t.equal(loggedQuery('flag&x=%zz'), 'flag&x=%zz')
  t.equal(loggedQuery('private_token=glpat&jwt=eyJ&client_assertion=eyJ&Authorization=Bearer%20x&token%5B%5D=a&token[]=b&access_key=AK&consumer_key=ck&page=1'),
    'private_token=[redacted]&jwt=[redacted]&client_assertion=[redacted]&Authorization=[redacted]&token%5B%5D=[redacted]&token[]=[redacted]&access_key=[redacted]&consumer_key=[redacted]&page=1',
    'GitLab, JWT, RFC 7523 and array-style names too')
  const file = await logFile()
  const log = await AccessLog.open({ enabled: true, destination: file, sampleRate: 1, includeQuery: true })
  log.write(record({ query: 'api_key=rk_live_123&page=2' }))
  const [rec] = await lines(file)
  t.equal(rec?.path, '/a?api_key=[redacted]&page=2')
})

t.test('the query parameter an api-key route reads its key from is redacted too, whatever it is called', async (t) => {
  const { hashApiKey } = await import('../../plugins/api-key/hash.ts')
  const { loggedQuery } = await import('../../src/access-log.ts')
  const up = await startUpstream()
  t.teardown(up.close)
  const file = await logFile()
  const KEY = 'ck_0123456789abcdef0123'
  const proxy = await startTestProxy({
    accessLog: { destination: file, includeQuery: true },
    clusters: [{ name: 'c', endpoints: [{ url: up.url }] }],
    routes: [{ name: 'api', cluster: 'c', plugins: [{ name: 'api-key', config: { keyFrom: { from: 'query', name: 'partner' }, keys: [{ id: 'a', hash: hashApiKey(KEY) }] } }] }],
  })
  t.equal((await request(`${proxy.url}/a?page=2&partner=${KEY}`)).statusCode, 200)
  t.equal((await request(`${proxy.url}/a?%50artner=${KEY}x`)).statusCode, 401)
  const recs = await lines(file, 2)
  t.same(recs.map((r) => r.path), ['/a?page=2&partner=[redacted]', '/a?%50artner=[redacted]'])
  t.notOk(JSON.stringify(recs).includes(KEY), 'the key is in no line')
  await proxy.shutdown()
  t.equal(loggedQuery('partner=1'), 'partner=1', 'once no config names it, it is an ordinary parameter again')
})
