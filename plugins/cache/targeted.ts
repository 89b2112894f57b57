import { NO_DIRECTIVES, type CacheControl } from './cache-control.ts'

/**
 * Targeted cache control (RFC 9213), e.g. `CDN-Cache-Control`: a Structured
 * Fields Dictionary (RFC 8941) that, when present and valid, replaces
 * Cache-Control *and* Expires for the caches it targets. An invalid field is
 * ignored as a whole (Cache-Control applies); a directive with a value of the
 * wrong type is ignored on its own.
 */

type Bare = number | string | boolean | { token: string } | Buffer

const KEY_START = /[a-z*]/
const KEY_CHAR = /[a-z0-9_\-.*]/
const TOKEN_CHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z:/]/

class Parser {
  readonly s: string
  i = 0
  constructor (s: string) { this.s = s }
  ch (): string { return this.s[this.i] ?? '' }
  fail (): never { throw new SyntaxError('not a structured-field dictionary') }

  ows (): void { while (this.ch() === ' ' || this.ch() === '\t') this.i++ }
  sp (): void { while (this.ch() === ' ') this.i++ }

  key (): string {
    if (this.ch() === '' || !KEY_START.test(this.ch())) this.fail()
    const start = this.i
    while (this.ch() !== '' && KEY_CHAR.test(this.ch())) this.i++
    return this.s.slice(start, this.i)
  }

  bare (): Bare {
    const c = this.ch()
    if (c === '') this.fail()
    if (c === '-' || (c >= '0' && c <= '9')) return this.number()
    if (c === '"') return this.string()
    if (c === '?') {
      this.i++
      const v = this.ch()
      this.i++
      if (v === '1') return true
      if (v === '0') return false
      this.fail()
    }
    if (c === ':') {
      this.i++
      const start = this.i
      while (this.ch() !== '' && this.ch() !== ':') this.i++
      if (this.ch() !== ':') this.fail()
      const b = this.s.slice(start, this.i)
      this.i++
      if (!/^[A-Za-z0-9+/=]*$/.test(b)) this.fail()
      return Buffer.from(b, 'base64')
    }
    if (/[A-Za-z*]/.test(c)) {
      const start = this.i
      this.i++
      while (this.ch() !== '' && TOKEN_CHAR.test(this.ch())) this.i++
      return { token: this.s.slice(start, this.i) }
    }
    this.fail()
  }

  number (): number {
    const start = this.i
    if (this.ch() === '-') this.i++
    let digits = 0
    let decimal = false
    while (this.ch() !== '' && ((this.ch() >= '0' && this.ch() <= '9') || (this.ch() === '.' && !decimal))) {
      if (this.ch() === '.') { decimal = true; digits = 0 } else digits++
      this.i++
    }
    const text = this.s.slice(start, this.i)
    if (text === '-' || text.endsWith('.') || (!decimal && text.replace('-', '').length > 15) || (decimal && digits > 3)) this.fail()
    return Number(text)
  }

  string (): string {
    this.i++
    let out = ''
    for (;;) {
      const c = this.ch()
      if (c === '') this.fail()
      this.i++
      if (c === '"') return out
      if (c === '\\') {
        const n = this.ch()
        if (n !== '"' && n !== '\\') this.fail()
        out += n
        this.i++
        continue
      }
      const code = c.charCodeAt(0)
      if (code < 0x20 || code > 0x7e) this.fail()
      out += c
    }
  }

  params (): void {
    while (this.ch() === ';') {
      this.i++
      this.sp()
      this.key()
      if (this.ch() === '=') { this.i++; this.bare() }
    }
  }

  item (): Bare | Bare[] {
    if (this.ch() === '(') {
      this.i++
      const list: Bare[] = []
      for (;;) {
        this.sp()
        if (this.ch() === ')') { this.i++; break }
        list.push(this.bare())
        this.params()
        if (this.ch() !== ' ' && this.ch() !== ')') this.fail()
      }
      this.params()
      return list
    }
    const v = this.bare()
    this.params()
    return v
  }

  dictionary (): Map<string, Bare | Bare[]> {
    const out = new Map<string, Bare | Bare[]>()
    this.sp()
    while (this.i < this.s.length) {
      const k = this.key()
      let v: Bare | Bare[] = true
      if (this.ch() === '=') { this.i++; v = this.item() } else this.params()
      out.set(k, v)
      this.ows()
      if (this.i >= this.s.length) break
      if (this.ch() !== ',') this.fail()
      this.i++
      this.ows()
      if (this.i >= this.s.length) this.fail()
    }
    return out
  }
}

/** Parses a targeted field into Cache-Control terms; undefined when absent, empty or invalid. */
export function parseTargeted (header: string | string[] | undefined): CacheControl | undefined {
  if (header === undefined) return undefined
  const raw = typeof header === 'string' ? header : header.join(', ')
  let dict: Map<string, Bare | Bare[]>
  try { dict = new Parser(raw.trim()).dictionary() } catch { return undefined }
  if (dict.size === 0) return undefined
  const cc: CacheControl = { ...NO_DIRECTIVES }
  const int = (k: string): number | undefined => {
    const v = dict.get(k)
    return typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : undefined
  }
  const flag = (k: string): boolean => dict.get(k) === true
  cc.maxAge = int('max-age')
  cc.sMaxage = int('s-maxage')
  cc.staleWhileRevalidate = int('stale-while-revalidate')
  cc.staleIfError = int('stale-if-error')
  cc.noStore = flag('no-store')
  cc.noCache = flag('no-cache')
  cc.private = flag('private')
  cc.public = flag('public')
  cc.mustRevalidate = flag('must-revalidate')
  cc.proxyRevalidate = flag('proxy-revalidate')
  cc.mustUnderstand = flag('must-understand')
  return cc
}
