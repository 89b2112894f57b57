import { RuleSet, type BodyInput, type Inspection, type RequestInput } from './engine.ts'
import { schema } from './schema.ts'

/** What a current browser sends with every request: none of it may match. */
export const BROWSER: ReadonlyArray<readonly [string, string]> = [
  ['host', 'shop.example.com'],
  ['user-agent', 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36'],
  ['accept', 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8'],
  ['accept-language', 'en-GB,en;q=0.9,fr;q=0.8'],
  ['accept-encoding', 'gzip, deflate, br, zstd'],
  ['referer', 'https://shop.example.com/catalog?page=2&sort=price_desc'],
  ['sec-ch-ua', '"Not/A)Brand";v="8", "Chromium";v="126", "Google Chrome";v="126"'],
  ['sec-fetch-site', 'same-origin'],
  ['cookie', '_ga=GA1.2.1234567890.1700000000; _gid=GA1.2.987654321.1700000000; session=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl; cart=%7B%22items%22%3A%5B1%2C2%5D%7D'],
]

/** A rule set in detect mode (every match collected) at `paranoiaLevel`, with `extra` config. */
export function ruleSet (paranoiaLevel = 1, extra: Record<string, unknown> = {}): RuleSet {
  return new RuleSet(schema.parse({ mode: 'detect', paranoiaLevel, ...extra }))
}

/** A GET with `value` as query parameter `name` (encoded as a browser would). */
export function inQuery (rules: RuleSet, value: string, name = 'q'): Inspection {
  return rules.inspect({ method: 'GET', path: '/search', query: `${encodeURIComponent(name)}=${encodeURIComponent(value)}`, headers: BROWSER })
}

/** A POST of `body` with `contentType`. */
export function inBody (rules: RuleSet, contentType: string, body: string | Buffer, headers: ReadonlyArray<readonly [string, string]> = []): Inspection {
  const req: RequestInput = { method: 'POST', path: '/submit', query: '', headers: [...BROWSER, ['content-type', contentType], ...headers] }
  const data: BodyInput = { kind: 'read', data: typeof body === 'string' ? Buffer.from(body) : body }
  return rules.inspect(req, data)
}

export function request (rules: RuleSet, req: Partial<RequestInput>, body: BodyInput = { kind: 'none' }): Inspection {
  return rules.inspect({ method: 'GET', path: '/', query: '', headers: BROWSER, ...req }, body)
}

export function ids (insp: Inspection): number[] {
  return insp.matches.map((m) => m.id)
}

export function families (insp: Inspection): string[] {
  return [...new Set(insp.matches.map((m) => m.family))]
}

/** For a failing assertion: what matched, where, on what. */
export function explain (insp: Inspection): string {
  return insp.matches.map((m) => `${m.id}@${m.target}[${m.excerpt}]`).join(' ') || 'no match'
}
