import { lstatSync, readlinkSync, statSync, watch, type FSWatcher } from 'node:fs'
import path from 'node:path'
import type { Config } from './config/schema.ts'
import { loadConfigOffThread } from './config/off-thread.ts'
import type { Logger } from './log.ts'

/** Size and mtime checks that must agree before a changed file is read; bounded, in case it never settles. */
const MAX_SETTLE_CHECKS = 10

/**
 * Watches a config file and calls `onChange` after it settles. The directory is
 * watched, not the file: editors and `kubectl`'s ConfigMap updates replace the
 * file by rename, which a watch on the old inode would miss.
 *
 * Settled means no event for `debounceMs` and then the same size and mtime
 * across two checks `debounceMs` apart: an editor that truncates the file and
 * writes it in parts must not get its first half applied. Only a save by
 * rename (write a temporary file, rename it over the config) is safe whatever
 * the writer's pauses.
 *
 * A config symlinked from another directory (`/etc/outrider.yaml` →
 * `/srv/conf/outrider.yaml`) changes there, not here: the directory of every
 * link on the way to the file (a chain: `current.yaml` → `v2.yaml`; a
 * directory: `current` → `releases/v2`) is watched too, and the way followed
 * again when any link is re-pointed.
 */
export function watchConfigFile (file: string, onChange: () => void, options: { debounceMs?: number } = {}): () => void {
  const dir = path.dirname(path.resolve(file))
  const base = path.basename(file)
  const debounceMs = options.debounceMs ?? 150
  let timer: NodeJS.Timeout | undefined
  const check = (last: string | undefined, checks: number): void => {
    timer = setTimeout(() => {
      const now = signature(file)
      if (now === last || checks >= MAX_SETTLE_CHECKS) onChange()
      else check(now, checks + 1)
    }, debounceMs)
  }
  const changed = (): void => { clearTimeout(timer); check(undefined, 0) }
  // Watches beyond the file's own directory, by the path they watch.
  let targets = new Map<string, FSWatcher | undefined>()
  // A link on the way may have been re-pointed: follow the way again, then reload.
  const moved = (): void => { follow(); changed() }
  const follow = (): void => {
    const next = new Map<string, FSWatcher | undefined>()
    for (const hop of linkTargets(file)) {
      if (hop === path.join(dir, base) || next.has(hop)) continue
      next.set(hop, targets.get(hop) ?? watchDir(path.dirname(hop), (name) => name === path.basename(hop), moved))
    }
    for (const [hop, w] of targets) if (!next.has(hop)) w?.close()
    targets = next
  }
  // ConfigMaps swap a `..data` symlink: any change in the directory may be ours.
  const watcher = watchDir(dir, (name) => name === base || name.startsWith('..'), moved)
  follow()
  return () => { clearTimeout(timer); watcher?.close(); for (const w of targets.values()) w?.close() }
}

/**
 * Every path whose change can change what the file reads, as paths whose
 * directories are real: each symlink met on the way, a directory's
 * (`current` → `releases/v2`, as deploy tools re-point) or the file's (a
 * chain: `current.yaml` → `v2.yaml`), and the file it ends at. Resolved one
 * component at a time, as realpath does.
 */
function linkTargets (file: string): string[] {
  const out: string[] = []
  let pending = path.resolve(file).split(path.sep).filter((p) => p !== '')
  let cur: string = path.sep
  for (let hops = 0; pending.length > 0;) {
    const next = path.join(cur, pending.shift() as string)
    let link: string | undefined
    try {
      if (lstatSync(next).isSymbolicLink()) link = readlinkSync(next)
    } catch {
      // Dangling: watch where it should appear.
      out.push(next)
      return out
    }
    if (link === undefined) { cur = next; continue }
    if (++hops > 32) return out
    out.push(next)
    pending = [...path.resolve(cur, link).split(path.sep).filter((p) => p !== ''), ...pending]
    cur = path.sep
  }
  out.push(cur)
  return out
}

/** Watches `dir` for changes to the names `ours` accepts; undefined where that cannot be done. */
function watchDir (dir: string, ours: (name: string) => boolean, onChange: () => void): FSWatcher | undefined {
  try {
    const watcher = watch(dir, { persistent: false }, (_event, name) => { if (name === null || ours(name)) onChange() })
    watcher.on('error', () => {})
    return watcher
  } catch {
    // No inotify (some containers): SIGHUP still reloads.
    return undefined
  }
}

/** What tells one version of the file from another without reading it. */
function signature (file: string): string {
  const s = statSync(file, { throwIfNoEntry: false })
  return s === undefined ? 'missing' : `${s.size}:${s.mtimeMs}:${s.ino}`
}

/**
 * Reload triggers (file change, SIGHUP) funnelled into one serialised loader:
 * the file is read and validated off the hot path; only a config that loads is
 * passed to `apply` (which counts its own failures; `onFailure` counts the
 * ones that never got that far). Failures are logged with the file, path and expectation
 * and the running config stays.
 */
export function createReloader (file: string, apply: (config: Config) => Promise<unknown>, log: Logger, onFailure: () => void): () => Promise<boolean> {
  let running: Promise<boolean> | undefined
  let again = false
  const once = async (): Promise<boolean> => {
    let config: Config
    try {
      config = await loadConfigOffThread(file)
    } catch (err) {
      onFailure()
      log.error('config reload failed; keeping the running config', { file, detail: err instanceof Error ? err.message : String(err) })
      return false
    }
    try {
      await apply(config) // counts its own failures
      return true
    } catch (err) {
      log.error('config reload failed to build; keeping the running config', { file, err })
      return false
    }
  }
  const reload = (): Promise<boolean> => {
    if (running !== undefined) { again = true; return running }
    running = (async () => {
      let ok = await once()
      while (again) { again = false; ok = await once() }
      running = undefined
      return ok
    })()
    return running
  }
  return reload
}
