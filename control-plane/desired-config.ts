import { InvalidConfigError, NotFoundError, StoreError, VersionConflictError } from './errors.ts'
import { emptyState, type AuditRecord, type ConfigVersion, type StateStore, type StoreState } from './store.ts'
import { canonicalJson, contentHash, validateDocument, type ConfigDocument } from './validate.ts'

/** A change an operator (or, later, a rule) asks for. */
export type Edit =
  | { action: 'put_route', route: unknown, before?: string }
  | { action: 'delete_route', name: string }
  | { action: 'put_cluster', cluster: unknown }
  | { action: 'delete_cluster', name: string }
  | { action: 'put_config', document: unknown }
  | { action: 'rollback', version: number }

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
 * The config the fleet should run (one document for every node for now:
 * per-label overrides are not built yet), its retained history and the audit
 * log. Every change is validated with the data plane's schema, gets the next
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

  private constructor (store: StateStore, state: StoreState, historyLimit: number, auditLimit: number) {
    this.#store = store
    this.#state = state
    this.#historyLimit = historyLimit
    this.#auditLimit = auditLimit
  }

  static async open (store: StateStore, options: { historyLimit?: number, auditLimit?: number } = {}): Promise<DesiredConfig> {
    const state = (await store.load()) ?? emptyState()
    return new DesiredConfig(store, state, Math.max(1, options.historyLimit ?? DEFAULT_HISTORY_LIMIT), Math.max(1, options.auditLimit ?? DEFAULT_AUDIT_LIMIT))
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

  /**
   * Applies `edit` on top of the current document. Throws InvalidConfigError
   * (with the schema's paths), NotFoundError, VersionConflictError,
   * or StoreError; on any of them nothing changed.
   */
  change (actor: string, edit: Edit, options: ChangeOptions = {}): Promise<ChangeResult> {
    const run = this.#queue.then(() => this.#change(actor, edit, options))
    this.#queue = run.catch(() => {})
    return run
  }

  async #change (actor: string, edit: Edit, options: ChangeOptions): Promise<ChangeResult> {
    const current = this.current
    const currentVersion = current?.version ?? 0
    if (options.ifVersion !== undefined && options.ifVersion !== 0 && options.ifVersion !== currentVersion) {
      throw new VersionConflictError(`the config is at version ${currentVersion}, not ${options.ifVersion}`)
    }
    const base: ConfigDocument = current === undefined ? {} : structuredClone(current.document)
    const { document, target, before, after } = this.#edit(base, edit)

    const validation = validateDocument(document)
    if (!validation.ok) throw new InvalidConfigError(validation.issues)

    const hash = contentHash(document)
    const summary = edit.action === 'rollback'
      ? `rollback to v${edit.version}: ${describeDiff(current?.document, document)}`
      : describeDiff(current?.document, document)
    if (current !== undefined && hash === current.hash) {
      return { version: currentVersion, hash, changed: false, dryRun: options.dryRun === true, summary: 'no change' }
    }
    const version = this.#state.nextVersion
    if (options.dryRun === true) return { version, hash, changed: true, dryRun: true, summary }

    const now = new Date().toISOString()
    const entry: ConfigVersion = { version, hash, document, createdAt: now, author: actor, action: edit.action, summary, message: options.message ?? '' }
    const record: AuditRecord = {
      seq: this.#state.nextAuditSeq,
      at: now,
      actor,
      action: edit.action,
      target,
      fromVersion: currentVersion,
      toVersion: version,
      summary,
      ...(before === undefined ? {} : { before }),
      ...(after === undefined ? {} : { after }),
      message: options.message ?? '',
    }
    const next: StoreState = {
      format: 1,
      history: [...this.#state.history, entry].slice(-this.#historyLimit),
      audit: [...this.#state.audit, record].slice(-this.#auditLimit),
      nextVersion: version + 1,
      nextAuditSeq: record.seq + 1,
    }
    try {
      await this.#store.save(next)
    } catch (err) {
      throw new StoreError(`the change could not be saved (${(err as Error).message}); nothing changed`, { cause: err })
    }
    this.#state = next
    for (const listener of this.#listeners) listener(entry)
    return { version, hash, changed: true, dryRun: false, summary }
  }

  /** The edited document plus what the audit log records about the edit. */
  #edit (doc: ConfigDocument, edit: Edit): { document: ConfigDocument, target: string, before?: unknown, after?: unknown } {
    switch (edit.action) {
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
        return { document: structuredClone(old.document), target: `v${edit.version}` }
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
