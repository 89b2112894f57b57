import * as grpc from '@grpc/grpc-js'
import { services } from './protos.ts'
import { ISSUES_TRAILER } from './services/status.ts'
import type { ConfigIssue } from '../src/errors.ts'
import type * as pb from './generated/types.ts'

/** Where and how to reach a control plane. */
export interface ConnectOptions {
  /** Bearer token sent with every call. */
  token?: string
  /** PEM CA that signed the control plane's certificate (default: the system's roots). */
  ca?: Buffer
  /** Client certificate and key for mTLS (TLS with them, against the system's roots when no CA is given). */
  cert?: Buffer
  key?: Buffer
}

/**
 * The largest message a data plane accepts from the control plane (gRPC's
 * default, 4 MiB, is less than a big fleet's config document).
 */
export const MAX_PUSH_BYTES = 64 * 1024 * 1024
/** The largest config document the control plane pushes: the push's other fields (hash, nonce, weight hints) fit in the rest of MAX_PUSH_BYTES. */
export const MAX_DOCUMENT_BYTES = MAX_PUSH_BYTES - 1024 * 1024

/** Whether `options` speak TLS: a CA, or a client certificate (which would mean nothing in plaintext). */
export function usesTls (options: ConnectOptions): boolean {
  return options.ca !== undefined || options.cert !== undefined || options.key !== undefined
}

/** Channel credentials for a control-plane address: TLS when a CA or a client certificate is given (else plaintext). */
export function channelCredentials (options: ConnectOptions): grpc.ChannelCredentials {
  if (!usesTls(options)) return grpc.credentials.createInsecure()
  return grpc.credentials.createSsl(options.ca ?? null, options.key ?? null, options.cert ?? null)
}

/** True when a bearer token would cross the network unencrypted: plaintext to an address other than loopback. */
export function sendsTokenInClear (address: string, options: ConnectOptions): boolean {
  if (options.token === undefined || options.token === '' || usesTls(options)) return false
  const host = address.replace(/^dns:(\/\/[^/]*\/)?/, '').replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1')
  return !(host === 'localhost' || host === '::1' || /^127\./.test(host))
}

/** `authorization: Bearer …` metadata (gRPC refuses call credentials on plaintext channels, so it is sent as metadata). */
export function tokenMetadata (token: string | undefined): grpc.Metadata {
  const md = new grpc.Metadata()
  if (token !== undefined && token !== '') md.set('authorization', `Bearer ${token}`)
  return md
}

/** A failed call: the gRPC status plus, for INVALID_ARGUMENT on a config, the issues. */
export interface CallError extends grpc.ServiceError {
  issues: ConfigIssue[]
}

type Unary<Req, Res> = (request: Req) => Promise<Res>

/** The Operator service as promises. */
export interface OperatorClient {
  putRoute: Unary<Partial<pb.PutRouteRequest> & { routeJson: string }, pb.ChangeResponse>
  getRoute: Unary<pb.GetRouteRequest, pb.GetRouteResponse>
  listRoutes: Unary<pb.ListRoutesRequest, pb.ListRoutesResponse>
  deleteRoute: Unary<Partial<pb.DeleteRouteRequest> & { name: string }, pb.ChangeResponse>
  putCluster: Unary<Partial<pb.PutClusterRequest> & { clusterJson: string }, pb.ChangeResponse>
  getCluster: Unary<pb.GetClusterRequest, pb.GetClusterResponse>
  listClusters: Unary<pb.ListClustersRequest, pb.ListClustersResponse>
  deleteCluster: Unary<Partial<pb.DeleteClusterRequest> & { name: string }, pb.ChangeResponse>
  validateConfig: Unary<pb.ValidateConfigRequest, pb.ValidateConfigResponse>
  getConfig: Unary<Partial<pb.GetConfigRequest>, pb.GetConfigResponse>
  putConfig: Unary<Partial<pb.PutConfigRequest> & { configJson: string }, pb.ChangeResponse>
  listHistory: Unary<Partial<pb.ListHistoryRequest>, pb.ListHistoryResponse>
  rollback: Unary<Partial<pb.RollbackRequest> & { version: number }, pb.ChangeResponse>
  listAudit: Unary<Partial<pb.ListAuditRequest>, pb.ListAuditResponse>
  getFleet: Unary<pb.GetFleetRequest, pb.GetFleetResponse>
  getTraffic: Unary<pb.GetTrafficRequest, pb.GetTrafficResponse>
  putOverlay: Unary<Partial<pb.PutOverlayRequest> & { overlayJson: string }, pb.ChangeResponse>
  listOverlays: Unary<pb.ListOverlaysRequest, pb.ListOverlaysResponse>
  deleteOverlay: Unary<Partial<pb.DeleteOverlayRequest> & { name: string }, pb.ChangeResponse>
  getAnalytics: Unary<Partial<pb.GetAnalyticsRequest>, pb.GetAnalyticsResponse>
  getSeries: Unary<Partial<pb.GetSeriesRequest> & { route: string }, pb.GetSeriesResponse>
  getForecast: Unary<Partial<pb.GetForecastRequest> & { route: string }, pb.GetForecastResponse>
  setWeightHints: Unary<Partial<pb.SetWeightHintsRequest> & { cluster: string }, pb.SetWeightHintsResponse>
  listWeightHints: Unary<Partial<pb.ListWeightHintsRequest>, pb.ListWeightHintsResponse>
  putRule: Unary<Partial<pb.PutRuleRequest> & { ruleJson: string }, pb.PutRuleResponse>
  listRules: Unary<pb.ListRulesRequest, pb.ListRulesResponse>
  deleteRule: Unary<Partial<pb.DeleteRuleRequest> & { name: string }, pb.PutRuleResponse>
  backtestRule: Unary<Partial<pb.BacktestRuleRequest>, pb.BacktestRuleResponse>
  close (): void
}

const METHODS = ['PutRoute', 'GetRoute', 'ListRoutes', 'DeleteRoute', 'PutCluster', 'GetCluster', 'ListClusters', 'DeleteCluster',
  'ValidateConfig', 'GetConfig', 'PutConfig', 'ListHistory', 'Rollback', 'ListAudit', 'GetFleet', 'GetTraffic',
  'PutOverlay', 'ListOverlays', 'DeleteOverlay', 'GetAnalytics', 'GetSeries', 'GetForecast',
  'SetWeightHints', 'ListWeightHints', 'PutRule', 'ListRules', 'DeleteRule', 'BacktestRule'] as const

/**
 * A promise-based Operator client (for `outrider-cp ctl`, scripts and tests).
 * Errors are gRPC ServiceErrors with `issues` decoded from the trailer.
 *
 * @example
 * const op = createOperatorClient('127.0.0.1:50051', { token: process.env.OUTRIDER_CP_TOKEN })
 * await op.putRoute({ routeJson: JSON.stringify({ name: 'api', match: { pathPrefix: '/api' }, cluster: 'api' }) })
 */
export function createOperatorClient (address: string, options: ConnectOptions = {}): OperatorClient {
  // GetConfig and ListHistory return whole documents: as large as a push may be.
  const client = new (services().Operator)(address, channelCredentials(options), { 'grpc.max_receive_message_length': MAX_PUSH_BYTES }) as unknown as Record<string, (req: unknown, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void> & grpc.Client
  const call = (method: string) => (request: unknown): Promise<never> => new Promise((resolve, reject) => {
    const fn = client[method]
    if (fn === undefined) { reject(new Error(`no method ${method}`)); return }
    fn.call(client, request, tokenMetadata(options.token), (err, res) => {
      if (err !== null) { reject(withIssues(err)); return }
      resolve(res as never)
    })
  })
  const out: Record<string, unknown> = { close: () => { client.close() } }
  for (const m of METHODS) out[m[0]?.toLowerCase() + m.slice(1)] = call(m)
  return out as unknown as OperatorClient
}

function withIssues (err: grpc.ServiceError): CallError {
  let issues: ConfigIssue[] = []
  const raw = err.metadata?.get(ISSUES_TRAILER)[0]
  if (Buffer.isBuffer(raw)) {
    try { issues = JSON.parse(raw.toString('utf8')) as ConfigIssue[] } catch { issues = [] }
  }
  return Object.assign(err, { issues })
}
