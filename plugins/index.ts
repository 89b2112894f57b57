import type { PluginDefinition } from '../src/plugin.ts'
import headers from './headers/plugin.ts'
import cors from './cors/plugin.ts'
import waf from './waf/plugin.ts'
import jwtAuth from './jwt-auth/plugin.ts'
import apiKey from './api-key/plugin.ts'
import securityHeaders from './security-headers/plugin.ts'
import rateLimit from './rate-limit/plugin.ts'
import compression from './compression/plugin.ts'
import cache from './cache/plugin.ts'

/** Every plugin Outrider knows, by config `name`. A static list: no directory scanning. */
export const plugins: readonly PluginDefinition[] = [headers, cors, jwtAuth, apiKey, securityHeaders, waf, rateLimit, cache, compression]

export const pluginsByName: ReadonlyMap<string, PluginDefinition> = new Map(plugins.map((p) => [p.name, p]))
