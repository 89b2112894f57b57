import type { PluginDefinition } from '../src/plugin.ts'
import headers from './headers/plugin.ts'
import cors from './cors/plugin.ts'

/** Every plugin Outrider knows, by config `name`. A static list: no directory scanning. */
export const plugins: readonly PluginDefinition[] = [headers, cors]

export const pluginsByName: ReadonlyMap<string, PluginDefinition> = new Map(plugins.map((p) => [p.name, p]))
