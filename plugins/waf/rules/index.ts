import type { Rule } from '../rule.ts'
import { protocolRules } from './protocol.ts'
import { scannerRules } from './scanner.ts'
import { lfiRules } from './lfi.ts'
import { rceRules } from './rce.ts'
import { codeRules } from './code.ts'
import { xssRules } from './xss.ts'
import { sqliRules } from './sqli.ts'

/**
 * Every rule, cheapest and most decisive families first: in block mode the
 * engine stops at the threshold, so the order is also the order of effort.
 */
export const RULES: readonly Rule[] = [
  ...protocolRules, ...scannerRules, ...lfiRules, ...rceRules, ...codeRules, ...xssRules, ...sqliRules,
]

export const RULE_IDS: ReadonlySet<number> = new Set(RULES.map((r) => r.id))

if (RULE_IDS.size !== RULES.length) throw new Error('two WAF rules share an id')
