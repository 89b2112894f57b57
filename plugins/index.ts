import type { PluginDefinition } from '../src/plugin.ts'

/**
 * A plugin the data plane can run: its config `name`, and how to load its
 * implementation. Implementations (and what they pull in: jose, ioredis,
 * rate-limiter-flexible, lru-cache, the WAF's rule set, zod for their
 * schemas) are imported only when a route uses them; a sidecar without
 * plugins carries none of it. Config is validated against plugins/schemas.ts,
 * off the serving thread (src/config/off-thread.ts).
 */
export interface PluginEntry {
  readonly name: string
  load (): Promise<PluginDefinition>
}

function entry (name: string, load: () => Promise<{ default: PluginDefinition }>): PluginEntry {
  let loaded: Promise<PluginDefinition> | undefined
  return { name, load: () => (loaded ??= load().then((m) => m.default)) }
}

/** Every plugin Outrider knows, by config `name`. A static list: no directory scanning. */
export const plugins: readonly PluginEntry[] = [
  entry('headers', () => import('./headers/plugin.ts')),
  entry('cors', () => import('./cors/plugin.ts')),
  entry('jwt-auth', () => import('./jwt-auth/plugin.ts')),
  entry('api-key', () => import('./api-key/plugin.ts')),
  entry('security-headers', () => import('./security-headers/plugin.ts')),
  entry('waf', () => import('./waf/plugin.ts')),
  entry('rate-limit', () => import('./rate-limit/plugin.ts')),
  entry('cache', () => import('./cache/plugin.ts')),
  entry('compression', () => import('./compression/plugin.ts')),
]

export const pluginsByName: ReadonlyMap<string, PluginEntry> = new Map(plugins.map((p) => [p.name, p]))
