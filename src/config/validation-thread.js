// The validation thread's entry (src/config/off-thread.ts). Plain JavaScript
// so that it can turn Node's compile cache on, as the proxy's own thread has
// it, before the first TypeScript module loads: otherwise every validation
// loads the type stripper again (src/outrider.js says what that costs).
import module from 'node:module'
import { workerData } from 'node:worker_threads'

// Same directory: NODE_COMPILE_CACHE or the default under the same tmpdir.
if (workerData.compileCache === true) module.enableCompileCache()
await import('./validation-worker.ts')
