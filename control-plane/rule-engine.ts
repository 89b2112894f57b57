import type { Logger } from '../src/log.ts'
import type { Analytics } from './analytics.ts'
import type { DesiredConfig, RuleEdit } from './desired-config.ts'
import { InvalidConfigError, NotFoundError } from './errors.ts'
import type { RouteForecasts } from './route-forecast.ts'
import { applyActions, describeValues, evaluate, initialState, parseRule, redactRule, type ActionChange, type ActionsResult, type Observation, type Rule, type RuleState } from './rules.ts'
import { canonicalJson, validateDocument, type ConfigDocument } from './validate.ts'
import { ejectedCount, ejectionState } from './ejections.ts'
import { WebhookSender, redactUrl, type WebhookSenderOptions } from './webhook.ts'

export interface RuleEngineOptions {
  desired: DesiredConfig
  analytics: Analytics
  forecasts: RouteForecasts
  log: Logger
  /** Evaluation period (ms); 0 disables the timer (tests call tick()). Default 10 s. */
  intervalMs?: number
  /** Clock (ms). */
  now?: () => number
  /** Whether this replica may run the rules now (a shared store's lease); absent: always. */
  mayRun?: () => Promise<boolean>
  /** Webhook back-off and bound (webhook.ts). */
  webhooks?: Omit<WebhookSenderOptions, 'log'>
}

/** What the engine knows of one rule, for ListRules. */
export interface RuleStatus {
  /** As the operator put it. */
  source: unknown
  rule: Rule
  /** Every condition holds for its duration right now. */
  holding: boolean
  lastFiredAt: number | undefined
  lastValues: Record<string, number | undefined>
  /** Firings since the control plane started. */
  firings: number
  /** Its webhook deliveries since the control plane started. */
  alerts: { delivered: number, failed: number }
}

/** One firing (or suppression) of one evaluation, for logs and tests. */
export interface Firing {
  rule: string
  /** refused: every config action was refused (e.g. ejecting a cluster's last endpoint); the errors say why. */
  outcome: 'applied' | 'dry-run' | 'suppressed' | 'failed' | 'refused'
  version?: number
  changes: ActionChange[]
  errors: string[]
}

interface Entry {
  key: string
  state: RuleState
  lastValues: Record<string, number | undefined>
  holding: boolean
  firings: number
  alerts: { delivered: number, failed: number }
}

/**
 * Runs the stored rules every `intervalMs`: highest priority first; a
 * firing's config actions become one versioned change by `rule:<name>`
 * (so it is pushed, audited and can be rolled back like any other), its
 * weight hints go the run-time way, and every firing gets a `rule_fired`
 * audit record with the values that made it. A lower-priority rule whose
 * actions touch what a higher one changed in the same evaluation is
 * suppressed, so two rules never fight over one field in one step.
 */
export class RuleEngine {
  readonly #o: RuleEngineOptions
  readonly #now: () => number
  #entries = new Map<string, Entry>()
  #timer: NodeJS.Timeout | undefined
  #running: Promise<Firing[]> | undefined
  #leader = false
  /** Rule webhooks: sent off the evaluation's path. */
  readonly webhooks: WebhookSender

  constructor (options: RuleEngineOptions) {
    this.#o = options
    this.#now = options.now ?? Date.now
    this.webhooks = new WebhookSender({ log: options.log, ...options.webhooks })
  }

  start (): void {
    const ms = this.#o.intervalMs ?? 10_000
    if (ms <= 0) return
    this.#timer = setInterval(() => { this.tick().catch((err: unknown) => { this.#o.log.error('rule evaluation failed', { err }) }) }, ms)
    this.#timer.unref()
  }

  /** Stops evaluating and aborts webhook deliveries in flight. */
  stop (): void {
    clearInterval(this.#timer)
    this.webhooks.close()
  }

  /** The stored rules, parsed, with their sources. */
  rules (): Array<{ source: unknown, rule: Rule }> {
    return this.#o.desired.rules().map((source) => ({ source, rule: parseRule(source) }))
  }

  status (): RuleStatus[] {
    return this.rules().map(({ source, rule }) => {
      const e = this.#entries.get(rule.name)
      return { source: redactRule(source), rule, holding: e?.holding ?? false, lastFiredAt: e?.state.lastFiredAt, lastValues: e?.lastValues ?? {}, firings: e?.firings ?? 0, alerts: { ...(e?.alerts ?? { delivered: 0, failed: 0 }) } }
    })
  }

  /**
   * Validates and stores a rule (replacing the one of that name). Its
   * actions are tried on the current document, whose result MUST pass the
   * schema: a rule that could only ever fail is refused now, not at 3 a.m.
   */
  async put (actor: string, source: unknown, options: { dryRun?: boolean, message?: string } = {}): Promise<{ rule: Rule, changed: boolean }> {
    const rule = parseRule(source)
    const trial = applyActions(rule, this.#o.desired.current?.document ?? {}, this.#context())
    const v = validateDocument(trial.document)
    if (!v.ok) {
      throw new InvalidConfigError(v.issues.map((i) => ({ path: i.path, expected: `${i.expected} (in the document rule "${rule.name}" would make)` })))
    }
    const rules = this.#o.desired.rules()
    const at = rules.findIndex((r) => (r as { name?: unknown }).name === rule.name)
    const before = at === -1 ? undefined : rules[at]
    if (before !== undefined && canonicalJson(before) === canonicalJson(source)) return { rule, changed: false }
    if (options.dryRun === true) return { rule, changed: true }
    const next = at === -1 ? [...rules, source] : rules.map((r, i) => i === at ? source : r)
    // Webhook secrets stay out of the audit log.
    await this.#o.desired.setRules(actor, 'put_rule', rule.name, next, redactRule(before), redactRule(source), options.message)
    return { rule, changed: true }
  }

  async delete (actor: string, name: string, options: { dryRun?: boolean, message?: string } = {}): Promise<void> {
    const rules = this.#o.desired.rules()
    const before = rules.find((r) => (r as { name?: unknown }).name === name)
    if (before === undefined) throw new NotFoundError(`no rule "${name}"`)
    if (options.dryRun === true) return
    await this.#o.desired.setRules(actor, 'delete_rule', name, rules.filter((r) => r !== before), redactRule(before), undefined, options.message)
    this.#entries.delete(name)
  }

  /** One evaluation of every enabled rule (serialised: a slow one is not overlapped). */
  tick (): Promise<Firing[]> {
    const run = (this.#running ?? Promise.resolve([])).then(() => this.#tick())
    this.#running = run.catch(() => [])
    return run
  }

  async #tick (): Promise<Firing[]> {
    const leader = this.#o.mayRun === undefined || await this.#o.mayRun().catch(() => false)
    // Taking over from another replica: what this one remembered is stale (cooldowns are re-read from the audit log).
    const takeover = leader && !this.#leader
    if (takeover) this.#entries.clear()
    this.#leader = leader
    if (!leader) return []
    const now = this.#now() / 1000
    await this.#readmit(now)
    const rules = this.rules().map((r) => r.rule).filter((r) => r.enabled).sort((a, b) => b.priority - a.priority || a.name.localeCompare(b.name))
    const claimed = new Map<string, string>()
    const firings: Firing[] = []
    for (const rule of rules) {
      const entry = this.#entry(rule, takeover)
      const ev = evaluate(rule, entry.state, await this.#observe(rule, now), now)
      entry.lastValues = ev.values
      entry.holding = ev.holds
      if (!ev.fire) continue
      const result = applyActions(rule, this.#o.desired.current?.document ?? {}, this.#context())
      const actor = `rule:${rule.name}`
      const message = `rule ${rule.name} fired: ${describeValues(ev.values)}`
      const taken = result.targets.find((t) => claimed.has(t))
      if (taken !== undefined) {
        this.#o.log.info('rule suppressed: a higher-priority rule changed the same thing in this evaluation', { rule: rule.name, by: claimed.get(taken), target: taken })
        firings.push({ rule: rule.name, outcome: 'suppressed', changes: [], errors: [] })
        continue
      }
      entry.state.lastFiredAt = now
      entry.firings++
      for (const t of result.targets) claimed.set(t, rule.name)
      // What the actions did to the document the change ran on (the evaluated one unless a change came between).
      let applied = result
      const firing: Firing = { rule: rule.name, outcome: 'applied', changes: [], errors: [] }
      try {
        if (!rule.dryRun) {
          if (result.changes.some((c) => !c.path.startsWith('hint:'))) {
            const apply = (document: ConfigDocument): RuleEdit => {
              applied = applyActions(rule, document, this.#context())
              const ejections = applied.ejections.map((e) => ({ cluster: e.cluster, endpoint: e.endpoint, rule: rule.name, ...(e.readmitAfterSeconds === undefined ? {} : { readmitAt: (now + e.readmitAfterSeconds) * 1000 }) }))
              return { document: applied.document, ejections }
            }
            const r = await this.#o.desired.change(actor, { action: 'apply_rule', name: rule.name, apply }, { message })
            if (r.changed) firing.version = r.version
          }
          for (const h of applied.hints) await this.#o.desired.setWeightHints(actor, h.cluster, h.hints, { replace: h.replace, message })
        }
        Object.assign(firing, outcomeOf(rule, applied))
        await this.#o.desired.recordAudit(actor, 'rule_fired', rule.name, summarise(rule, applied), { after: applied.changes, message })
        if (firing.outcome === 'refused') this.#o.log.warn('rule fired but its actions were refused', { rule: rule.name, errors: applied.errors })
        this.#o.log.info('rule fired', { rule: rule.name, dryRun: rule.dryRun, version: firing.version, values: ev.values })
      } catch (err) {
        firing.outcome = 'failed'
        firing.changes = applied.changes
        firing.errors = [...applied.errors, (err as Error).message]
        this.#o.log.error('rule fired but its change failed', { rule: rule.name, err })
        await this.#o.desired.recordAudit(actor, 'rule_failed', rule.name, `the change failed: ${(err as Error).message}`, { message }).catch(() => {})
      }
      this.#alert(rule, entry, firing, ev.values, applied, now)
      firings.push(firing)
    }
    return firings
  }

  /** Counts of endpoints still ejected, for maxEjectedPercent. */
  #context (): { ejected: (cluster: string) => number } {
    const doc = this.#o.desired.current?.document
    const ejections = this.#o.desired.ejections()
    return { ejected: (cluster) => ejectedCount(doc, ejections, cluster) }
  }

  /**
   * Puts back the endpoints whose `readmitAfter` passed, each as a version
   * by the rule that ejected it; forgets those that came back another way
   * (a rollback, an operator), so a later removal is not undone.
   */
  async #readmit (now: number): Promise<void> {
    const { desired, log } = this.#o
    for (const e of desired.ejections()) {
      const actor = `rule:${e.rule}`
      const state = ejectionState(desired.current?.document, e)
      try {
        if (state === 'back') await desired.forgetEjection(actor, e, 'back in the cluster (a rollback or an operator change): no readmission')
        else if (state === 'gone') await desired.forgetEjection(actor, e, 'the cluster is gone')
        else if (e.readmitAt !== undefined && e.readmitAt <= now * 1000) {
          const r = await desired.change(actor, { action: 'readmit_endpoint', ejection: e }, { message: `readmitted after rule ${e.rule} ejected it in v${e.version}` })
          log.info('ejected endpoint readmitted', { rule: e.rule, cluster: e.cluster, endpoint: e.endpoint.url, version: r.version })
        }
      } catch (err) {
        log.error('readmitting an ejected endpoint failed (tried again next evaluation)', { rule: e.rule, cluster: e.cluster, endpoint: e.endpoint.url, err })
      }
    }
  }

  /** Sends the firing's webhooks, off the evaluation's path. */
  #alert (rule: Rule, entry: Entry, firing: Firing, values: Record<string, number | undefined>, result: ActionsResult, now: number): void {
    if (result.alerts.length === 0) return
    const route = (this.#o.desired.routes().find((r) => r.name === rule.route))
    const body = {
      rule: rule.name,
      ...(rule.description === undefined ? {} : { description: rule.description }),
      route: rule.route,
      ...(typeof route?.cluster === 'string' ? { cluster: route.cluster } : {}),
      conditions: rule.when.map((c) => c.text),
      values,
      firedAt: new Date(now * 1000).toISOString(),
      dryRun: rule.dryRun,
      outcome: firing.outcome,
      ...(firing.version === undefined ? {} : { version: firing.version }),
      changes: firing.changes,
      errors: firing.errors,
    }
    for (const a of result.alerts) {
      this.webhooks.send({ url: a.url, headers: a.headers, timeoutSeconds: a.timeout, retries: a.retries }, body, (outcome) => {
        if (outcome === 'delivered') entry.alerts.delivered++
        else entry.alerts.failed++
      })
    }
  }

  /**
   * A rule's memory, started afresh when its definition changes. On the
   * first evaluation after a start or a takeover, its cooldown runs from the
   * last firing recorded in the audit log (possibly by another replica).
   */
  #entry (rule: Rule, takeover: boolean): Entry {
    const key = canonicalJson(rule)
    let e = this.#entries.get(rule.name)
    if (e === undefined || e.key !== key) {
      const state = initialState(rule)
      if (takeover) {
        const last = this.#o.desired.audit().find((a) => a.action === 'rule_fired' && a.actor === `rule:${rule.name}`)
        if (last !== undefined) state.lastFiredAt = Date.parse(last.at) / 1000
      }
      e = { key, state, lastValues: {}, holding: false, firings: e?.firings ?? 0, alerts: e?.alerts ?? { delivered: 0, failed: 0 } }
      this.#entries.set(rule.name, e)
    }
    return e
  }

  async #observe (rule: Rule, now: number): Promise<Observation> {
    const { analytics, forecasts } = this.#o
    const stats = analytics.window(rule.window, rule.route, now)[0]
    const uses = new Set(rule.when.map((c) => c.metric))
    // One forecast to the farthest horizon asked serves every condition and the anomaly score. A route's first
    // fit is done in slices: the streams are served while this rule waits for it.
    const horizon = Math.max(1, ...rule.when.map((c) => c.horizonSeconds ?? 0))
    const f = uses.has('anomaly') || uses.has('forecastRps') ? await forecasts.get(rule.route, { horizonSeconds: horizon }) : undefined
    const anomaly = uses.has('anomaly') ? f?.anomalyScore : undefined
    return {
      requests: stats?.requests ?? 0,
      errors: stats?.errors ?? 0,
      spanSeconds: rule.window,
      bounds: stats?.latencyBounds ?? [],
      buckets: stats?.latencyCounts ?? [],
      ...(anomaly === undefined ? {} : { anomaly }),
      forecastRps: (h) => f?.points[Math.max(1, Math.ceil(h / f.stepSeconds)) - 1]?.rate,
    }
  }
}

/** A firing's outcome, changes and errors; refused: every config action was (nothing changed, something could not). */
function outcomeOf (rule: Rule, result: ActionsResult): Pick<Firing, 'outcome' | 'changes' | 'errors'> {
  const refused = result.changes.length === 0 && result.errors.length > 0
  return { outcome: rule.dryRun ? 'dry-run' : refused ? 'refused' : 'applied', changes: result.changes, errors: result.errors }
}

/** What a firing did, for the `rule_fired` audit record (webhook URLs redacted). */
function summarise (rule: Rule, result: ActionsResult): string {
  const changes = result.changes.map((c) => `${c.path} ${JSON.stringify(c.before)} → ${JSON.stringify(c.after)}`).join('; ') || 'nothing'
  const alerts = result.alerts.length === 0 ? '' : `; alert to ${result.alerts.map((a) => redactUrl(a.url)).join(', ')}`
  const errors = result.errors.length === 0 ? '' : ` (could not: ${result.errors.join('; ')})`
  return `${rule.dryRun ? 'dry run: would change' : 'changed'} ${changes}${errors}${alerts}`
}
