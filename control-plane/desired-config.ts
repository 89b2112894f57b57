import { BadRequestError, InvalidConfigError, NotFoundError, StoreError, VersionConflictError } from './errors.ts'
import { StaleStateError, emptyState, type AuditRecord, type ConfigVersion, type StateStore, type StoreState } from './store.ts'
import { compose, matching, parseOverlay, type Overlay } from './overlays.ts'
import { canonicalJson, contentHash, validateDocument, type ConfigDocument } from './validate.ts'
import { readmit, sameEjection, type Ejection } from './ejections.ts'
import type { ConfigIssue } from '../src/errors.ts'

/** A change an operator (or, later, a rule) asks for. */
export type Edit =
  | { action: 'put_route', route: unknown, before?: string }
  | { action: 'delete_route', name: string }
  | { action: 'put_cluster', cluster: unknown }
  | { action: 'delete_cluster', name: string }
  | { action: 'put_config', document: unknown }
  | { action: 'rollback', version: number }
  | { action: 'put_overlay', overlay: unknown }
  | { action: 'delete_overlay', name: string }
  /**
   * A rule's config actions (rule-engine.ts), run by the change on the base
   * document current then, so a change saved between the rule's evaluation
   * and its turn (an operator's, another replica's) is kept, not overwritten.
   */
  | { action: 'apply_rule', name: string, apply: (document: ConfigDocument) => RuleEdit }
  /** Puts back an endpoint a rule ejected (its readmitAfter passed). */
  | { action: 'readmit_endpoint', ejection: Ejection }

/** What a rule's actions made of a base document: the whole new one, and the endpoints they ejected. */
export interface RuleEdit {
  document: ConfigDocument
  ejections?: Array<Omit<Ejection, 'version'>>
}

/** What one node runs: the base document with the overlays its labels select. */
export interface NodeDocument {
  version: number
  document: ConfigDocument
  /** sha256 of the composed document's canonical JSON. */
  hash: string
  /** The overlays applied, in order. */
  overlays: string[]
  /**
   * Why the schema refuses the document these overlays make, if it does: a
   * combination no known node selected when the overlays were stored. It is
   * withheld from the node rather than sent to be NACKed.
   */
  issues?: ConfigIssue[]
}

export interface DesiredConfigOptions {
  historyLimit?: number
  auditLimit?: number
  /**
   * The label sets of the known data planes: a change is also validated for
   * each combination of overlays one of them selects (each overlay is always
   * validated on its own over the base).
   */
  labelSets?: () => Iterable<Readonly<Record<string, string>>>
}

export interface ChangeOptions {
  /** Validate and describe, store nothing. */
  dryRun?: boolean
  /** When set (non-zero), refuse unless this is the current version. */
  ifVersion?: number
  message?: string
}

export interface ChangeResult {
  version: number
  hash: string
  changed: boolean
  dryRun: boolean
  summary: string
}

type Named = { name: string } & Record<string, unknown>

const DEFAULT_HISTORY_LIMIT = 100
const DEFAULT_AUDIT_LIMIT = 10_000

/**
 * The config the fleet should run (a base document plus per-label overlays,
 * see overlays.ts), its retained history and the audit log. Every change is validated with the data plane's schema, gets the next
 * version, is saved to the store before it becomes current, and only then is
 * announced to subscribers (the discovery service pushes it). Changes are
 * serialised: versions never race.
 *
 * @example
 * const desired = await DesiredConfig.open(new FileStore('cp-store.json'))
 * await desired.change('alice', { action: 'put_cluster', cluster: { name: 'api', endpoints: [{ url: 'http://10.0.0.1' }] } })
 */
export class DesiredConfig {
  #store: StateStore
  #state: StoreState
  #historyLimit: number
  #auditLimit: number
  #queue: Promise<unknown> = Promise.resolve()
  #listeners = new Set<(v: ConfigVersion) => void>()
  #hintListeners = new Set<() => void>()
  #ruleListeners = new Set<() => void>()
  #labelSets: () => Iterable<Readonly<Record<string, string>>>
  #unwatch: (() => void) | undefined
  /** Composed documents of the current version, by overlay names: nodes with the same overlays share one. */
  #composed = new Map<string, NodeDocument>()

  private constructor (store: StateStore, state: StoreState, historyLimit: number, auditLimit: number, labelSets: () => Iterable<Readonly<Record<string, string>>>) {
    this.#store = store
    this.#state = state
    this.#historyLimit = historyLimit
    this.#auditLimit = auditLimit
    this.#labelSets = labelSets
  }

  static async open (store: StateStore, options: DesiredConfigOptions = {}): Promise<DesiredConfig> {
    const state = (await store.load()) ?? emptyState()
    const desired = new DesiredConfig(store, state, Math.max(1, options.historyLimit ?? DEFAULT_HISTORY_LIMIT), Math.max(1, options.auditLimit ?? DEFAULT_AUDIT_LIMIT), options.labelSets ?? (() => []))
    // Another replica's change: adopt it, which pushes it to our data planes.
    desired.#unwatch = store.watch?.(() => { desired.#serialised(() => desired.#reload()).catch(() => {}) })
    return desired
  }

  /** Stops following the store's changes. */
  close (): void {
    this.#unwatch?.()
    this.#unwatch = undefined
  }

  async #reload (): Promise<void> {
    const state = await this.#store.load()
    if (state !== undefined) this.#adopt(state)
  }

  /** The current overlays, in application order for a node they all select. */
  overlays (): Overlay[] {
    return [...(this.current?.overlays ?? [])].sort((a, b) => a.priority - b.priority || a.name.localeCompare(b.name))
  }

  /**
   * The document a node with `labels` runs at version `v` (the current one by
   * default); undefined when no config was ever stored.
   */
  documentFor (labels: Readonly<Record<string, string>>, v: ConfigVersion | undefined = this.current): NodeDocument | undefined {
    if (v === undefined) return undefined
    const selected = matching(v.overlays ?? [], labels)
    const names = selected.map((o) => o.name)
    const key = `${v.version}\0${names.join('\0')}`
    const cached = this.#composed.get(key)
    if (cached !== undefined) return cached
    const document = selected.length === 0 ? v.document : compose(v.document, selected)
    const result: NodeDocument = { version: v.version, document, hash: selected.length === 0 ? v.hash : contentHash(document), overlays: names }
    // The base and each overlay alone were validated when stored; a combination may not have been.
    if (selected.length > 1) {
      const validation = validateDocument(document)
      if (!validation.ok) result.issues = validation.issues.map((i) => ({ path: i.path, expected: `${i.expected} (in the document overlays ${names.map((n) => `"${n}"`).join(' + ')} make)` }))
    }
    if (v === this.current) {
      if (this.#composed.size > 256) this.#composed.clear()
      this.#composed.set(key, result)
    }
    return result
  }

  /** The current version, or undefined when no config was ever stored. */
  get current (): ConfigVersion | undefined {
    return this.#state.history.at(-1)
  }

  /** A retained version; undefined when it never existed or was trimmed. */
  version (n: number): ConfigVersion | undefined {
    return this.#state.history.find((v) => v.version === n)
  }

  /** Retained versions, newest first. */
  history (limit = 0): ConfigVersion[] {
    const h = [...this.#state.history].reverse()
    return limit > 0 ? h.slice(0, limit) : h
  }

  /** Audit records, newest first. */
  audit (limit = 0): AuditRecord[] {
    const a = [...this.#state.audit].reverse()
    return limit > 0 ? a.slice(0, limit) : a
  }

  routes (): Named[] { return listOf(this.current?.document, 'routes') }
  clusters (): Named[] { return listOf(this.current?.document, 'clusters') }

  /** Calls `listener` with every new current version. Returns the unsubscribe function. */
  subscribe (listener: (v: ConfigVersion) => void): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  /** Calls `listener` when the weight hints change. Returns the unsubscribe function. */
  onWeightHints (listener: () => void): () => void {
    this.#hintListeners.add(listener)
    return () => { this.#hintListeners.delete(listener) }
  }

  /** Calls `listener` when the rules change. Returns the unsubscribe function. */
  onRules (listener: () => void): () => void {
    this.#ruleListeners.add(listener)
    return () => { this.#ruleListeners.delete(listener) }
  }

  /** cluster → endpoint origin → weight (copies). */
  weightHints (): Record<string, Record<string, number>> {
    return structuredClone(this.#state.weightHints ?? {})
  }

  /** The stored rules (as validated by rules.ts). */
  rules (): unknown[] {
    return structuredClone(this.#state.rules ?? [])
  }

  /** Endpoints rules ejected (copies); some may be back by now (ejections.ts says which). */
  ejections (): Ejection[] {
    return structuredClone(this.#state.ejections ?? [])
  }

  /** Drops an ejection record without a version (its endpoint came back another way, or its cluster is gone); audited. */
  forgetEjection (actor: string, ejection: Ejection, why: string): Promise<void> {
    return this.#serialised(async () => {
      const ejections = (this.#state.ejections ?? []).filter((e) => !sameEjection(e, ejection))
      if (ejections.length === (this.#state.ejections ?? []).length) return
      await this.#commit({ ...this.#state, ejections }, this.#audit(actor, 'ejection_ended', ejection.cluster, `${String(ejection.endpoint.url)} of ${ejection.cluster}: ${why}`, ejection, undefined))
    })
  }

  /**
   * Sets (weight > 0) or clears (null or 0) weight hints for endpoints of a
   * cluster; with `replace`, hints not given are cleared. Hints steer
   * latency-aware balancers at run time: they are audited and stored, and
   * pushed to every data plane, but make no config version (a data plane
   * applies them without rebuilding its snapshot, keeping balancer state).
   */
  setWeightHints (actor: string, cluster: string, hints: Record<string, number | null>, options: { replace?: boolean, dryRun?: boolean, message?: string } = {}): Promise<{ hints: Record<string, number>, changed: boolean }> {
    return this.#serialised(async () => {
      const origins = this.#endpointOrigins(cluster)
      if (origins === undefined) throw new NotFoundError(`no cluster "${cluster}"`)
      const before = this.#state.weightHints?.[cluster] ?? {}
      const after: Record<string, number> = options.replace === true ? {} : { ...before }
      for (const [endpoint, weight] of Object.entries(hints)) {
        let origin: string
        try { origin = new URL(endpoint).origin } catch { throw new BadRequestError(`endpoint "${endpoint}": an endpoint URL of cluster "${cluster}"`) }
        if (!origins.has(origin)) throw new BadRequestError(`endpoint "${endpoint}" is not in cluster "${cluster}" (endpoints: ${[...origins].join(', ')})`)
        if (weight === null || weight === 0) delete after[origin]
        else if (Number.isFinite(weight) && weight > 0) after[origin] = weight
        else throw new BadRequestError(`weight of "${endpoint}": a positive number, or 0 to clear (got ${weight})`)
      }
      const changed = canonicalJson(before) !== canonicalJson(after)
      if (!changed || options.dryRun === true) return { hints: after, changed }
      const all = { ...this.#state.weightHints }
      if (Object.keys(after).length === 0) delete all[cluster]
      else all[cluster] = after
      const summary = `weight hints of ${cluster}: ${Object.entries(after).map(([e, w]) => `${e}=${w}`).join(', ') || 'none'}`
      await this.#commit({ ...this.#state, weightHints: all }, this.#audit(actor, 'set_weight_hints', cluster, summary, before, after, options.message))
      return { hints: after, changed }
    })
  }

  /** Replaces the rules (rules.ts validates them first); audited, no config version. */
  setRules (actor: string, action: string, target: string, rules: unknown[], before: unknown, after: unknown, message = ''): Promise<void> {
    return this.#serialised(() => this.#commit({ ...this.#state, rules }, this.#audit(actor, action, target, `${action} ${target}`, before, after, message)))
  }

  /** Adds an audit record alone (a dry-run rule firing, say): no version, nothing pushed. */
  recordAudit (actor: string, action: string, target: string, summary: string, details: { before?: unknown, after?: unknown, message?: string } = {}): Promise<AuditRecord> {
    return this.#serialised(async () => {
      const record = this.#audit(actor, action, target, summary, details.before, details.after, details.message)
      await this.#commit(this.#state, record)
      return record
    })
  }

  /** Endpoint origins of a cluster in the base document or any overlay; undefined when none has it. */
  #endpointOrigins (cluster: string): Set<string> | undefined {
    const base = this.current?.document ?? {}
    const docs = [base, ...(this.current?.overlays ?? []).map((o) => compose(base, [o]))]
    let found: Set<string> | undefined
    for (const doc of docs) {
      const c = listOf(doc, 'clusters').find((x) => x.name === cluster)
      if (c === undefined) continue
      found ??= new Set()
      for (const e of Array.isArray(c.endpoints) ? c.endpoints as Array<{ url?: unknown }> : []) {
        try { if (typeof e.url === 'string') found.add(new URL(e.url).origin) } catch {}
      }
    }
    return found
  }

  #audit (actor: string, action: string, target: string, summary: string, before: unknown, after: unknown, message = ''): AuditRecord {
    const v = this.current?.version ?? 0
    return {
      seq: this.#state.nextAuditSeq,
      at: new Date().toISOString(),
      actor,
      action,
      target,
      fromVersion: v,
      toVersion: v,
      summary,
      ...(before === undefined ? {} : { before }),
      ...(after === undefined ? {} : { after }),
      message,
    }
  }

  /** Saves `next` plus one audit record, then adopts it. Throws StoreError (nothing changed) when the store refuses. */
  async #commit (next: StoreState, record: AuditRecord): Promise<void> {
    const state: StoreState = { ...next, audit: [...next.audit, record].slice(-this.#auditLimit), nextAuditSeq: record.seq + 1 }
    try {
      await this.#store.save(state)
    } catch (err) {
      throw new StoreError(`the change could not be saved (${(err as Error).message}); nothing changed`, { cause: err })
    }
    this.#adopt(state)
  }

  /** Makes `next` the state and tells the listeners what changed in it. */
  #adopt (next: StoreState): void {
    const prev = this.#state
    this.#state = next
    if (prev.history.at(-1)?.version !== next.history.at(-1)?.version) {
      this.#composed.clear()
      const current = this.current
      if (current !== undefined) for (const listener of this.#listeners) listener(current)
    }
    if (canonicalJson(prev.weightHints ?? {}) !== canonicalJson(next.weightHints ?? {})) for (const l of this.#hintListeners) l()
    if (canonicalJson(prev.rules ?? []) !== canonicalJson(next.rules ?? [])) for (const l of this.#ruleListeners) l()
  }

  /**
   * Runs `fn` after every change queued before it. When a shared store says
   * another replica saved first, the state is reloaded and `fn` runs again on
   * it (so `if_version` and validation see the other change).
   */
  #serialised<T> (fn: () => Promise<T>): Promise<T> {
    const attempt = async (): Promise<T> => {
      for (let i = 0; ; i++) {
        try {
          return await fn()
        } catch (err) {
          const stale = err instanceof StaleStateError || (err instanceof StoreError && err.cause instanceof StaleStateError)
          if (!stale || i >= 10) throw err
          await this.#reload()
        }
      }
    }
    const run = this.#queue.then(attempt)
    this.#queue = run.catch(() => {})
    return run
  }

  /**
   * Applies `edit` on top of the current document. Throws InvalidConfigError
   * (with the schema's paths), NotFoundError, VersionConflictError,
   * or StoreError; on any of them nothing changed.
   */
  change (actor: string, edit: Edit, options: ChangeOptions = {}): Promise<ChangeResult> {
    return this.#serialised(() => this.#change(actor, edit, options))
  }

  async #change (actor: string, edit: Edit, options: ChangeOptions): Promise<ChangeResult> {
    const current = this.current
    const currentVersion = current?.version ?? 0
    if (options.ifVersion !== undefined && options.ifVersion !== 0 && options.ifVersion !== currentVersion) {
      throw new VersionConflictError(`the config is at version ${currentVersion}, not ${options.ifVersion}`)
    }
    const base: ConfigDocument = current === undefined ? {} : structuredClone(current.document)
    const baseOverlays = current?.overlays ?? []
    const { document, overlays = baseOverlays, target, before, after, ejections } = this.#edit(base, baseOverlays, edit)
    this.#validate(document, overlays)

    const hash = contentHash(document)
    const diff = [describeDiff(current?.document, document), describeOverlayDiff(baseOverlays, overlays)].filter((d) => d !== 'no change').join(' | ') || 'no change'
    const summary = edit.action === 'rollback' ? `rollback to v${edit.version}: ${diff}` : diff
    if (current !== undefined && hash === current.hash && canonicalJson(overlays) === canonicalJson(baseOverlays)) {
      return { version: currentVersion, hash, changed: false, dryRun: options.dryRun === true, summary: 'no change' }
    }
    const version = this.#state.nextVersion
    if (options.dryRun === true) return { version, hash, changed: true, dryRun: true, summary }

    const now = new Date().toISOString()
    const entry: ConfigVersion = { version, hash, document, ...(overlays.length > 0 ? { overlays } : {}), createdAt: now, author: actor, action: edit.action, summary, message: options.message ?? '' }
    const record: AuditRecord = { ...this.#audit(actor, edit.action, target, summary, before, after, options.message), at: now, toVersion: version }
    await this.#commit({
      ...this.#state,
      history: [...this.#state.history, entry].slice(-this.#historyLimit),
      nextVersion: version + 1,
      ...(ejections === undefined ? {} : { ejections: ejections.map((e) => ({ ...e, version: e.version === 0 ? version : e.version })) }),
    }, record)
    return { version, hash, changed: true, dryRun: false, summary }
  }

  /**
   * The base document MUST pass the schema, and so MUST every document an
   * overlay makes: each overlay alone, and each combination a known node selects.
   */
  #validate (document: ConfigDocument, overlays: readonly Overlay[]): void {
    const validation = validateDocument(document)
    if (!validation.ok) throw new InvalidConfigError(validation.issues)
    const check = (selected: Overlay[]): void => {
      const v = validateDocument(compose(document, selected))
      if (v.ok) return
      const names = selected.map((o) => `"${o.name}"`).join(' + ')
      throw new InvalidConfigError(v.issues.map((i) => ({ path: i.path, expected: `${i.expected} (in the document overlay ${names} makes)` })))
    }
    for (const o of overlays) check([o])
    const seen = new Set<string>()
    for (const labels of this.#labelSets()) {
      const selected = matching(overlays, labels)
      const key = selected.map((o) => o.name).join('\0')
      if (selected.length < 2 || seen.has(key)) continue
      seen.add(key)
      // A combination the running version already withholds (see documentFor)
      // stays withheld: it must not freeze every other change.
      if (this.current !== undefined && this.documentFor(labels)?.issues !== undefined) continue
      check(selected)
    }
  }

  /** The edited document (and overlays, when they change) plus what the audit log records about the edit. */
  #edit (doc: ConfigDocument, overlays: readonly Overlay[], edit: Edit): { document: ConfigDocument, overlays?: Overlay[], target: string, before?: unknown, after?: unknown, ejections?: Ejection[] } {
    switch (edit.action) {
      case 'apply_rule': {
        // Run again on the reloaded document when a shared store refuses the save as stale (#serialised).
        const { document, ejections } = edit.apply(doc)
        if (ejections === undefined || ejections.length === 0) return { document, target: edit.name }
        // Version 0: the one this change gets (#change fills it in).
        const added = ejections.map((e) => ({ ...e, version: 0 }))
        const kept = (this.#state.ejections ?? []).filter((e) => !added.some((a) => sameEjection(a, e)))
        return { document, target: edit.name, ejections: [...kept, ...added] }
      }
      case 'readmit_endpoint': {
        if (!readmit(doc, edit.ejection)) throw new NotFoundError(`no cluster "${edit.ejection.cluster}" to put ${String(edit.ejection.endpoint.url)} back into`)
        const ejections = (this.#state.ejections ?? []).filter((e) => !sameEjection(e, edit.ejection))
        return { document: doc, target: edit.ejection.cluster, after: edit.ejection.endpoint, ejections }
      }
      case 'put_overlay': {
        const overlay = parseOverlay(edit.overlay)
        const before = overlays.find((o) => o.name === overlay.name)
        return { document: doc, overlays: [...overlays.filter((o) => o.name !== overlay.name), overlay], target: overlay.name, before, after: overlay }
      }
      case 'delete_overlay': {
        const before = overlays.find((o) => o.name === edit.name)
        if (before === undefined) throw new NotFoundError(`no overlay "${edit.name}"`)
        return { document: doc, overlays: overlays.filter((o) => o.name !== edit.name), target: edit.name, before }
      }
      case 'put_route':
      case 'put_cluster': {
        const key = edit.action === 'put_route' ? 'routes' : 'clusters'
        const value = edit.action === 'put_route' ? edit.route : edit.cluster
        const name = nameOf(value, edit.action === 'put_route' ? 'route' : 'cluster')
        const list = listOf(doc, key)
        const at = list.findIndex((x) => x.name === name)
        const before = at === -1 ? undefined : list[at]
        if (edit.action === 'put_route' && edit.before !== undefined && edit.before !== '') {
          if (at !== -1) list.splice(at, 1)
          const pos = list.findIndex((x) => x.name === edit.before)
          if (pos === -1) throw new NotFoundError(`no route "${edit.before}" to insert before`)
          list.splice(pos, 0, value as Named)
        } else if (at === -1) list.push(value as Named)
        else list[at] = value as Named
        doc[key] = list
        return { document: doc, target: name, before, after: value }
      }
      case 'delete_route':
      case 'delete_cluster': {
        const key = edit.action === 'delete_route' ? 'routes' : 'clusters'
        const list = listOf(doc, key)
        const at = list.findIndex((x) => x.name === edit.name)
        if (at === -1) throw new NotFoundError(`no ${key === 'routes' ? 'route' : 'cluster'} "${edit.name}"`)
        const [before] = list.splice(at, 1)
        doc[key] = list
        return { document: doc, target: edit.name, before }
      }
      case 'put_config': {
        if (typeof edit.document !== 'object' || edit.document === null || Array.isArray(edit.document)) {
          throw new InvalidConfigError([{ path: '', expected: 'a config document (a JSON object)' }])
        }
        return { document: edit.document as ConfigDocument, target: '' }
      }
      case 'rollback': {
        const old = this.version(edit.version)
        if (old === undefined) {
          const kept = this.#state.history.map((v) => v.version)
          throw new NotFoundError(`version ${edit.version} is not retained (kept: ${kept.length === 0 ? 'none' : `v${kept[0]}–v${kept.at(-1)}`})`)
        }
        return { document: structuredClone(old.document), overlays: structuredClone(old.overlays ?? []), target: `v${edit.version}` }
      }
    }
  }
}

function nameOf (value: unknown, what: string): string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidConfigError([{ path: '', expected: `a ${what} (a JSON object)` }])
  }
  const name = (value as { name?: unknown }).name
  if (typeof name !== 'string' || name === '') throw new InvalidConfigError([{ path: 'name', expected: `the ${what}'s name (a non-empty string)` }])
  return name
}

function listOf (doc: ConfigDocument | undefined, key: 'routes' | 'clusters'): Named[] {
  const list = doc?.[key]
  if (!Array.isArray(list)) return []
  return [...(list as Named[])]
}

/** `routes: added api; changed web | clusters: removed old | listen changed`: what an operator needs to read a change. */
export function describeDiff (before: ConfigDocument | undefined, after: ConfigDocument): string {
  const parts: string[] = []
  for (const key of ['clusters', 'routes'] as const) {
    const a = new Map(listOf(before, key).map((x) => [x.name, canonicalJson(x)]))
    const b = new Map(listOf(after, key).map((x) => [x.name, canonicalJson(x)]))
    const added = [...b.keys()].filter((n) => !a.has(n))
    const removed = [...a.keys()].filter((n) => !b.has(n))
    const changed = [...b.keys()].filter((n) => a.has(n) && a.get(n) !== b.get(n))
    const bits = [
      added.length > 0 ? `added ${added.join(', ')}` : '',
      removed.length > 0 ? `removed ${removed.join(', ')}` : '',
      changed.length > 0 ? `changed ${changed.join(', ')}` : '',
    ].filter((s) => s !== '')
    const orderA = [...a.keys()].filter((n) => b.has(n))
    const orderB = [...b.keys()].filter((n) => a.has(n))
    if (key === 'routes' && orderA.join('\0') !== orderB.join('\0')) bits.push('reordered')
    if (bits.length > 0) parts.push(`${key}: ${bits.join('; ')}`)
  }
  const others = new Set([...Object.keys(before ?? {}), ...Object.keys(after)].filter((k) => k !== 'routes' && k !== 'clusters'))
  const changedOthers = [...others].filter((k) => canonicalJson(before?.[k]) !== canonicalJson(after[k])).sort()
  if (changedOthers.length > 0) parts.push(`${changedOthers.join(', ')} changed`)
  return parts.length > 0 ? parts.join(' | ') : 'no change'
}

/** `overlays: added eu; changed canary`. */
function describeOverlayDiff (before: readonly Overlay[], after: readonly Overlay[]): string {
  const a = new Map(before.map((o) => [o.name, canonicalJson(o)]))
  const b = new Map(after.map((o) => [o.name, canonicalJson(o)]))
  const bits = [
    [...b.keys()].filter((n) => !a.has(n)).map((n) => `added ${n}`).join(', '),
    [...a.keys()].filter((n) => !b.has(n)).map((n) => `removed ${n}`).join(', '),
    [...b.keys()].filter((n) => a.has(n) && a.get(n) !== b.get(n)).map((n) => `changed ${n}`).join(', '),
  ].filter((x) => x !== '')
  return bits.length === 0 ? 'no change' : `overlays: ${bits.join('; ')}`
}
