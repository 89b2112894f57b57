// The config validation process (src/config/off-thread.ts): one job in, one
// reply out, then it exits and its memory goes back to the system. Plain
// JavaScript so that it can turn Node's compile cache on, as the proxy has
// it, before the first TypeScript module loads: otherwise every validation
// loads the type stripper again (src/outrider.js says what that costs).
import module from 'node:module'

if (process.argv.includes('--compile-cache')) module.enableCompileCache()

// Listening before anything else loads: a message with no listener is lost.
process.once('message', (job) => {
  void import('./validate-job.ts')
    .then(({ validateJob }) => validateJob(job))
    .catch((err) => ({ ok: false, message: `the validation process failed: ${err instanceof Error ? err.message : String(err)}` }))
    .then((reply) => { if (process.connected) process.send(reply, () => { process.disconnect() }) })
})
// Its proxy went away: nobody is waiting for the answer.
process.once('disconnect', () => { process.exit(0) })
