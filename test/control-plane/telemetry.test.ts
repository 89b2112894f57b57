import t from 'tap'
import { request } from 'undici'
import { TrafficTotals } from '../../control-plane/traffic.ts'
import { baseDocument, operatorClient, proxyUrl, startTestControlPlane, startTestDataPlane, tempDir, waitFor } from './helpers.ts'
import { startUpstream } from '../helpers/upstream.ts'

const counts = (requests: number, errors: number, cumulative: number[]) => ({ route: 'api', requests, errors, latencyBounds: [0.1, 1], latencyCounts: cumulative })

t.test('TrafficTotals adds increases only, and starts over when a node restarts', async (t) => {
  const totals = new TrafficTotals()
  totals.report('a', 'i1', [counts(10, 1, [8, 9, 10])])
  totals.report('b', 'j1', [counts(5, 0, [5, 5, 5])])
  totals.report('a', 'i1', [counts(10, 1, [8, 9, 10])]) // the same report again
  totals.report('a', 'i1', [counts(14, 2, [11, 13, 14])])
  t.same(totals.totals(), [{ route: 'api', requests: 19, errors: 2, nodes: 2, latencyBounds: [0.1, 1], latencyCounts: [16, 2, 1] }])
  totals.report('a', 'i2', [counts(3, 0, [3, 3, 3])]) // a new process: its counters began at 0
  t.equal(totals.totals()[0]?.requests, 22)
  totals.report('b', 'j1', [counts(2, 0, [2, 2, 2])]) // went down without a new instance id: a restart too
  t.equal(totals.totals()[0]?.requests, 24)
  t.same(totals.totals()[0]?.latencyCounts, [21, 2, 1])
})

t.test('telemetry from two data planes adds up in GetTraffic', async (t) => {
  const up = await startUpstream((req, res) => { res.writeHead(req.url === '/api/fail' ? 503 : 200); res.end('x') })
  t.teardown(() => up.close())
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json` })
  const admin = operatorClient(t, cp.address, 'admin')
  await admin.putConfig({ configJson: JSON.stringify(baseDocument([['up', up.url]], [{ name: 'api', match: { pathPrefix: '/api' }, cluster: 'up' }])) })
  const dps = await Promise.all(['dp-1', 'dp-2'].map((id) => startTestDataPlane(t, cp.address, id, { telemetryIntervalMs: 50 })))
  await Promise.all(dps.map((dp) => dp.started))

  const send = async (url: string): Promise<void> => { await (await request(url)).body.dump() }
  for (let i = 0; i < 3; i++) await send(proxyUrl(dps[0]!, '/api/ok'))
  await send(proxyUrl(dps[0]!, '/api/fail'))
  for (let i = 0; i < 2; i++) await send(proxyUrl(dps[1]!, '/api/ok'))

  const viewer = operatorClient(t, cp.address, 'viewer')
  const api = await waitFor('6 requests reported', async () => {
    const r = (await viewer.getTraffic({})).routes.find((x) => x.route === 'api')
    return r?.requests === 6 ? r : undefined
  })
  t.equal(api.errors, 1, 'one 5xx')
  t.equal(api.nodes, 2)
  t.equal(api.latencyCounts.reduce((a, b) => a + b, 0), 6, 'every request is in one latency bucket')
  t.equal(api.latencyCounts.length, api.latencyBounds.length + 1)
  await new Promise((resolve) => setTimeout(resolve, 150))
  t.equal((await viewer.getTraffic({})).routes.find((x) => x.route === 'api')?.requests, 6, 'repeated reports of the same counters add nothing')
})
