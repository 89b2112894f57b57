import type { Config } from './config/schema.ts'
import { startProxy, type RunningProxy, type StartOptions } from './proxy.ts'
import { createReloader, watchConfigFile } from './reload.ts'
import type { Logger } from './log.ts'
import { flushAccessLogs } from './access-log.ts'

/**
 * Runs one proxy process: serve, reload on file change and SIGHUP, drain on
 * SIGTERM/SIGINT and exit 0. Unexpected errors are logged and counted, never
 * allowed to take down the requests in flight.
 */
export async function runSingle (file: string, config: Config, log: Logger, extra: Partial<StartOptions> = {}): Promise<RunningProxy> {
  const proxy = await startProxy({ config, source: file, log, ...extra })
  const reload = createReloader(file, (c) => proxy.apply(c, file), log, () => { proxy.metrics.configReloads.labels('failure').inc() })
  const stopWatching = watchConfigFile(file, () => { void reload() })
  process.on('SIGHUP', () => { log.info('SIGHUP: reloading', { file }); void reload() })
  installCrashGuards(log)
  onStopSignals(log, () => proxy.snapshot.config.shutdown.drainTimeout, () => {
    stopWatching()
    return proxy.shutdown()
  })
  return proxy
}

/**
 * SIGTERM/SIGINT: log, run `stop` (which drains), flush the access logs and
 * exit 0 (1 if stopping failed). A second signal while draining is ignored.
 */
export function onStopSignals (log: Logger, drainTimeout: () => number | undefined, stop: () => Promise<void>): void {
  let stopping = false
  const handle = (signal: string): void => {
    if (stopping) return
    stopping = true
    log.info(`${signal}: draining`, { deadlineMs: drainTimeout() ?? null })
    stop().then(() => { flushAccessLogs(); process.exit(0) }, (err: unknown) => {
      log.error('shutdown failed', { err })
      process.exit(1)
    })
  }
  process.on('SIGTERM', () => { handle('SIGTERM') })
  process.on('SIGINT', () => { handle('SIGINT') })
}

/**
 * A proxy must not drop every connection because one request hit a bug: log,
 * count and carry on. (Workers are additionally restarted by the primary if
 * they do exit.)
 */
export function installCrashGuards (log: Logger): void {
  // `throw null` is possible too: nothing here may throw in turn.
  process.on('uncaughtException', (err: unknown) => { log.error('uncaught exception', { err, stack: (err as { stack?: unknown } | null)?.stack }) })
  process.on('unhandledRejection', (err) => { log.error('unhandled rejection', { err }) })
}
