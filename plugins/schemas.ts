import type { z } from 'zod'
import { schema as headers } from './headers/schema.ts'
import { schema as cors } from './cors/schema.ts'
import { schema as jwtAuth } from './jwt-auth/schema.ts'
import { schema as apiKey } from './api-key/schema.ts'
import { schema as securityHeaders } from './security-headers/schema.ts'
import { schema as waf } from './waf/schema.ts'
import { schema as rateLimit } from './rate-limit/schema.ts'
import { schema as cache } from './cache/schema.ts'
import { schema as compression } from './compression/schema.ts'

/**
 * Every plugin's config schema, by config `name`: what config validation
 * needs, without the implementations (plugins/index.ts loads those).
 */
export const pluginSchemas: ReadonlyArray<{ readonly name: string, readonly schema: z.ZodType }> = [
  { name: 'headers', schema: headers },
  { name: 'cors', schema: cors },
  { name: 'jwt-auth', schema: jwtAuth },
  { name: 'api-key', schema: apiKey },
  { name: 'security-headers', schema: securityHeaders },
  { name: 'waf', schema: waf },
  { name: 'rate-limit', schema: rateLimit },
  { name: 'cache', schema: cache },
  { name: 'compression', schema: compression },
]
