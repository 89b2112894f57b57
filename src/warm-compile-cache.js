#!/usr/bin/env node
// Fills Node's compile cache with every module of Outrider, already stripped
// of types, so that even the first `outrider` start after an install never
// loads the TypeScript stripper (why that matters: src/outrider.js).
// `npm ci` runs it (`prepare`); the Dockerfile runs it at build time.
//
// Plain JavaScript, and it never fails an install: on a Node that cannot strip
// types (or has no compile cache) there is nothing to fill.
import module from 'node:module'
import { readdir } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const ROOT = new URL('../', import.meta.url)
const DIRS = ['src', 'plugins', 'control-plane']
/** An export no module has: importing it makes the graph below fail to link. */
const NEVER = 'outriderWarmCompileCacheNever'

function notFilled (why) {
  console.log(`compile cache: not filled (${why})`)
  process.exit(0)
}

if (typeof module.enableCompileCache !== 'function' || !process.features.typescript) notFilled(`Node ${process.version} cannot strip TypeScript types`)
const { status, directory, message } = module.enableCompileCache()
const { ENABLED, ALREADY_ENABLED } = module.constants.compileCacheStatus
if (status !== ENABLED && status !== ALREADY_ENABLED) notFilled(message ?? 'disabled')

const urls = []
for (const dir of DIRS) {
  for (const entry of await readdir(new URL(dir, ROOT), { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.ts') || entry.name.endsWith('.test.ts')) continue
    urls.push(pathToFileURL(path.join(entry.parentPath, entry.name)).href)
  }
}

// ESM fetches (and so strips and caches) a whole module graph before it links
// any of it, and a graph that fails to link evaluates nothing: no entry point
// runs, no listener opens, no worker starts. One graph per module, so that one
// that cannot load here (a test helper whose test/ is not installed) costs
// only itself.
let warmed = 0
const skipped = []
for (const url of urls) {
  const graph = `import ${JSON.stringify(url)};\nimport { ${NEVER} } from 'node:module';\n`
  try {
    await import(`data:text/javascript,${encodeURIComponent(graph)}`)
    notFilled(`${url} linked, and ran`)
  } catch (err) {
    if (err instanceof SyntaxError && err.message.includes(NEVER)) warmed++
    else skipped.push(`${path.relative(fileURLToPath(ROOT), fileURLToPath(url))} (${err instanceof Error ? err.message : String(err)})`)
  }
}
module.flushCompileCache?.()
console.log(`compile cache: ${warmed} modules of ${fileURLToPath(ROOT)} in ${directory}`)
for (const s of skipped) console.log(`  skipped ${s}`)
