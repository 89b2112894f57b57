#!/usr/bin/env node
// The `outrider` command. Plain JavaScript on purpose: it turns on Node's
// compile cache before the first TypeScript module loads.
//
// Node strips types with amaro, a WebAssembly build of swc. Once loaded it
// stays for the life of the process: ~18 MiB of RSS and ~4 MiB of V8 heap,
// which every major GC marks again (bench/RESULTS.md, "Node's type stripper stays in the heap").
// With the cache on, a module stripped once before is read back stripped, and
// amaro never loads. `npm ci` fills the cache (`prepare`), as does any run.
//
// NODE_COMPILE_CACHE=DIR moves the cache (default: <tmpdir>/node-compile-cache);
// NODE_DISABLE_COMPILE_CACHE=1 turns it off. Node keeps one per user, and does
// not use one it cannot write to (a read-only file system): that only costs
// the memory above.
import module from 'node:module'

module.enableCompileCache?.()
await import('./cli.ts')
