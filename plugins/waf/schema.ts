import { z } from 'zod'
import { size } from '../../src/config/units.ts'
import { FAMILIES } from './rule.ts'
import { RULE_IDS } from './rules/index.ts'

const ruleId = z.number().int().refine((id) => RULE_IDS.has(id), { error: (i) => `a known WAF rule id (${String(i.input)} is not one)` })

/**
 * Where an exclusion applies: `path`, `body` (a whole text body), `request`
 * (request-level rules), or `query:` / `body:` / `cookie:` / `header:` and a
 * name. A trailing `*` matches by prefix (`body:items.*`, `cookie:*`).
 * Header names are case-insensitive, so they are lower-cased.
 */
const TARGET = /^(?:path|body|request|(?:query|body|cookie|header):\S+)$/

const target = z.string()
  .regex(TARGET, 'a target: path, body, request, or query:NAME, body:NAME, cookie:NAME, header:NAME (a trailing * matches by prefix)')
  .transform((t) => t.startsWith('header:') ? t.toLowerCase() : t)

const exclusion = z.strictObject({
  target: target.describe('The parameter the exclusion applies to, e.g. `query:q`, `body:comment`, `header:user-agent`, `cookie:session`, `path`.'),
  ruleIds: z.array(ruleId).min(1).optional().describe('Rules not run on that target.'),
  families: z.array(z.enum(FAMILIES)).min(1).optional().describe('Rule families not run on that target.'),
}).refine((e) => e.ruleIds !== undefined || e.families !== undefined, {
  error: 'ruleIds or families: an exclusion names what it turns off',
  path: ['ruleIds'],
})

const limits = z.strictObject({
  headerLength: z.number().int().min(1).default(8192).describe('Longest header value accepted before rule 1011 fires, in characters.'),
  headerCount: z.number().int().min(1).default(100).describe('Most header lines accepted before rule 1012 fires.'),
  args: z.number().int().min(1).default(512).describe('Most query and form/multipart parameters accepted before rule 1013 fires.'),
})

/**
 * A web application firewall: rules in families (sqli, xss, lfi, rce, code,
 * scanner, protocol), each with a severity that adds to an anomaly score as in
 * the OWASP Core Rule Set; a request whose score reaches the threshold is
 * refused with 403 (mode `block`) or only logged and counted (mode `detect`).
 */
export const schema = z.strictObject({
  mode: z.enum(['block', 'detect']).default('block')
    .describe('`block` refuses a request that reaches the threshold with 403; `detect` logs and counts it and lets it through.'),
  paranoiaLevel: z.number().int().min(1).max(4).default(1)
    .describe('1–4: each level adds stricter rules (more detection, more false positives).'),
  anomalyThreshold: z.number().int().min(1).max(1000).default(5)
    .describe('Score at which a request is blocked. Severities score critical 5, error 4, warning 3, notice 2: the default blocks on one critical match.'),
  disabledRules: z.array(ruleId).default([])
    .describe('Rule ids turned off everywhere.'),
  disabledFamilies: z.array(z.enum(FAMILIES)).default([])
    .describe('Rule families turned off everywhere.'),
  exclusions: z.array(exclusion).default([])
    .describe('Rules or families turned off for one parameter (false positives on a known field).'),
  maxBodySize: size.refine((n) => n <= 16 * 1024 * 1024, 'at most 16mib: the body is buffered in memory to be inspected').default(64 * 1024)
    .describe('Largest request body inspected, in bytes (a number or 64kb, 1mib …); 0 inspects no body.'),
  onOversizedBody: z.enum(['allow', 'block']).default('allow')
    .describe('What to do with a body larger than maxBodySize: forward it uninspected, or count it as a critical anomaly (rule 1015).'),
  maxDecodeRounds: z.number().int().min(1).max(8).default(3)
    .describe('Percent-decoding rounds before matching (catches %252e-style multiple encoding).'),
  maxJsonDepth: z.number().int().min(1).max(512).default(32)
    .describe('JSON nesting read; deeper nesting triggers rule 1017.'),
  limits: limits.prefault({})
    .describe('Protocol limits for rules 1011–1013.'),
})

export type WafConfig = z.output<typeof schema>
