/**
 * Turns what a client sent into what an interpreter behind the proxy would
 * see, so an encoding trick cannot walk a payload past the rules: percent
 * decoding (repeated, with `%uXXXX` and overlong UTF-8), HTML character
 * references, Unicode NFKC, case folding, NUL removal, and per-family views
 * (JavaScript escapes, shell quoting tricks, file paths). Every function here
 * is a single left-to-right scan or a regular expression without nested
 * repetition: the cost is linear in the input, whatever the input.
 */

const HEX: Int8Array = (() => {
  const t = new Int8Array(128).fill(-1)
  for (let i = 0; i < 10; i++) t[48 + i] = i
  for (let i = 0; i < 6; i++) { t[65 + i] = 10 + i; t[97 + i] = 10 + i }
  return t
})()

function hex (c: number): number { return c < 128 ? HEX[c] as number : -1 }

/** What one round of percent decoding found besides the text. */
export interface DecodeRound {
  value: string
  changed: boolean
  /** A `%` not followed by two hex digits (nor `u` and four). */
  invalid: boolean
  /** Overlong UTF-8 (`%c0%af` for `/`) or IIS `%u002f`: only ever used to evade. */
  overlong: boolean
}

/**
 * One round of percent decoding. Bytes are read as UTF-8; overlong forms are
 * decoded to what a lenient decoder would make of them (and flagged); a byte
 * that is not UTF-8 at all is read as Latin-1, as legacy servers do.
 * `plusIsSpace` applies `application/x-www-form-urlencoded` rules.
 */
export function percentDecode (s: string, plusIsSpace: boolean): DecodeRound {
  if (s.indexOf('%') === -1 && (!plusIsSpace || s.indexOf('+') === -1)) return { value: s, changed: false, invalid: false, overlong: false }
  let out = ''
  let invalid = false
  let overlong = false
  const bytes: number[] = []
  const flush = (): void => {
    if (bytes.length === 0) return
    const r = utf8(bytes)
    out += r.text
    if (r.overlong) overlong = true
    bytes.length = 0
  }
  let from = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 37 /* % */) {
      const h1 = hex(s.charCodeAt(i + 1))
      const h2 = hex(s.charCodeAt(i + 2))
      if (h1 >= 0 && h2 >= 0) {
        if (bytes.length === 0) out += s.slice(from, i)
        bytes.push(h1 * 16 + h2)
        i += 2
        from = i + 1
        continue
      }
      const u = s.charCodeAt(i + 1) | 0x20
      if (u === 117 /* u */) {
        const a = hex(s.charCodeAt(i + 2)); const b = hex(s.charCodeAt(i + 3))
        const d = hex(s.charCodeAt(i + 4)); const e = hex(s.charCodeAt(i + 5))
        if (a >= 0 && b >= 0 && d >= 0 && e >= 0) {
          if (bytes.length === 0) out += s.slice(from, i)
          flush()
          out += String.fromCharCode(((a * 16 + b) * 16 + d) * 16 + e)
          overlong = true
          i += 5
          from = i + 1
          continue
        }
      }
      invalid = true
    } else if (c === 43 /* + */ && plusIsSpace) {
      if (bytes.length === 0) out += s.slice(from, i)
      flush()
      out += ' '
      from = i + 1
      continue
    }
    if (bytes.length !== 0) { flush(); from = i }
  }
  if (bytes.length !== 0) flush()
  else out += s.slice(from)
  return { value: out, changed: true, invalid, overlong }
}

/** Lenient UTF-8: overlong forms decode (flagged), stray bytes read as Latin-1. */
function utf8 (b: number[]): { text: string, overlong: boolean } {
  let text = ''
  let overlong = false
  for (let i = 0; i < b.length; i++) {
    const c = b[i] as number
    const c1 = b[i + 1] ?? 0
    const c2 = b[i + 2] ?? 0
    const c3 = b[i + 3] ?? 0
    const cont1 = (c1 & 0xc0) === 0x80
    if (c < 0x80) { text += String.fromCharCode(c); continue }
    if ((c & 0xe0) === 0xc0 && cont1) {
      const cp = ((c & 0x1f) << 6) | (c1 & 0x3f)
      if (cp < 0x80) overlong = true
      text += String.fromCharCode(cp); i += 1; continue
    }
    if ((c & 0xf0) === 0xe0 && cont1 && (c2 & 0xc0) === 0x80) {
      const cp = ((c & 0x0f) << 12) | ((c1 & 0x3f) << 6) | (c2 & 0x3f)
      if (cp < 0x800) overlong = true
      text += cp >= 0xd800 && cp <= 0xdfff ? '\ufffd' : String.fromCharCode(cp); i += 2; continue
    }
    if ((c & 0xf8) === 0xf0 && cont1 && (c2 & 0xc0) === 0x80 && (c3 & 0xc0) === 0x80) {
      const cp = ((c & 0x07) << 18) | ((c1 & 0x3f) << 12) | ((c2 & 0x3f) << 6) | (c3 & 0x3f)
      if (cp < 0x10000) overlong = true
      text += cp > 0x10ffff ? '\ufffd' : String.fromCodePoint(cp); i += 3; continue
    }
    text += String.fromCharCode(c)
  }
  return { text, overlong }
}

/** Does `s` hold a `%XX` escape? */
function hasEscape (s: string): boolean {
  for (let i = s.indexOf('%'); i !== -1; i = s.indexOf('%', i + 1)) {
    if (hex(s.charCodeAt(i + 1)) >= 0 && hex(s.charCodeAt(i + 2)) >= 0) return true
  }
  return false
}

export interface Decoded {
  value: string
  /** Rounds that changed something: 2 or more means multiple encoding. */
  rounds: number
  invalid: boolean
  overlong: boolean
}

/**
 * Percent-decodes until nothing changes or `maxRounds` rounds ran: a value
 * encoded twice (`%252e`) is what a backend that decodes twice would read.
 * `+` is a space only in the first round (a `%2B` stays a plus).
 */
export function decodeRepeatedly (s: string, plusIsSpace: boolean, maxRounds: number): Decoded {
  let value = s
  let rounds = 0
  let invalid = false
  let overlong = false
  for (let i = 0; i < maxRounds; i++) {
    const r = percentDecode(value, plusIsSpace && i === 0)
    if (i === 0) invalid = r.invalid
    if (r.overlong) overlong = true
    if (!r.changed || r.value === value) break
    value = r.value
    rounds++
  }
  return { value, rounds, invalid, overlong }
}

/**
 * HTML named references an attacker can use to spell markup or a URL scheme.
 * Browsers know over two thousand; these are the ones that produce ASCII
 * punctuation or whitespace (the rest decode to letters nothing here looks for).
 * Names are case-sensitive in HTML (`&Tab;`, `&NewLine;`); a few lower-case
 * spellings no browser knows are decoded too: a rule reading a little more
 * than a browser costs nothing, one reading less is a bypass.
 */
const ENTITIES: Readonly<Record<string, string>> = {
  lt: '<', gt: '>', amp: '&', quot: '"', apos: '\'', nbsp: '\u00a0', tab: '\t', newline: '\n',
  colon: ':', semi: ';', lpar: '(', rpar: ')', sol: '/', bsol: '\\', equals: '=', comma: ',',
  period: '.', excl: '!', num: '#', dollar: '$', percnt: '%', plus: '+', lsqb: '[', rsqb: ']',
  lbrack: '[', rbrack: ']', lcub: '{', rcub: '}', lbrace: '{', rbrace: '}', grave: '`', hat: '^',
  quest: '?', verbar: '|', vert: '|', ast: '*', midast: '*', lowbar: '_', commat: '@', dash: '-',
  hyphen: '-', apostrophe: '\'', ldquo: '"', rdquo: '"', lsquo: '\'', rsquo: '\'', nl: '\n',
  LT: '<', GT: '>', AMP: '&', QUOT: '"', Tab: '\t', NewLine: '\n', Hat: '^',
}
const LONGEST_ENTITY = 10

/**
 * Decodes HTML character references: decimal and hex (any number of leading
 * zeros, `;` optional, as browsers accept them) and the named ones above,
 * with or without `;`. Runs twice, for `&amp;lt;`.
 */
export function decodeEntities (s: string): string {
  if (s.indexOf('&') === -1) return s
  const once = entitiesOnce(s)
  return once.indexOf('&') === -1 ? once : entitiesOnce(once)
}

function entitiesOnce (s: string): string {
  let out = ''
  let from = 0
  let i = s.indexOf('&')
  while (i !== -1) {
    let end = -1
    let text = ''
    if (s.charCodeAt(i + 1) === 35 /* # */) {
      let j = i + 2
      const isHex = (s.charCodeAt(j) | 0x20) === 120 /* x */
      if (isHex) j++
      while (s.charCodeAt(j) === 48 /* 0 */) j++
      let cp = 0
      let digits = 0
      const start = j
      for (; digits < 8; j++, digits++) {
        const d = isHex ? hex(s.charCodeAt(j)) : (s.charCodeAt(j) >= 48 && s.charCodeAt(j) <= 57 ? s.charCodeAt(j) - 48 : -1)
        if (d < 0) break
        cp = cp * (isHex ? 16 : 10) + d
      }
      if (j > start || s.charCodeAt(j - 1) === 48) {
        if (s.charCodeAt(j) === 59 /* ; */) j++
        end = j
        text = cp === 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ? '\ufffd' : String.fromCodePoint(cp)
      }
    } else {
      let j = i + 1
      while (j - i - 1 < LONGEST_ENTITY && isLetter(s.charCodeAt(j))) j++
      // Longest known name first: `&ltscript` is `<script`, as in a browser.
      for (let k = j; k > i + 1; k--) {
        const e = ENTITIES[s.slice(i + 1, k)]
        if (e !== undefined) { text = e; end = s.charCodeAt(k) === 59 ? k + 1 : k; break }
      }
    }
    if (end !== -1) {
      out += s.slice(from, i) + text
      from = end
      i = s.indexOf('&', end)
    } else {
      i = s.indexOf('&', i + 1)
    }
  }
  return out + s.slice(from)
}

function isLetter (c: number): boolean { return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) }

const NON_ASCII = /[^\x00-\x7f]/

/**
 * Unicode NFKC: fullwidth `＜ｓｃｒｉｐｔ＞`, ligatures and compatibility forms
 * become the ASCII they stand for. Skipped for pure ASCII (nothing to do).
 */
export function nfkc (s: string): string {
  return NON_ASCII.test(s) ? s.normalize('NFKC') : s
}

/**
 * JavaScript string escapes (`\x3c`, `\u003c`, `\u{3c}`, `\'`): what a payload
 * injected into a script context becomes once the engine reads it.
 */
export function decodeJsEscapes (s: string): string {
  if (s.indexOf('\\') === -1) return s
  let out = ''
  let from = 0
  for (let i = s.indexOf('\\'); i !== -1 && i < s.length; i = s.indexOf('\\', i)) {
    const n = s.charCodeAt(i + 1)
    let cp = -1
    let len = 0
    if (n === 120 /* x */) {
      const a = hex(s.charCodeAt(i + 2)); const b = hex(s.charCodeAt(i + 3))
      if (a >= 0 && b >= 0) { cp = a * 16 + b; len = 4 }
    } else if (n === 117 /* u */) {
      if (s.charCodeAt(i + 2) === 123 /* { */) {
        let v = 0
        let j = i + 3
        for (; j < i + 10 && hex(s.charCodeAt(j)) >= 0; j++) v = v * 16 + hex(s.charCodeAt(j))
        if (j > i + 3 && s.charCodeAt(j) === 125 && v <= 0x10ffff) { cp = v; len = j + 1 - i }
      } else {
        const a = hex(s.charCodeAt(i + 2)); const b = hex(s.charCodeAt(i + 3))
        const c = hex(s.charCodeAt(i + 4)); const d = hex(s.charCodeAt(i + 5))
        if (a >= 0 && b >= 0 && c >= 0 && d >= 0) { cp = ((a * 16 + b) * 16 + c) * 16 + d; len = 6 }
      }
    } else if (n === 39 || n === 34 || n === 92 || n === 47 || n === 96) {
      cp = n; len = 2
    }
    if (cp < 0) { i += 2; continue }
    out += s.slice(from, i) + String.fromCodePoint(cp)
    i += len
    from = i
  }
  return out + s.slice(from)
}

// The shell tricks that split a command word without changing what runs:
// `c'a't`, `c\at`, `w^h^o^a^m^i` (cmd.exe), `$@`/`$1` (empty), `${IFS}`;
// typographic quotes (`pa’ss’wd`) are read as the quotes they imitate.
const IFS = /\$\{ifs\}|\$ifs(?:\$\d)?/g
const WORD_QUOTES = /(?<=[a-z0-9/])(?:''|""|['"\u2018\u2019\u201c\u201d])(?=[a-z0-9/])/g
/** A short variable glued to a word (`/etc$u/passwd$u`) or right after a separator (`; $u cat`): unset, it expands to nothing. */
const GLUED_VARS = /(?<=[a-z0-9/])\$[a-z_][a-z0-9_]{0,2}(?=[/\s;|&'")]|$)|(?<=[;|&]\s{0,4})\$[a-z_][a-z0-9_]{0,2}\s/g
const BACKSLASH = /\\(?=[a-z0-9/.-])/g
const EMPTY_VARS = /\$[@*1-9]|\^/g
const BRACES = /\{([a-z0-9_./-]{1,40}),/g
const SPACES = /[^\S\n]+|[\x00-\x09\x0b-\x1f]+/g
const LINE_BREAKS = /[\r\n]+/g

/**
 * The shell's view of (lower-cased) text: quoting and escaping tricks undone,
 * `${IFS}` and `{cmd,arg}` brace lists turned into spaces, whitespace collapsed
 * (line breaks kept, as one `\n`).
 */
export function shellView (text: string): string {
  let s = text
  if (s.indexOf('$') !== -1) s = s.replace(IFS, ' ')
  if (s.indexOf('$') !== -1) s = s.replace(GLUED_VARS, '')
  if (s.indexOf('\'') !== -1 || s.indexOf('"') !== -1 || NON_ASCII.test(s)) s = s.replace(WORD_QUOTES, '')
  if (s.indexOf('\\') !== -1) s = s.replace(BACKSLASH, '')
  if (s.indexOf('$') !== -1 || s.indexOf('^') !== -1) s = s.replace(EMPTY_VARS, '')
  if (s.indexOf('{') !== -1) s = s.replace(BRACES, ' $1 ')
  // A line break ends a command as `;` does; the rules see it as `\n`.
  if (s.indexOf('\r') !== -1 || s.indexOf('\n') !== -1) s = s.replace(LINE_BREAKS, '\n')
  return s.replace(SPACES, ' ')
}

const CONTROLS = /[\x00-\x1f\x7f]+/g

/**
 * One value a rule may read, with its normalised views computed on first use
 * and kept: most values pass through a handful of rules, and most views are
 * never needed for them.
 */
export class Value {
  readonly raw: string
  readonly #plusIsSpace: boolean
  readonly #rounds: number
  #decoded: Decoded | undefined
  #clean: string | undefined
  #text: string | undefined
  #js: string | undefined
  #compact: string | undefined
  #shell: string | undefined
  #fsPath: string | undefined
  #memo: Map<object, unknown> | undefined

  constructor (raw: string, plusIsSpace: boolean, maxDecodeRounds: number) {
    this.raw = raw
    this.#plusIsSpace = plusIsSpace
    this.#rounds = maxDecodeRounds
  }

  #decode (): Decoded {
    this.#decoded ??= decodeRepeatedly(this.raw, this.#plusIsSpace, this.#rounds)
    return this.#decoded
  }

  /**
   * The same text read with form rules (`+` as a space), when it was not
   * read so but carries percent escapes next to a `+`: whoever encoded it
   * spelled spaces as `+`, and a backend that form-decodes it reads them so.
   * Undefined otherwise. Both readings are inspected: one that does not
   * decode sees the plus.
   */
  plusReading (): Value | undefined {
    if (this.#plusIsSpace || this.raw.indexOf('+') === -1 || !hasEscape(this.raw)) return undefined
    return new Value(this.raw, true, this.#rounds)
  }

  /** Percent-decoded (repeatedly): still with NUL and case. */
  get decoded (): string { return this.#decode().value }
  /** How many decoding rounds changed the value. */
  get decodeRounds (): number { return this.#decode().rounds }
  get invalidEncoding (): boolean { return this.#decode().invalid }
  get overlongEncoding (): boolean { return this.#decode().overlong }

  /** Decoded, entity-decoded, NFKC, without NUL; case kept. */
  get clean (): string {
    if (this.#clean === undefined) {
      let s = nfkc(decodeEntities(this.decoded))
      if (s.indexOf('\0') !== -1) s = s.replaceAll('\0', '')
      this.#clean = s
    }
    return this.#clean
  }

  /** `clean`, case-folded: what most rules read. */
  get text (): string {
    this.#text ??= this.clean.toLowerCase()
    return this.#text
  }

  /** `text` with JavaScript escapes decoded. */
  get js (): string {
    if (this.#js === undefined) {
      const c = this.clean
      this.#js = c.indexOf('\\') === -1 ? this.text : nfkc(decodeJsEscapes(c)).toLowerCase()
    }
    return this.#js
  }

  /**
   * `text` without tabs, line breaks and other control characters: the URL
   * parser drops them anywhere in a URL (`java\tscript:`). Spaces stay: they
   * are not ignored, so "java script:" is not a scheme.
   */
  get compact (): string {
    this.#compact ??= this.text.replace(CONTROLS, '')
    return this.#compact
  }

  /** `text` as a shell would tokenise it. */
  get shell (): string {
    this.#shell ??= shellView(this.text)
    return this.#shell
  }

  /** `text` with `\` as `/`: Windows and Unix paths look alike. */
  get fsPath (): string {
    this.#fsPath ??= this.text.indexOf('\\') === -1 ? this.text : this.text.replaceAll('\\', '/')
    return this.#fsPath
  }

  /** A per-value cache for views a rule family computes itself (SQL tokens). */
  memo<T> (key: object, compute: (v: Value) => T): T {
    this.#memo ??= new Map()
    if (this.#memo.has(key)) return this.#memo.get(key) as T
    const r = compute(this)
    this.#memo.set(key, r)
    return r
  }
}
