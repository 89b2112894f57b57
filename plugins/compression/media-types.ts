/**
 * What the compression plugin does with a Content-Type:
 * - `skip`: not on the allow-list (or absent);
 * - `text` / `binary`: compress; `text` also tells Brotli to model it as text;
 * - `event-stream`: allowed, but text/event-stream needs its own treatment
 *   (each event must reach the client when it is written).
 */
export type MediaKind = 'skip' | 'text' | 'binary' | 'event-stream'

/** Textual types that neither start with text/ nor end in +json / +xml. */
const TEXT_TYPES: ReadonlySet<string> = new Set([
  'application/json', 'application/javascript', 'application/x-javascript', 'application/ecmascript',
  'application/xml', 'application/yaml', 'application/x-yaml', 'application/x-ndjson', 'application/graphql',
])

const MEMO_ENTRIES = 128
const MEMO_KEY_LENGTH = 256

/**
 * An allow-list of media ranges compiled once per snapshot: exact types in a
 * set, `type/*` in a set, `type/*+suffix` and `*\/*+suffix` as (type, suffix)
 * pairs. Responses carry few distinct Content-Type values, so each raw value's
 * verdict is remembered (bounded), and the common case is one Map lookup.
 *
 * @example
 * const types = new MediaTypes(['text/*', '*\/*+json'])
 * types.kind('text/html; charset=utf-8')     // 'text'
 * types.kind('application/problem+json')     // 'text'
 * types.kind('image/png')                    // 'skip'
 */
export class MediaTypes {
  readonly #exact = new Set<string>()
  readonly #anySubtype = new Set<string>()
  readonly #suffixes: Array<{ type: string, suffix: string }> = []
  readonly #memo = new Map<string, MediaKind>()

  constructor (ranges: readonly string[]) {
    for (const range of ranges) {
      const slash = range.indexOf('/')
      const type = range.slice(0, slash)
      const subtype = range.slice(slash + 1)
      if (subtype === '*') {
        if (type === '*') this.#suffixes.push({ type: '*', suffix: '' })
        else this.#anySubtype.add(type)
      } else if (subtype.startsWith('*+')) {
        this.#suffixes.push({ type, suffix: subtype.slice(1) })
      } else {
        this.#exact.add(range)
      }
    }
  }

  kind (contentType: string | string[] | undefined): MediaKind {
    if (contentType === undefined) return 'skip'
    // A repeated Content-Type is invalid; the last one is what most recipients use.
    const raw = typeof contentType === 'string' ? contentType : contentType[contentType.length - 1] ?? ''
    const known = this.#memo.get(raw)
    if (known !== undefined) return known
    const kind = this.#classify(raw)
    if (raw.length <= MEMO_KEY_LENGTH) {
      if (this.#memo.size >= MEMO_ENTRIES) this.#memo.delete(this.#memo.keys().next().value as string)
      this.#memo.set(raw, kind)
    }
    return kind
  }

  #classify (raw: string): MediaKind {
    const semi = raw.indexOf(';')
    const type = (semi === -1 ? raw : raw.slice(0, semi)).trim().toLowerCase()
    const slash = type.indexOf('/')
    if (slash <= 0 || slash === type.length - 1) return 'skip'
    if (!this.#allows(type, type.slice(0, slash))) return 'skip'
    if (type === 'text/event-stream') return 'event-stream'
    return type.startsWith('text/') || type.endsWith('+json') || type.endsWith('+xml') || TEXT_TYPES.has(type) ? 'text' : 'binary'
  }

  #allows (type: string, major: string): boolean {
    if (this.#exact.has(type) || this.#anySubtype.has(major)) return true
    for (const { type: t, suffix } of this.#suffixes) {
      if ((t === '*' || t === major) && type.endsWith(suffix)) return true
    }
    return false
  }
}
