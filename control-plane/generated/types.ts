/**
 * TypeScript shapes of the messages in `proto/outrider/v1/*.proto`, as
 * @grpc/proto-loader hands them over with the options in `../protos.ts`
 * (camelCase fields, 64-bit integers as numbers, defaults filled in, absent
 * sub-messages as null). Written by hand, field for field: no protoc runs in
 * this build. A field added to a .proto MUST be added here too; the
 * `test/control-plane/protos.test.ts` round trip catches a mismatch in names.
 */

// common.proto

export interface ConfigIssue {
  path: string
  expected: string
}

export interface ErrorDetail {
  message: string
  issues: ConfigIssue[]
}

export interface WeightHint {
  cluster: string
  endpoint: string
  weight: number
}

// config_discovery.proto

export interface DiscoveryRequest {
  nodeId: string
  labels: Record<string, string>
  versionInfo: string
  responseNonce: string
  errorDetail?: ErrorDetail | null
}

export interface DiscoveryResponse {
  versionInfo: string
  nonce: string
  configJson: string
  contentHash: string
  weightHints: WeightHint[]
}

// telemetry.proto

export interface RouteCounters {
  route: string
  requests: number
  errors: number
  latencyBounds: number[]
  latencyCounts: number[]
}

export interface TelemetryReport {
  nodeId: string
  instance: string
  at: string
  routes: RouteCounters[]
  sequence: number
}

export interface ReportSummary {
  accepted: number
}

// operator.proto

export interface ChangeOptions {
  dryRun: boolean
  ifVersion: number
  message: string
}

export interface ChangeResponse {
  version: number
  contentHash: string
  changed: boolean
  dryRun: boolean
  summary: string
}

export interface PutRouteRequest {
  routeJson: string
  before: string
  options?: ChangeOptions | null
}

export interface GetRouteRequest { name: string }
export interface GetRouteResponse { routeJson: string, version: number }
export type ListRoutesRequest = Record<string, never>
export interface ListRoutesResponse { routesJson: string[], version: number }
export interface DeleteRouteRequest { name: string, options?: ChangeOptions | null }

export interface PutClusterRequest {
  clusterJson: string
  options?: ChangeOptions | null
}

export interface GetClusterRequest { name: string }
export interface GetClusterResponse { clusterJson: string, version: number }
export type ListClustersRequest = Record<string, never>
export interface ListClustersResponse { clustersJson: string[], version: number }
export interface DeleteClusterRequest { name: string, options?: ChangeOptions | null }

export interface ValidateConfigRequest { configJson: string }
export interface ValidateConfigResponse { valid: boolean, issues: ConfigIssue[], contentHash: string }

export interface GetConfigRequest { version: number, labels: Record<string, string>, compose: boolean }
export interface GetConfigResponse {
  version: number
  contentHash: string
  configJson: string
  createdAt: string
  author: string
  overlays: string[]
}

export interface PutConfigRequest { configJson: string, options?: ChangeOptions | null }

export interface ListHistoryRequest { limit: number }
export interface HistoryEntry {
  version: number
  contentHash: string
  createdAt: string
  author: string
  action: string
  summary: string
  message: string
}
export interface ListHistoryResponse { entries: HistoryEntry[] }

export interface RollbackRequest { version: number, options?: ChangeOptions | null }

export interface ListAuditRequest { limit: number }
export interface AuditEntry {
  seq: number
  at: string
  actor: string
  action: string
  target: string
  fromVersion: number
  toVersion: number
  summary: string
  beforeJson: string
  afterJson: string
  message: string
}
export interface ListAuditResponse { entries: AuditEntry[] }

export type GetFleetRequest = Record<string, never>
export interface FleetNode {
  nodeId: string
  labels: Record<string, string>
  address: string
  connected: boolean
  ackedVersion: string
  lastAckAt: string
  nackedVersion: string
  nackError?: ErrorDetail | null
  lastNackAt: string
  sentVersion: string
  lastSeenAt: string
  ackedHash: string
  overlays: string[]
  inSync: boolean
}
export interface GetFleetResponse { nodes: FleetNode[], currentVersion: number }

export type GetTrafficRequest = Record<string, never>
export interface RouteTraffic {
  route: string
  requests: number
  errors: number
  nodes: number
  latencyBounds: number[]
  latencyCounts: number[]
}
export interface GetTrafficResponse { routes: RouteTraffic[] }

export interface PutOverlayRequest { overlayJson: string, options?: ChangeOptions | null }
export type ListOverlaysRequest = Record<string, never>
export interface ListOverlaysResponse { overlaysJson: string[], version: number }
export interface DeleteOverlayRequest { name: string, options?: ChangeOptions | null }

export interface GetAnalyticsRequest { route: string, window: string }
export interface RouteAnalytics {
  route: string
  windowSeconds: number
  requests: number
  errors: number
  rate: number
  errorRatio: number
  p50Ms: number
  p90Ms: number
  p99Ms: number
  nodes: number
  latencyBounds: number[]
  latencyCounts: number[]
}
export interface GetAnalyticsResponse { routes: RouteAnalytics[], at: string }
export interface GetSeriesRequest { route: string, stepSeconds: number, limit: number }
/** `p99Ms` is absent when unknown: a proto3 optional, which proto-loader marks with `_p99Ms` when set. */
export interface SeriesPoint { t: number, requests: number, errors: number, p99Ms?: number, _p99Ms?: 'p99Ms' }
export interface GetSeriesResponse { stepSeconds: number, points: SeriesPoint[] }

export interface GetForecastRequest { route: string, horizon: string, level: number }
export interface ForecastPoint { t: number, rate: number, lo: number, hi: number }
export interface AnomalyPoint { t: number, rate: number, score: number }
export interface GetForecastResponse {
  route: string
  stepSeconds: number
  observations: number
  model: string
  level: number
  points: ForecastPoint[]
  lastT: number
  lastRate: number
  anomalyScore: number
  anomalous: boolean
  anomalies: AnomalyPoint[]
}

export interface EndpointWeight { endpoint: string, weight: number }
export interface SetWeightHintsRequest { cluster: string, hints: EndpointWeight[], replace: boolean, dryRun: boolean, message: string }
export interface SetWeightHintsResponse { hints: WeightHint[], changed: boolean }
export interface ListWeightHintsRequest { cluster: string }
export interface ListWeightHintsResponse { hints: WeightHint[] }

export interface PutRuleRequest { ruleJson: string, dryRun: boolean, message: string }
export interface PutRuleResponse { changed: boolean }
export type ListRulesRequest = Record<string, never>
export interface RuleStatus {
  name: string
  ruleJson: string
  holding: boolean
  lastFiredAt: string
  lastValues: Record<string, number>
  firings: number
  alertsDelivered: number
  alertsFailed: number
}
export interface ListRulesResponse { rules: RuleStatus[] }
export interface DeleteRuleRequest { name: string, dryRun: boolean, message: string }
export interface BacktestRuleRequest { name: string, ruleJson: string, range: string, stepSeconds: number }
export interface RuleChange { path: string, beforeJson: string, afterJson: string }
export interface BacktestFiring { at: string, values: Record<string, number>, changes: RuleChange[], errors: string[] }
export interface BacktestRuleResponse { stepSeconds: number, evaluations: number, firings: BacktestFiring[] }
