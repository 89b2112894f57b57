import t from 'tap'
import * as grpc from '@grpc/grpc-js'
import { createRandom } from '../../control-plane/forecast/synthetic.ts'
import { baseDocument, operatorClient, startTestControlPlane, tempDir } from './helpers.ts'

const STEP = 300
const START = 1_700_006_400 // a midnight (UTC), a multiple of 300
const DAYS = 4

/** Requests per 5 minutes on a daily cycle: 5 to 15 per second, plus a little noise. */
const truth = (t: number): number => 300 * (10 + 5 * Math.sin(2 * Math.PI * t / 86_400))

t.test('GetForecast: rate forecast with prediction intervals and anomaly state from the analytics series', async (t) => {
  let now = START * 1000
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json`, now: () => now })
  const viewer = operatorClient(t, cp.address, 'viewer')
  const random = createRandom(7)
  const put = (ts: number, requests: number): void => {
    cp.analytics.record('n1', [{ route: 'api', requests, errors: 0, bounds: [0.1], buckets: [requests, 0] }], ts)
  }
  const end = START + DAYS * 86_400
  for (let ts = START; ts < end; ts += STEP) put(ts, Math.round(truth(ts) * (1 + 0.04 * (random() - 0.5))))
  now = end * 1000

  const missing = await viewer.getForecast({ route: 'nope' }).catch((e: unknown) => e as grpc.ServiceError)
  t.equal((missing as grpc.ServiceError).code, grpc.status.NOT_FOUND)
  const badHorizon = await viewer.getForecast({ route: 'api', horizon: 'later' }).catch((e: unknown) => e as grpc.ServiceError)
  t.equal((badHorizon as grpc.ServiceError).code, grpc.status.INVALID_ARGUMENT)

  const f = await viewer.getForecast({ route: 'api', horizon: '1h', level: 0.9 })
  t.match(f, { route: 'api', stepSeconds: STEP, observations: DAYS * 288, level: 0.9, lastT: end - STEP, anomalous: false })
  t.equal(f.points.length, 12, 'one hour of five-minute steps')
  t.equal(f.points[0]?.t, end)
  t.ok(f.anomalyScore < 0.5, `a normal interval scores low (${f.anomalyScore})`)
  for (const p of f.points) {
    const expected = truth(p.t) / STEP
    t.ok(Math.abs(p.rate - expected) / expected < 0.1, `forecast ${p.rate.toFixed(2)}/s near the truth ${expected.toFixed(2)}/s`)
    t.ok(p.lo <= p.rate && p.rate <= p.hi && p.lo < expected * 1.05 && p.hi > expected * 0.95, `the interval [${p.lo.toFixed(2)}, ${p.hi.toFixed(2)}] holds it`)
  }

  // A surge: ten times the usual traffic in the next interval.
  put(end, Math.round(truth(end) * 10))
  now = (end + STEP) * 1000
  const after = await viewer.getForecast({ route: 'api', horizon: '15m' })
  t.equal(after.lastT, end)
  t.equal(after.points.length, 3)
  t.equal(after.anomalous, true, `the surge alerts (score ${after.anomalyScore})`)
  t.match(after.anomalies.at(-1), { t: end })
})

t.test('forecast and anomaly conditions read the same forecast as GetForecast, at each condition\'s horizon', async (t) => {
  let now = START * 1000
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json`, now: () => now, ruleIntervalMs: 0 })
  await operatorClient(t, cp.address, 'admin').putConfig({ configJson: JSON.stringify(baseDocument([['up', 'http://127.0.0.1:9']], [{ name: 'api', cluster: 'up' }])) })
  const end = START + DAYS * 86_400
  for (let ts = START; ts < end; ts += STEP) cp.analytics.record('n1', [{ route: 'api', requests: Math.round(truth(ts)), errors: 0, bounds: [0.1], buckets: [1, 0] }], ts)
  now = end * 1000
  const when = ['forecast rps in 15m > 0', 'forecast rps in 1h > 0', 'anomaly >= 0', 'rps > 1000000']
  await operatorClient(t, cp.address, 'operator').putRule({ ruleJson: JSON.stringify({ name: 'ahead', route: 'api', when, then: [{ type: 'webhook', url: 'http://127.0.0.1:9/' }] }) })
  t.same(await cp.rules.tick(), [], 'the rps condition does not hold')
  const viewer = operatorClient(t, cp.address, 'viewer')
  const values = (await viewer.listRules({})).rules[0]?.lastValues ?? {}
  const in15m = await viewer.getForecast({ route: 'api', horizon: '15m' })
  const in1h = await viewer.getForecast({ route: 'api', horizon: '1h' })
  t.equal(values['forecast rps in 15m > 0'], in15m.points.at(-1)?.rate)
  t.equal(values['forecast rps in 1h > 0'], in1h.points.at(-1)?.rate)
  t.not(values['forecast rps in 15m > 0'], values['forecast rps in 1h > 0'], 'each at its own horizon')
  t.equal(values['anomaly >= 0'], in1h.anomalyScore)
})
