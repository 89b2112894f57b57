import t from 'tap'
import http2 from 'node:http2'
import type net from 'node:net'
import { startTestProxy } from '../helpers/proxy.ts'
import { clusterState, metric } from '../helpers/resilience.ts'

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
