import t from 'tap'
import { readdirSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { loadConfigFile } from '../../src/config/load.ts'

/**
 * Every example config in the repo is one the proxy accepts: documentation
 * that cannot rot. Variables they expect get a placeholder.
 */
const env = { ...process.env, ORIGIN_URL: 'http://127.0.0.1:9001' }
const root = join(import.meta.dirname, '../../examples')
for (const dir of readdirSync(root, { withFileTypes: true })) {
  if (!dir.isDirectory()) continue
  const file = join(root, dir.name, 'outrider.yaml')
  if (!existsSync(file)) continue
  t.test(`examples/${dir.name}/outrider.yaml is valid`, async (t) => {
    const config = await loadConfigFile(file, env)
    t.ok(config.routes.length > 0)
  })
}
