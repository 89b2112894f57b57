import t from 'tap'
import net, { type AddressInfo } from 'node:net'
import { startProxy } from '../../src/proxy.ts'
import { createMetrics } from '../../src/metrics.ts'
import { startUpstream } from '../helpers/upstream.ts'
import { simpleDoc, testConfig, testLogger } from '../helpers/proxy.ts'

const wait = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

// A start that fails after its snapshot was built (here: the port is taken)
// must take the snapshot down with it: managed mode starts again in the same
// process, and the first snapshot's health checks would run on beside it.
t.test('a start-up that fails on a taken port stops the snapshot it built', async (t) => {
  let checks = 0
  const up = await startUpstream((req, res) => {
    if (req.url === '/healthz') checks++
    res.end('ok')
  })
  t.teardown(up.close)
  const taken = net.createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { taken.close() })
  const config = testConfig({
    ...simpleDoc(up.url, {}, { healthCheck: { path: '/healthz', interval: '20ms', timeout: '1s', jitter: 0 } }),
    listen: { host: '127.0.0.1', port: (taken.address() as AddressInfo).port },
  })
  await t.rejects(startProxy({ config, source: 'test', log: testLogger(), metrics: createMetrics({ defaultMetrics: false }) }), { code: 'EADDRINUSE' })
  const after = checks
  await wait(300) // 15 check intervals
  t.ok(checks <= after + 1, `no health checks after the failed start (${checks - after} more)`)
})
