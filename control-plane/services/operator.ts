import * as grpc from '@grpc/grpc-js'
import type { Logger } from '../../src/log.ts'
import { services } from '../protos.ts'
import type { TokenTable } from '../auth.ts'
import type { ChangeOptions, DesiredConfig, Edit } from '../desired-config.ts'
import { BadRequestError, InvalidConfigError, NotFoundError } from '../errors.ts'
import type { Fleet } from '../fleet.ts'
import type { ConfigVersion } from '../store.ts'
import type { TrafficTotals } from '../traffic.ts'
import { contentHash, parseJsonText, validateDocument } from '../validate.ts'
import type * as pb from '../generated/types.ts'
import { authorize, unary } from './status.ts'

export interface OperatorDeps {
  desired: DesiredConfig
  fleet: Fleet
  traffic: TrafficTotals
  tokens: TokenTable | undefined
  log: Logger
}

/**
 * `outrider.v1.Operator`: reads and changes the desired config, its history,
 * the audit log and the fleet view. Each method checks the caller's role
 * first; the logic lives in DesiredConfig and Fleet.
 */
export function register (server: grpc.Server, deps: OperatorDeps): void {
  const { desired, fleet, traffic, tokens, log } = deps
  const as = (call: { metadata: grpc.Metadata }, role: 'viewer' | 'operator' | 'admin'): string => authorize(call.metadata, tokens, role).name

  const change = async (actor: string, edit: Edit, options: pb.ChangeOptions | null | undefined): Promise<pb.ChangeResponse> => {
    const r = await desired.change(actor, edit, changeOptions(options))
    if (r.changed && !r.dryRun) log.info('config changed', { version: r.version, actor, action: edit.action, summary: r.summary })
    return { version: r.version, contentHash: r.hash, changed: r.changed, dryRun: r.dryRun, summary: r.summary }
  }

  const handlers: grpc.UntypedServiceImplementation = {
    PutRoute: unary<pb.PutRouteRequest, pb.ChangeResponse>(log, (req, call) => {
      const actor = as(call, 'operator')
      return change(actor, { action: 'put_route', route: json(req.routeJson, 'a route'), before: req.before }, req.options)
    }),
    GetRoute: unary<pb.GetRouteRequest, pb.GetRouteResponse>(log, (req, call) => {
      as(call, 'viewer')
      const route = desired.routes().find((r) => r.name === required(req.name, 'name'))
      if (route === undefined) throw new NotFoundError(`no route "${req.name}"`)
      return { routeJson: JSON.stringify(route), version: desired.current?.version ?? 0 }
    }),
    ListRoutes: unary<pb.ListRoutesRequest, pb.ListRoutesResponse>(log, (_req, call) => {
      as(call, 'viewer')
      return { routesJson: desired.routes().map((r) => JSON.stringify(r)), version: desired.current?.version ?? 0 }
    }),
    DeleteRoute: unary<pb.DeleteRouteRequest, pb.ChangeResponse>(log, (req, call) => {
      const actor = as(call, 'operator')
      return change(actor, { action: 'delete_route', name: required(req.name, 'name') }, req.options)
    }),
    PutCluster: unary<pb.PutClusterRequest, pb.ChangeResponse>(log, (req, call) => {
      const actor = as(call, 'operator')
      return change(actor, { action: 'put_cluster', cluster: json(req.clusterJson, 'a cluster') }, req.options)
    }),
    GetCluster: unary<pb.GetClusterRequest, pb.GetClusterResponse>(log, (req, call) => {
      as(call, 'viewer')
      const cluster = desired.clusters().find((c) => c.name === required(req.name, 'name'))
      if (cluster === undefined) throw new NotFoundError(`no cluster "${req.name}"`)
      return { clusterJson: JSON.stringify(cluster), version: desired.current?.version ?? 0 }
    }),
    ListClusters: unary<pb.ListClustersRequest, pb.ListClustersResponse>(log, (_req, call) => {
      as(call, 'viewer')
      return { clustersJson: desired.clusters().map((c) => JSON.stringify(c)), version: desired.current?.version ?? 0 }
    }),
    DeleteCluster: unary<pb.DeleteClusterRequest, pb.ChangeResponse>(log, (req, call) => {
      const actor = as(call, 'operator')
      return change(actor, { action: 'delete_cluster', name: required(req.name, 'name') }, req.options)
    }),
    ValidateConfig: unary<pb.ValidateConfigRequest, pb.ValidateConfigResponse>(log, (req, call) => {
      as(call, 'viewer')
      const parsed = parseJsonText(req.configJson, 'a config document')
      if (!parsed.ok) return { valid: false, issues: parsed.issues, contentHash: '' }
      const v = validateDocument(parsed.value)
      return { valid: v.ok, issues: v.ok ? [] : v.issues, contentHash: contentHash(parsed.value) }
    }),
    GetConfig: unary<pb.GetConfigRequest, pb.GetConfigResponse>(log, (req, call) => {
      as(call, 'viewer')
      const v = req.version === 0 ? desired.current : desired.version(req.version)
      if (v === undefined) {
        if (req.version === 0) return { version: 0, contentHash: '', configJson: '', createdAt: '', author: '' }
        throw new NotFoundError(`version ${req.version} is not retained`)
      }
      return { version: v.version, contentHash: v.hash, configJson: JSON.stringify(v.document), createdAt: v.createdAt, author: v.author }
    }),
    PutConfig: unary<pb.PutConfigRequest, pb.ChangeResponse>(log, (req, call) => {
      const actor = as(call, 'admin')
      return change(actor, { action: 'put_config', document: json(req.configJson, 'a config document') }, req.options)
    }),
    ListHistory: unary<pb.ListHistoryRequest, pb.ListHistoryResponse>(log, (req, call) => {
      as(call, 'viewer')
      return { entries: desired.history(req.limit).map(historyEntry) }
    }),
    Rollback: unary<pb.RollbackRequest, pb.ChangeResponse>(log, (req, call) => {
      const actor = as(call, 'operator')
      if (req.version === 0) throw new BadRequestError('version: the version to roll back to')
      return change(actor, { action: 'rollback', version: req.version }, req.options)
    }),
    ListAudit: unary<pb.ListAuditRequest, pb.ListAuditResponse>(log, (req, call) => {
      as(call, 'viewer')
      return {
        entries: desired.audit(req.limit).map((a) => ({
          seq: a.seq,
          at: a.at,
          actor: a.actor,
          action: a.action,
          target: a.target,
          fromVersion: a.fromVersion,
          toVersion: a.toVersion,
          summary: a.summary,
          beforeJson: a.before === undefined ? '' : JSON.stringify(a.before),
          afterJson: a.after === undefined ? '' : JSON.stringify(a.after),
          message: a.message,
        })),
      }
    }),
    GetFleet: unary<pb.GetFleetRequest, pb.GetFleetResponse>(log, (_req, call) => {
      as(call, 'viewer')
      return {
        currentVersion: desired.current?.version ?? 0,
        nodes: fleet.list().map((n) => ({ ...n, nackError: n.nackError ?? null })),
      }
    }),
    GetTraffic: unary<pb.GetTrafficRequest, pb.GetTrafficResponse>(log, (_req, call) => {
      as(call, 'viewer')
      return { routes: traffic.totals() }
    }),
  }
  server.addService(services().Operator.service, handlers)
}

function changeOptions (o: pb.ChangeOptions | null | undefined): ChangeOptions {
  return { dryRun: o?.dryRun === true, ifVersion: o?.ifVersion ?? 0, message: o?.message ?? '' }
}

function json (text: string, what: string): unknown {
  const parsed = parseJsonText(text, what)
  if (!parsed.ok) throw new InvalidConfigError(parsed.issues)
  return parsed.value
}

function required (value: string, field: string): string {
  if (value === '') throw new BadRequestError(`${field}: a non-empty value`)
  return value
}

function historyEntry (v: ConfigVersion): pb.HistoryEntry {
  return { version: v.version, contentHash: v.hash, createdAt: v.createdAt, author: v.author, action: v.action, summary: v.summary, message: v.message }
}
