import t from 'tap'
import http2 from 'node:http2'
import net from 'node:net'
import { mkdtemp, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { startTestProxy, simpleDoc } from '../helpers/proxy.ts'
import { startUpstream } from '../helpers/upstream.ts'
import { clusterState, metric, waitFor } from '../helpers/resilience.ts'
import { flushAccessLogs } from '../../src/access-log.ts'

t.test('an HTTP/2 client that drops its connection mid-upload is not an upstream error', async (t) => {
  // An upstream that answers before it has read the upload (full duplex).
  const up = http2.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('partial')
    req.on('data', () => {})
    req.on('error', () => {})
    res.on('error', () => {})
  })
  up.on('sessionError', () => {})
  await new Promise<void>((resolve) => up.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { up.close() })
  const proxy = await startTestProxy({
    listen: { host: '127.0.0.1', port: 0, h2c: true },
    clusters: [{ name: 'c', endpoints: [{ url: `http://127.0.0.1:${(up.address() as net.AddressInfo).port}` }], protocol: 'http2', outlierDetection: { consecutiveGatewayFailures: 2, maxEjectionPercent: 100 } }],
    routes: [{ name: 'r', cluster: 'c' }],
  }, t)
  for (let i = 0; i < 4; i++) {
    await new Promise<void>((resolve) => {
      const session = http2.connect(proxy.url)
      session.on('error', () => {})
      session.on('close', resolve)
      const stream = session.request({ ':method': 'POST', ':path': '/upload' }, { endStream: false })
      stream.on('error', () => {})
      stream.write('hello')
      stream.once('data', () => { session.destroy() })
    })
  }
  const state = await clusterState(proxy.adminUrl, 'c')
  t.equal(state.endpoints[0]?.healthy, true, 'the endpoint is not ejected')
  t.equal(await metric(proxy.adminUrl, 'outrider_upstream_errors_total'), 0, 'and no upstream error is counted')
})

t.test('a client that leaves mid-response is a 499 without an error: no local reply, no upstream error', async (t) => {
  // A response that starts and never ends.
  const up = await startUpstream((_req, res) => {
    res.writeHead(200, { 'content-length': '100000' })
    res.write('x'.repeat(1000))
  })
  t.teardown(up.close)
  const dir = await mkdtemp(path.join(tmpdir(), 'outrider-abort-'))
  const file = path.join(dir, 'access.log')
  const proxy = await startTestProxy({ ...simpleDoc(up.url), accessLog: { destination: file } }, t)
  const client = net.connect(proxy.port, '127.0.0.1', () => { client.write('GET /midbody HTTP/1.1\r\nHost: x\r\n\r\n') })
  client.on('error', () => {})
  await new Promise<void>((resolve) => { client.once('data', () => { resolve() }) })
  client.destroy()
  const rec = await waitFor(async () => {
    flushAccessLogs()
    const line = (await readFile(file, 'utf8').catch(() => '')).split('\n')[0] ?? ''
    return line === '' ? undefined : JSON.parse(line) as Record<string, unknown>
  }, 'the access log record')
  t.equal(rec.status, 499)
  t.equal(rec.error, undefined, 'not UPSTREAM_PROTOCOL_ERROR: the proxy cancelled the upstream request because the client left')
  t.equal(await metric(proxy.adminUrl, 'outrider_local_replies_total'), 0, 'no reply was made, so none is counted')
  t.equal(await metric(proxy.adminUrl, 'outrider_upstream_errors_total'), 0)
})
