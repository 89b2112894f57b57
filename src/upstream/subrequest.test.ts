import t from 'tap'
import { configSchema } from '../config/schema.ts'
import { startUpstream } from '../../test/helpers/upstream.ts'
import { Cluster } from './cluster.ts'
import { upstreamClient } from './subrequest.ts'

t.test('a repeated endpoint-load-metrics field neither fails the subrequest nor leaves its body unread', async (t) => {
  const up = await startUpstream((_req, res) => {
    res.writeHead(200, ['content-length', '2', 'endpoint-load-metrics', 'TEXT cpu_utilization=0.5', 'endpoint-load-metrics', 'TEXT mem_utilization=0.5'])
    res.end('ok')
  })
  t.teardown(up.close)
  const config = configSchema.parse({
    listen: { port: 0 },
    admin: { port: 0 },
    clusters: [{ name: 'c', endpoints: [{ url: up.url }], loadBalancer: { policy: 'peak_ewma' } }],
    routes: [{ name: 'r', cluster: 'c' }],
  })
  const cluster = new Cluster(config.clusters[0]!)
  t.teardown(() => cluster.drain(0))
  const client = upstreamClient(cluster, { headers: undefined, body: undefined })
  for (let i = 0; i < 3; i++) {
    const reply = await client.request({ method: 'GET', path: '/x', headers: {}, maxBodySize: 100 })
    t.equal(reply.status, 200)
    t.equal(reply.body?.toString(), 'ok')
  }
  t.equal(cluster.endpoints[0]!.inflight, 0)
})
