import { open, readFile, rename, unlink } from 'node:fs/promises'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import type { Ejection } from './ejections.ts'
import type { Overlay } from './overlays.ts'
import type { ConfigDocument } from './validate.ts'

/** One version of the desired config. */
export interface ConfigVersion {
  /** Grows by one per accepted change; never reused, also across restarts. */
  version: number
  /** sha256 of the document's canonical JSON. */
  hash: string
  document: ConfigDocument
  /** Per-label patches on `document` (absent in stores written before overlays existed). */
  overlays?: Overlay[]
  /** RFC 3339. */
  createdAt: string
  /** The token name that made it. */
  author: string
  action: string
  summary: string
  message: string
}

/** One accepted change, for "who changed what, when". */
export interface AuditRecord {
  seq: number
  at: string
  actor: string
  action: string
  /** The route or cluster name, `v<N>` for a rollback, empty for a whole document. */
  target: string
  fromVersion: number
  toVersion: number
  summary: string
  /** The changed object before and after (absent: did not exist / was deleted). */
  before?: unknown
  after?: unknown
  message: string
}

/** Everything the control plane keeps across restarts. */
export interface StoreState {
  format: 1
  /** Retained versions, oldest first; the last one is current. */
  history: ConfigVersion[]
  /** Newest last. */
  audit: AuditRecord[]
  /** The next version number (kept apart from history, which is trimmed). */
  nextVersion: number
  nextAuditSeq: number
  /** Control-plane weight hints: cluster → endpoint origin → weight. Runtime steering, not config: no version. */
  weightHints?: Record<string, Record<string, number>>
  /** Rules (rules.ts), as validated. */
  rules?: unknown[]
  /** Endpoints rules ejected, until readmitted (ejections.ts). */
  ejections?: Ejection[]
}

/**
 * Where state lives. The file store is the embedded default; a shared store
 * (redis-store.ts, for several replicas) also says when another replica
 * changed it, and refuses a save based on a stale load.
 */
export interface StateStore {
  /** The saved state, or undefined when nothing was ever saved. */
  load (): Promise<StoreState | undefined>
  /**
   * Replaces the saved state. MUST be atomic: a crash leaves the old state or
   * the new one. A shared store MUST throw StaleStateError when the state was
   * saved by someone else since this process last loaded or saved it.
   */
  save (state: StoreState): Promise<void>
  /** Calls `listener` when someone else saved; returns the unsubscribe function. */
  watch? (listener: () => void): () => void
  /** Whether this process may run the rules now (one replica of several does); absent: always. */
  lease? (ttlMs: number): Promise<boolean>
  /** A channel to the other replicas (telemetry, for fleet-wide analytics); absent: this process is alone. */
  readonly relay?: Relay
  close? (): Promise<void>
}

/** Messages between the replicas of a shared store: at most once, no history (a replica that was away misses them). */
export interface Relay {
  /** Sends `message` to every other replica; rejects when the store cannot be reached. */
  publish (message: string): Promise<void>
  /** Calls `listener` with every message another replica published from when `ready` resolves. */
  subscribe (listener: (message: string) => void): { ready: Promise<void>, close (): void }
}

/** A save refused because the stored state moved on since it was read: reload and redo. */
export class StaleStateError extends Error {
  readonly code = 'STALE_STATE'
}

export function emptyState (): StoreState {
  return { format: 1, history: [], audit: [], nextVersion: 1, nextAuditSeq: 1 }
}

/**
 * A JSON file written atomically: the new state goes to a temporary file in
 * the same directory, is flushed to disk, then renamed over the old file
 * (rename(2) is atomic within a file system), and the directory is flushed so
 * the rename itself survives a power cut.
 *
 * @example
 * const store = new FileStore('./cp-store.json')
 * const state = (await store.load()) ?? emptyState()
 */
export class FileStore implements StateStore {
  readonly file: string

  constructor (file: string) {
    this.file = path.resolve(file)
  }

  async load (): Promise<StoreState | undefined> {
    let text: string
    try {
      text = await readFile(this.file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
    const state = JSON.parse(text) as StoreState
    if (state.format !== 1 || !Array.isArray(state.history) || !Array.isArray(state.audit)) {
      throw new Error(`${this.file}: not an outrider-cp store (format 1)`)
    }
    return state
  }

  async save (state: StoreState): Promise<void> {
    await writeFileAtomic(this.file, JSON.stringify(state, null, 1) + '\n')
  }
}

/** Writes `text` to `file` so that readers see the old content or the new, never a torn one. */
export async function writeFileAtomic (file: string, text: string): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`)
  const handle = await open(tmp, 'w', 0o600)
  try {
    await handle.writeFile(text, 'utf8')
    await handle.sync()
  } finally {
    await handle.close()
  }
  try {
    await rename(tmp, file)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
  try {
    const dir = await open(path.dirname(file), 'r')
    try { await dir.sync() } finally { await dir.close() }
  } catch {
    // Some file systems refuse fsync on a directory; the rename is done either way.
  }
}
