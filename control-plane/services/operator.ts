import * as grpc from '@grpc/grpc-js'
import type { Logger } from '../../src/log.ts'
import { services } from '../protos.ts'
import type { TokenTable } from '../auth.ts'
import type { ChangeOptions, DesiredConfig, Edit } from '../desired-config.ts'
import { BadRequestError, InvalidConfigError, NotFoundError } from '../errors.ts'
import type { Fleet } from '../fleet.ts'
import type { ConfigVersion } from '../store.ts'
import { latencyMs, type Analytics } from '../analytics.ts'
import { parseDuration } from '../duration.ts'
import { MAX_HORIZON_SECONDS, type RouteForecasts } from '../route-forecast.ts'
import type { RuleEngine } from '../rule-engine.ts'
import { backtest } from '../backtest.ts'
import { parseRule, type ActionChange } from '../rules.ts'
import type { TrafficTotals } from '../traffic.ts'
import { contentHash, parseJsonText, validateDocument } from '../validate.ts'
import type * as pb from '../generated/types.ts'
import { authorize, unary } from './status.ts'

export interface OperatorDeps {
  desired: DesiredConfig
  fleet: Fleet
  traffic: TrafficTotals
  analytics: Analytics
  forecasts: RouteForecasts
  rules: RuleEngine
  tokens: TokenTable | undefined
  log: Logger
}

/**
 * `outrider.v1.Operator`: reads and changes the desired config, its history,
 * the audit log and the fleet view. Each method checks the caller's role
 * first; the logic lives in DesiredConfig and Fleet.
 */
export function register (server: grpc.Server, deps: OperatorDeps): void {
  const { desired, fleet, traffic, analytics, forecasts, rules, tokens, log } = deps
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
        if (req.version === 0) return { version: 0, contentHash: '', configJson: '', createdAt: '', author: '', overlays: [] }
        throw new NotFoundError(`version ${req.version} is not retained`)
      }
      const doc = req.compose ? desired.documentFor(req.labels, v) : undefined
      return {
        version: v.version,
        contentHash: doc?.hash ?? v.hash,
        configJson: JSON.stringify(doc?.document ?? v.document),
        createdAt: v.createdAt,
        author: v.author,
        overlays: doc?.overlays ?? [],
      }
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
        nodes: fleet.list().map((n) => ({ ...n, nackError: n.nackError ?? null, inSync: n.ackedHash !== '' && n.ackedHash === desired.documentFor(n.labels)?.hash })),
      }
    }),
    GetTraffic: unary<pb.GetTrafficRequest, pb.GetTrafficResponse>(log, (_req, call) => {
      as(call, 'viewer')
      return { routes: traffic.totals() }
    }),
    GetAnalytics: unary<pb.GetAnalyticsRequest, pb.GetAnalyticsResponse>(log, (req, call) => {
      as(call, 'viewer')
      const window = parseDuration(req.window === '' ? '1m' : req.window)
      if (window === undefined || window <= 0) throw new BadRequestError(`window: a duration such as 1m, 5m or 1h (got "${req.window}")`)
      const at = analytics.now()
      return { routes: analytics.window(window, req.route === '' ? undefined : req.route, at), at: new Date(at * 1000).toISOString() }
    }),
    GetSeries: unary<pb.GetSeriesRequest, pb.GetSeriesResponse>(log, (req, call) => {
      as(call, 'viewer')
      const route = required(req.route, 'route')
      const tier = req.stepSeconds === 0 ? analytics.tiers.at(-1) : analytics.tiers.find((t) => t.stepSeconds === req.stepSeconds)
      if (tier === undefined) throw new BadRequestError(`step_seconds: one of ${analytics.tiers.map((t) => t.stepSeconds).join(', ')} (or 0)`)
      const bounds = analytics.bounds(route) ?? []
      const points = analytics.series(route, tier.stepSeconds)
      return {
        stepSeconds: tier.stepSeconds,
        points: (req.limit > 0 ? points.slice(-req.limit) : points).map((p) => ({ t: p.t, requests: p.requests, errors: p.errors, p99Ms: latencyMs(0.99, bounds, p.buckets) })),
      }
    }),
    GetForecast: unary<pb.GetForecastRequest, pb.GetForecastResponse>(log, async (req, call) => {
      as(call, 'viewer')
      const route = required(req.route, 'route')
      const horizon = parseDuration(req.horizon === '' ? '1h' : req.horizon)
      if (horizon === undefined || horizon <= 0 || horizon > MAX_HORIZON_SECONDS) throw new BadRequestError(`horizon: a duration up to 7d such as 15m or 1h (got "${req.horizon}")`)
      if (req.level < 0 || req.level >= 1) throw new BadRequestError('level: in (0, 1), e.g. 0.9')
      const f = await forecasts.get(route, { horizonSeconds: horizon, level: req.level === 0 ? 0.9 : req.level })
      if (f === undefined) throw new NotFoundError(`no complete traffic interval for route "${route}" yet`)
      return { ...f, anomalous: f.anomalyScore >= 0.5 }
    }),
    SetWeightHints: unary<pb.SetWeightHintsRequest, pb.SetWeightHintsResponse>(log, async (req, call) => {
      const actor = as(call, 'operator')
      const cluster = required(req.cluster, 'cluster')
      const r = await desired.setWeightHints(actor, cluster, Object.fromEntries(req.hints.map((h) => [h.endpoint, h.weight])), { replace: req.replace, dryRun: req.dryRun, message: req.message })
      if (r.changed && !req.dryRun) log.info('weight hints changed', { actor, cluster, hints: r.hints })
      return { hints: flattenHints({ [cluster]: r.hints }), changed: r.changed }
    }),
    ListWeightHints: unary<pb.ListWeightHintsRequest, pb.ListWeightHintsResponse>(log, (req, call) => {
      as(call, 'viewer')
      return { hints: flattenHints(desired.weightHints()).filter((h) => req.cluster === '' || h.cluster === req.cluster) }
    }),
    PutRule: unary<pb.PutRuleRequest, pb.PutRuleResponse>(log, async (req, call) => {
      const actor = as(call, 'operator')
      const r = await rules.put(actor, json(req.ruleJson, 'a rule'), { dryRun: req.dryRun, message: req.message })
      if (r.changed && !req.dryRun) log.info('rule stored', { actor, rule: r.rule.name })
      return { changed: r.changed }
    }),
    ListRules: unary<pb.ListRulesRequest, pb.ListRulesResponse>(log, (_req, call) => {
      as(call, 'viewer')
      return {
        rules: rules.status().sort((a, b) => b.rule.priority - a.rule.priority || a.rule.name.localeCompare(b.rule.name)).map((s) => ({
          name: s.rule.name,
          ruleJson: JSON.stringify(s.source),
          holding: s.holding,
          lastFiredAt: s.lastFiredAt === undefined ? '' : new Date(s.lastFiredAt * 1000).toISOString(),
          lastValues: definedValues(s.lastValues),
          firings: s.firings,
          alertsDelivered: s.alerts.delivered,
          alertsFailed: s.alerts.failed,
        })),
      }
    }),
    DeleteRule: unary<pb.DeleteRuleRequest, pb.PutRuleResponse>(log, async (req, call) => {
      const actor = as(call, 'operator')
      await rules.delete(actor, required(req.name, 'name'), { dryRun: req.dryRun, message: req.message })
      return { changed: true }
    }),
    BacktestRule: unary<pb.BacktestRuleRequest, pb.BacktestRuleResponse>(log, async (req, call) => {
      as(call, 'viewer')
      let source: unknown
      if (req.ruleJson !== '') source = json(req.ruleJson, 'a rule')
      else {
        source = rules.rules().find((r) => r.rule.name === required(req.name, 'name or rule_json'))?.source
        if (source === undefined) throw new NotFoundError(`no rule "${req.name}"`)
      }
      const rule = parseRule(source)
      const range = req.range === '' ? Infinity : parseDuration(req.range)
      if (range === undefined) throw new BadRequestError(`range: a duration such as 24h or 7d (got "${req.range}")`)
      if (req.stepSeconds !== 0 && !analytics.tiers.some((t) => t.stepSeconds === req.stepSeconds)) throw new BadRequestError(`step_seconds: one of ${analytics.tiers.map((t) => t.stepSeconds).join(', ')} (or 0)`)
      const now = analytics.now()
      const r = await backtest(rule, analytics, { fromSeconds: now - range, toSeconds: now, stepSeconds: req.stepSeconds === 0 ? undefined : req.stepSeconds, document: desired.current?.document ?? {} })
      return {
        stepSeconds: r.stepSeconds,
        evaluations: r.evaluations,
        firings: r.firings.map((f) => ({ at: new Date(f.t * 1000).toISOString(), values: definedValues(f.values), changes: f.changes.map(ruleChange), errors: f.errors })),
      }
    }),
    PutOverlay: unary<pb.PutOverlayRequest, pb.ChangeResponse>(log, (req, call) => {
      const actor = as(call, 'operator')
      return change(actor, { action: 'put_overlay', overlay: json(req.overlayJson, 'an overlay') }, req.options)
    }),
    ListOverlays: unary<pb.ListOverlaysRequest, pb.ListOverlaysResponse>(log, (_req, call) => {
      as(call, 'viewer')
      return { overlaysJson: desired.overlays().map((o) => JSON.stringify(o)), version: desired.current?.version ?? 0 }
    }),
    DeleteOverlay: unary<pb.DeleteOverlayRequest, pb.ChangeResponse>(log, (req, call) => {
      const actor = as(call, 'operator')
      return change(actor, { action: 'delete_overlay', name: required(req.name, 'name') }, req.options)
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

/** cluster → endpoint → weight as a sorted list. */
export function flattenHints (hints: Record<string, Record<string, number>>): pb.WeightHint[] {
  return Object.keys(hints).sort().flatMap((cluster) => Object.keys(hints[cluster] ?? {}).sort().map((endpoint) => ({ cluster, endpoint, weight: hints[cluster]?.[endpoint] ?? 0 })))
}

function definedValues (values: Record<string, number | undefined>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [k, v] of Object.entries(values)) if (v !== undefined) out[k] = v
  return out
}

function ruleChange (c: ActionChange): pb.RuleChange {
  return { path: c.path, beforeJson: JSON.stringify(c.before ?? null), afterJson: JSON.stringify(c.after ?? null) }
}
