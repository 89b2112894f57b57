/**
 * Preloaded (`--import`) into a CLI child by footprint tests: appends every
 * module the main thread resolves to $OUTRIDER_MODULE_LOG, one URL per line.
 * Sync writes are fine here: a test process, and they must survive a kill.
 */
import { appendFileSync } from 'node:fs'
import { registerHooks } from 'node:module'
import { isMainThread } from 'node:worker_threads'

const out = process.env.OUTRIDER_MODULE_LOG
if (out !== undefined && isMainThread) {
  registerHooks({
    resolve (specifier, context, nextResolve) {
      const r = nextResolve(specifier, context)
      if (!r.url.startsWith('node:')) appendFileSync(out, `${r.url}\n`)
      return r
    },
  })
}
