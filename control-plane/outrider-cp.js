#!/usr/bin/env node
// The `outrider-cp` command: Node's compile cache on before the first
// TypeScript module loads, so a long-running control plane does not keep the
// type stripper resident either (src/outrider.js says why).
import module from 'node:module'

module.enableCompileCache?.()
await import('./cli.ts')
