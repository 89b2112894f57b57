import { createHash, timingSafeEqual } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { parse as parseYaml } from 'yaml'
import { z } from 'zod'

/**
 * Operator roles, weakest first: each can do everything the ones before it
 * can. `data-plane` stands apart: it may subscribe to config and report
 * telemetry, nothing else, and no operator role may subscribe.
 */
export const OPERATOR_ROLES = ['viewer', 'operator', 'admin'] as const
export type OperatorRole = typeof OPERATOR_ROLES[number]
export type Role = OperatorRole | 'data-plane'

export interface Identity {
  /** The token's name: what the audit log records as the actor. */
  name: string
  role: Role
}

const HASH = /^sha256:[0-9a-fA-F]{64}$/

const tokenEntry = z.strictObject({
  name: z.string().min(1).describe('Who holds the token: recorded in the audit log.'),
  role: z.enum(['viewer', 'operator', 'admin', 'data-plane']),
  token: z.string().min(16, 'a token of at least 16 characters').optional().describe('The token itself (prefer hash).'),
  hash: z.string().regex(HASH, 'sha256:<64 hex digits> of the token').optional().describe('sha256:<hex> of the token.'),
}).refine((t) => (t.token === undefined) !== (t.hash === undefined), 'exactly one of token, hash')

export const tokenFileSchema = z.strictObject({
  tokens: z.array(tokenEntry).min(1, 'at least one token'),
})

/** `sha256:<hex>` of a token, for a token file's `hash`. */
export function hashToken (token: string): string {
  return `sha256:${createHash('sha256').update(token).digest('hex')}`
}

/**
 * Bearer tokens → identities. Only digests are held; a presented token is
 * hashed and compared with every entry in constant time per entry.
 *
 * @example
 * const tokens = new TokenTable([{ name: 'alice', role: 'admin', token: 'a-long-random-token!' }])
 * tokens.identify('Bearer a-long-random-token!') // { name: 'alice', role: 'admin' }
 */
export class TokenTable {
  #entries: Array<{ digest: Buffer, identity: Identity }>

  constructor (entries: ReadonlyArray<{ name: string, role: Role, token?: string, hash?: string }>) {
    this.#entries = entries.map((e) => {
      const hex = (e.hash ?? hashToken(e.token ?? '')).slice('sha256:'.length)
      return { digest: Buffer.from(hex, 'hex'), identity: { name: e.name, role: e.role } }
    })
  }

  /** The identity of an `authorization` header value, or undefined. */
  identify (authorization: string | undefined): Identity | undefined {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')
    if (m === null) return undefined
    const digest = createHash('sha256').update(m[1] as string).digest()
    let found: Identity | undefined
    for (const e of this.#entries) if (timingSafeEqual(e.digest, digest) && found === undefined) found = e.identity
    return found
  }
}

/** Reads a YAML or JSON token file (`tokens: [{ name, role, token | hash }]`). */
export async function loadTokenFile (file: string): Promise<TokenTable> {
  const raw: unknown = parseYaml(await readFile(file, 'utf8'))
  const result = tokenFileSchema.safeParse(raw)
  if (!result.success) {
    const lines = result.error.issues.map((i) => `${i.path.join('.') || '(document)'}: ${i.message}`)
    throw new Error(`${file}: invalid token file\n  ${lines.join('\n  ')}`)
  }
  return new TokenTable(result.data.tokens)
}

/** True when `role` may do what `needed` may. */
export function allows (role: Role, needed: Role): boolean {
  if (role === 'data-plane' || needed === 'data-plane') return role === needed
  return OPERATOR_ROLES.indexOf(role) >= OPERATOR_ROLES.indexOf(needed)
}
