import { watch, type FSWatcher } from 'node:fs'
import path from 'node:path'
import type { Config } from './config/schema.ts'
import { loadConfigOffThread } from './config/off-thread.ts'
import type { Logger } from './log.ts'

/**
 * Watches a config file and calls `onChange` after it settles. The directory is
 * watched, not the file: editors and `kubectl`'s ConfigMap updates replace the
 * file by rename, which a watch on the old inode would miss.
 */
export function watchConfigFile (file: string, onChange: () => void, options: { debounceMs?: number } = {}): () => void {
  const dir = path.dirname(path.resolve(file))
  const base = path.basename(file)
  const debounceMs = options.debounceMs ?? 150
  let timer: NodeJS.Timeout | undefined
  let watcher: FSWatcher | undefined
  try {
    watcher = watch(dir, { persistent: false }, (_event, name) => {
      // ConfigMaps swap a `..data` symlink: any change in the directory may be ours.
      if (name !== null && name !== base && !name.startsWith('..')) return
      clearTimeout(timer)
      timer = setTimeout(onChange, debounceMs)
    })
    watcher.on('error', () => {})
  } catch {
    // No inotify (some containers): SIGHUP still reloads.
  }
  return () => { clearTimeout(timer); watcher?.close() }
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
