import t from 'tap'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { PROTO_DIR, PROTO_FILES, services } from '../../control-plane/protos.ts'
import type * as pb from '../../control-plane/generated/types.ts'

/**
 * The hand-written types in generated/types.ts must name the .proto fields
 * exactly: a message that survives encode → decode unchanged has no field
 * the .proto lacks (protobuf drops unknown names silently).
 */
function roundTrip<T> (service: 'ConfigDiscovery' | 'Operator' | 'Telemetry', method: string, side: 'request' | 'response', value: T): unknown {
  const def = services()[service].service[method]
  if (def === undefined) throw new Error(`no ${service}.${method}`)
  const bytes = side === 'request' ? def.requestSerialize(value) : def.responseSerialize(value)
  return side === 'request' ? def.requestDeserialize(bytes) : def.responseDeserialize(bytes)
}

t.test('messages survive the wire with the names generated/types.ts gives them', async (t) => {
  const req: pb.DiscoveryRequest = { nodeId: 'n', labels: { zone: 'a' }, versionInfo: '3', responseNonce: 'abc', errorDetail: { message: 'm', issues: [{ path: 'routes[0]', expected: 'x' }] } }
  t.same(roundTrip('ConfigDiscovery', 'Stream', 'request', req), req)
  const res: pb.DiscoveryResponse = { versionInfo: '4', nonce: 'n', configJson: '{}', contentHash: 'h', weightHints: [{ cluster: 'c', endpoint: 'http://a:1', weight: 2.5 }] }
  t.same(roundTrip('ConfigDiscovery', 'Stream', 'response', res), res)
  const report: pb.TelemetryReport = { nodeId: 'n', instance: 'i', at: 't', routes: [{ route: 'r', requests: 5, errors: 1, latencyBounds: [0.1], latencyCounts: [4, 5] }], sequence: 7 }
  t.same(roundTrip('Telemetry', 'Report', 'request', report), report)
  const fleet: pb.GetFleetResponse = {
    currentVersion: 9,
    nodes: [{ nodeId: 'n', labels: { a: 'b' }, address: '1.2.3.4:5', connected: true, ackedVersion: '8', lastAckAt: 't', nackedVersion: '9', nackError: { message: 'm', issues: [] }, lastNackAt: 't', sentVersion: '9', lastSeenAt: 't', ackedHash: 'h', overlays: ['eu'], inSync: true }],
  }
  t.same(roundTrip('Operator', 'GetFleet', 'response', fleet), fleet)
  const audit: pb.ListAuditResponse = { entries: [{ seq: 1, at: 't', actor: 'a', action: 'put_route', target: 'r', fromVersion: 1, toVersion: 2, summary: 's', beforeJson: '', afterJson: '{}', message: 'm' }] }
  t.same(roundTrip('Operator', 'ListAudit', 'response', audit), audit)
  const history: pb.ListHistoryResponse = { entries: [{ version: 2, contentHash: 'h', createdAt: 't', author: 'a', action: 'rollback', summary: 's', message: 'm' }] }
  t.same(roundTrip('Operator', 'ListHistory', 'response', history), history)
  const put: pb.PutRouteRequest = { routeJson: '{}', before: 'x', options: { dryRun: true, ifVersion: 3, message: 'm' } }
  t.same(roundTrip('Operator', 'PutRoute', 'request', put), put)
  const change: pb.ChangeResponse = { version: 3, contentHash: 'h', changed: true, dryRun: false, summary: 's' }
  t.same(roundTrip('Operator', 'Rollback', 'response', change), change)
  const traffic: pb.GetTrafficResponse = { routes: [{ route: 'r', requests: 1, errors: 0, nodes: 2, latencyBounds: [1], latencyCounts: [1, 0] }] }
  t.same(roundTrip('Operator', 'GetTraffic', 'response', traffic), traffic)

  const getConfig: pb.GetConfigRequest = { version: 2, labels: { zone: 'eu' }, compose: true }
  t.same(roundTrip('Operator', 'GetConfig', 'request', getConfig), getConfig)
  const config: pb.GetConfigResponse = { version: 2, contentHash: 'h', configJson: '{}', createdAt: 't', author: 'a', overlays: ['eu'] }
  t.same(roundTrip('Operator', 'GetConfig', 'response', config), config)
  const overlay: pb.PutOverlayRequest = { overlayJson: '{}', options: { dryRun: false, ifVersion: 1, message: '' } }
  t.same(roundTrip('Operator', 'PutOverlay', 'request', overlay), overlay)
  const overlays: pb.ListOverlaysResponse = { overlaysJson: ['{}'], version: 3 }
  t.same(roundTrip('Operator', 'ListOverlays', 'response', overlays), overlays)
  const analytics: pb.GetAnalyticsResponse = { at: 't', routes: [{ route: 'r', windowSeconds: 60, requests: 5, errors: 1, rate: 0.5, errorRatio: 0.2, p50Ms: 1, p90Ms: 2, p99Ms: 3, nodes: 2, latencyBounds: [0.1], latencyCounts: [4, 1] }] }
  t.same(roundTrip('Operator', 'GetAnalytics', 'response', analytics), analytics)
  // p99_ms is optional: absent when unknown (0 ms is a latency), marked by proto-loader when present.
  const series: pb.GetSeriesResponse = { stepSeconds: 300, points: [{ t: 1, requests: 2, errors: 0, p99Ms: 4.5, _p99Ms: 'p99Ms' }, { t: 301, requests: 3, errors: 0 }] }
  t.same(roundTrip('Operator', 'GetSeries', 'response', series), series)
  const forecast: pb.GetForecastResponse = { route: 'r', stepSeconds: 300, observations: 9, model: 'smoothing', level: 0.9, points: [{ t: 1, rate: 2, lo: 1, hi: 3 }], lastT: 0, lastRate: 2, anomalyScore: 0.75, anomalous: true, anomalies: [{ t: 0, rate: 2, score: 0.75 }] }
  t.same(roundTrip('Operator', 'GetForecast', 'response', forecast), forecast)
  const hints: pb.SetWeightHintsRequest = { cluster: 'c', hints: [{ endpoint: 'http://a:1', weight: 2 }], replace: true, dryRun: true, message: 'm' }
  t.same(roundTrip('Operator', 'SetWeightHints', 'request', hints), hints)
  const rules: pb.ListRulesResponse = { rules: [{ name: 'r', ruleJson: '{}', holding: true, lastFiredAt: 't', lastValues: { 'p99 > 1ms': 2.5 }, firings: 3, alertsDelivered: 2, alertsFailed: 1 }] }
  t.same(roundTrip('Operator', 'ListRules', 'response', rules), rules)
  const backtest: pb.BacktestRuleResponse = { stepSeconds: 300, evaluations: 10, firings: [{ at: 't', values: { 'rps > 1': 2 }, changes: [{ path: '/x', beforeJson: '1', afterJson: '2' }], errors: ['e'] }] }
  t.same(roundTrip('Operator', 'BacktestRule', 'response', backtest), backtest)
  const backtestReq: pb.BacktestRuleRequest = { name: 'n', ruleJson: '', range: '7d', stepSeconds: 300 }
  t.same(roundTrip('Operator', 'BacktestRule', 'request', backtestReq), backtestReq)
})

t.test('every rpc and every field in the .proto files has a comment', async (t) => {
  let checked = 0
  for (const file of PROTO_FILES) {
    const lines = (await readFile(path.join(PROTO_DIR, file), 'utf8')).split('\n')
    lines.forEach((line, i) => {
      const isRpc = /^\s*rpc\s/.test(line)
      const isField = /^\s+(?:repeated\s+)?(?:map<[^>]+>|[A-Za-z0-9_.]+)\s+[a-z_0-9]+\s*=\s*\d+;/.test(line)
      if (!isRpc && !isField) return
      checked++
      if (!/^\s*\/\//.test(lines[i - 1] ?? '')) t.fail(`${file}:${i + 1} has no comment: ${line.trim()}`)
    })
  }
  t.ok(checked > 100, `${checked} rpcs and fields checked`)
})
