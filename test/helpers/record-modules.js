/**
 * Preloaded (`--import`) into a CLI child by footprint tests. Appends to
 * $OUTRIDER_MODULE_LOG, one per line: every module the main thread resolves;
 * `node:amaro` if Node's TypeScript stripper loaded on the main thread (seen
 * at exit), `node:amaro worker` if it loaded on a worker thread (seen at the
 * worker's next resolve: the stripper runs before a module's imports resolve).
 * Sync writes are fine here: a test process, and they must survive a kill.
 * Plain JavaScript: a TypeScript preload would load the stripper itself.
 */
import { appendFileSync } from 'node:fs'
import { registerHooks } from 'node:module'
import { isMainThread } from 'node:worker_threads'

const out = process.env.OUTRIDER_MODULE_LOG
const stripperLoaded = () => process.moduleLoadList.some((m) => m.includes('internal/deps/amaro/'))
if (out !== undefined) {
  let seen = false
  registerHooks({
    resolve (specifier, context, nextResolve) {
      const r = nextResolve(specifier, context)
      if (isMainThread) {
        if (!r.url.startsWith('node:')) appendFileSync(out, `${r.url}\n`)
      } else if (!seen && stripperLoaded()) {
        seen = true
        appendFileSync(out, 'node:amaro worker\n')
      }
      return r
    },
  })
  if (isMainThread) process.once('exit', () => { if (stripperLoaded()) appendFileSync(out, 'node:amaro\n') })
}
