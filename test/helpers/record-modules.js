/**
 * Preloaded (`--import`) into a CLI child by footprint tests (and so into the
 * config validation process it forks). Appends to $OUTRIDER_MODULE_LOG, one
 * per line: every module the serving thread resolves; `node:amaro` if Node's
 * TypeScript stripper loaded there (seen at exit); `node:amaro validation` if
 * it loaded in the validation process (seen at its next resolve: the stripper
 * runs before a module's imports resolve).
 * Sync writes are fine here: a test process, and they must survive a kill.
 * Plain JavaScript: a TypeScript preload would load the stripper itself.
 */
import { appendFileSync } from 'node:fs'
import { registerHooks } from 'node:module'
import { isMainThread } from 'node:worker_threads'

const out = process.env.OUTRIDER_MODULE_LOG
const stripperLoaded = () => process.moduleLoadList.some((m) => m.includes('internal/deps/amaro/'))
const validating = process.argv[1]?.endsWith('validation-process.js') === true
if (out !== undefined && isMainThread) {
  let seen = false
  registerHooks({
    resolve (specifier, context, nextResolve) {
      const r = nextResolve(specifier, context)
      if (!validating) {
        if (!r.url.startsWith('node:')) appendFileSync(out, `${r.url}\n`)
      } else if (!seen && stripperLoaded()) {
        seen = true
        appendFileSync(out, 'node:amaro validation\n')
      }
      return r
    },
  })
  if (!validating) process.once('exit', () => { if (stripperLoaded()) appendFileSync(out, 'node:amaro\n') })
}
