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

export interface GetConfigRequest { version: number }
export interface GetConfigResponse {
  version: number
  contentHash: string
  configJson: string
  createdAt: string
  author: string
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
