import type { Value } from '../normalize.ts'
import { pattern, type Part, type ValueRule } from '../rule.ts'

/**
 * SQL injection, found by structure rather than by keyword: a small SQL
 * tokenizer (strings, numbers, keywords, operators, comments) reads each value
 * as the database would in three contexts — as it stands (a numeric
 * parameter), and as if it followed an open `'` or `"` (a string parameter).
 * A rule then looks for what only an injection does: a string closed and
 * followed by a boolean expression, a UNION with a select list, a second
 * statement, a time delay. Words in prose ("select a plan", "O'Brien", "1=1
 * in math") never form those sequences, so they pass.
 */

type Kind = 's' | 'n' | 'k' | '&' | 'o' | 'b' | 'v' | 'f' | '(' | ')' | ',' | ';' | 'c' | 'x'

export interface Token {
  k: Kind
  /** Lower-case text (a string's content without its quotes). */
  v: string
  start: number
  end: number
  /** For strings: the closing quote was there. */
  closed: boolean
}

const LOGIC = new Set(['and', 'or', 'xor'])
const OPERATOR_WORDS = new Set(['like', 'rlike', 'regexp', 'is', 'in', 'between', 'sounds', 'div', 'mod', 'not', 'glob', 'collate', 'escape', 'similar', 'match', 'against'])
const LITERALS = new Set(['true', 'false', 'null', 'unknown'])
const KEYWORDS = new Set([
  'select', 'union', 'from', 'where', 'insert', 'into', 'values', 'update', 'set', 'delete', 'drop', 'create',
  'alter', 'truncate', 'table', 'database', 'schema', 'exec', 'execute', 'declare', 'having', 'group', 'order',
  'by', 'limit', 'offset', 'procedure', 'waitfor', 'delay', 'shutdown', 'grant', 'revoke', 'join', 'distinct',
  'all', 'case', 'when', 'then', 'else', 'end', 'as', 'exists', 'outfile', 'dumpfile', 'begin', 'top', 'fetch',
  'returning', 'load', 'infile', 'view', 'dual', 'analyse', 'analyze',
])
/** Words read as a function when a `(` follows: the ones injections call. */
const FUNCTIONS = new Set([
  'sleep', 'benchmark', 'pg_sleep', 'dbms_lock.sleep', 'sys.dbms_lock.sleep', 'dbms_pipe.receive_message', 'randomblob',
  'substring', 'substr', 'mid', 'ascii', 'ord', 'char', 'chr', 'nchar', 'concat', 'concat_ws', 'group_concat',
  'string_agg', 'listagg', 'length', 'len', 'char_length', 'count', 'user', 'current_user', 'system_user',
  'session_user', 'database', 'schema', 'version', 'load_file', 'extractvalue', 'updatexml', 'if', 'iif',
  'ifnull', 'isnull', 'nullif', 'coalesce', 'cast', 'convert', 'hex', 'unhex', 'bin', 'md5', 'sha1', 'rand',
  'floor', 'exp', 'name_const', 'row', 'left', 'right', 'lower', 'upper', 'lcase', 'ucase', 'trim', 'replace',
  'reverse', 'instr', 'locate', 'position', 'elt', 'make_set', 'export_set', 'geometrycollection', 'polygon',
  'multipoint', 'multipolygon', 'linestring', 'multilinestring', 'json_extract', 'json_keys', 'gtid_subset',
  'utl_inaddr.get_host_name', 'utl_inaddr.get_host_address', 'utl_http.request', 'ctxsys.drithsx.sn',
  'xp_cmdshell', 'openrowset', 'opendatasource', 'pg_read_file', 'pg_ls_dir', 'lo_import', 'lo_export',
  'current_database', 'sys_context', 'to_char', 'strcmp', 'sqlite_version', 'db_name', 'host_name',
  'suser_name', 'is_srvrolemember', 'has_dbaccess', 'sys_eval', 'sys_exec', 'procedure_analyse', 'exists',
  'select', 'waitfor', 'extract', 'quote', 'unicode', 'soundex', 'crc32', 'uuid', 'sysdate', 'now', 'user_name',
  'suser_sname', 'current_setting', 'pg_backend_pid', 'inet_server_addr', 'connection_id', 'last_insert_id',
])
/** Functions only an attack calls: file access, out-of-band, error-based extraction. */
const DANGEROUS = new Set([
  'load_file', 'extractvalue', 'updatexml', 'xp_cmdshell', 'openrowset', 'opendatasource', 'pg_read_file',
  'pg_ls_dir', 'lo_import', 'lo_export', 'utl_inaddr.get_host_name', 'utl_inaddr.get_host_address',
  'utl_http.request', 'ctxsys.drithsx.sn', 'name_const', 'sys_eval', 'sys_exec', 'group_concat', 'gtid_subset',
  'dbms_pipe.receive_message', 'procedure_analyse', 'make_set', 'geometrycollection', 'multipoint',
  'multipolygon', 'multilinestring', 'randomblob', 'is_srvrolemember', 'has_dbaccess',
])
const CATALOG = /^(?:information_schema|mysql\.(?:user|db)|performance_schema|sys\.(?:objects|tables|columns|databases|sysobjects|syslogins|sql_logins)|sysobjects|syscolumns|systables|sysdatabases|syslogins|pg_(?:shadow|user|catalog|tables|database|authid|roles|namespace)|sqlite_(?:master|schema|temp_master)|all_tab(?:les|_columns)|all_users|user_(?:tables|tab_columns|users|objects)|dba_(?:users|tables)|msysobjects|msysaccessobjects|master\.\.sys\w*|v\$(?:version|instance|database))(?:\.|$)/
const STATEMENTS = new Set(['select', 'insert', 'update', 'delete', 'drop', 'create', 'alter', 'truncate', 'exec', 'execute', 'declare', 'shutdown', 'waitfor', 'grant', 'revoke', 'set', 'begin', 'load', 'replace'])
const COMPARISONS = new Set(['=', '==', '<=>', '!=', '<>', '<', '>', '<=', '>=', 'like', 'rlike', 'regexp', 'is', 'in', 'between', 'sounds', 'glob', 'similar', 'not'])

function isSpace (c: number): boolean { return c <= 32 || c === 0xa0 || c === 0x2028 || c === 0x2029 || c === 0xfeff }
function isDigit (c: number): boolean { return c >= 48 && c <= 57 }
function isWordStart (c: number): boolean { return (c >= 97 && c <= 122) || c === 95 || c === 36 || c >= 0xc0 }
function isWord (c: number): boolean { return isWordStart(c) || isDigit(c) || c === 46 /* . */ }

/**
 * Tokenizes lower-case text the way SQL dialects broadly agree on. Block
 * comments are whitespace (a MySQL `/*!` comment's content is code: only its
 * markers are dropped); `--` and `#` become comment tokens and the text after
 * them is still tokenized, so a dialect without `#` comments cannot hide code
 * behind one. Linear: every branch consumes what it reads.
 */
export function tokenize (s: string): Token[] {
  const toks: Token[] = []
  const n = s.length
  let i = 0
  while (i < n) {
    const c = s.charCodeAt(i)
    if (isSpace(c)) { i++; continue }
    const start = i
    if (c === 39 || c === 34) { // ' "
      let j = i + 1
      let closed = false
      while (j < n) {
        const d = s.charCodeAt(j)
        if (d === 92) { j += 2; continue }
        if (d === c) {
          if (s.charCodeAt(j + 1) === c) { j += 2; continue }
          closed = true
          break
        }
        j++
      }
      const end = Math.min(j, n)
      toks.push({ k: 's', v: s.slice(i + 1, end), start, end: closed ? end + 1 : end, closed })
      i = closed ? end + 1 : n
      continue
    }
    if (c === 96) { // ` quoted identifier
      const j = s.indexOf('`', i + 1)
      const end = j === -1 ? n : j
      toks.push({ k: 'b', v: s.slice(i + 1, end), start, end: j === -1 ? n : j + 1, closed: j !== -1 })
      i = j === -1 ? n : j + 1
      continue
    }
    if (isDigit(c) || (c === 46 && isDigit(s.charCodeAt(i + 1)))) {
      let j = i + 1
      if (c === 48 && (s.charCodeAt(j) | 0x20) === 120 /* 0x */) {
        j++
        while (j < n && (isDigit(s.charCodeAt(j)) || (s.charCodeAt(j) >= 97 && s.charCodeAt(j) <= 102))) j++
      } else {
        while (j < n && (isDigit(s.charCodeAt(j)) || s.charCodeAt(j) === 46)) j++
        if (s.charCodeAt(j) === 101 /* e */ && (isDigit(s.charCodeAt(j + 1)) || ((s.charCodeAt(j + 1) === 43 || s.charCodeAt(j + 1) === 45) && isDigit(s.charCodeAt(j + 2))))) {
          j += 2
          while (j < n && isDigit(s.charCodeAt(j))) j++
        }
      }
      toks.push({ k: 'n', v: s.slice(i, j), start, end: j, closed: true })
      i = j
      continue
    }
    if (isWordStart(c)) {
      let j = i + 1
      while (j < n && isWord(s.charCodeAt(j))) j++
      const w = s.slice(i, j)
      toks.push({ k: classify(w), v: w, start, end: j, closed: true })
      i = j
      continue
    }
    if (c === 64) { // @ @@
      let j = i + 1
      if (s.charCodeAt(j) === 64) j++
      while (j < n && isWord(s.charCodeAt(j))) j++
      toks.push({ k: 'v', v: s.slice(i, j), start, end: j, closed: true })
      i = j
      continue
    }
    const c1 = s.charCodeAt(i + 1)
    if (c === 45 && c1 === 45) { toks.push({ k: 'c', v: '--', start, end: i + 2, closed: true }); i += 2; continue }
    if (c === 35) { toks.push({ k: 'c', v: '#', start, end: i + 1, closed: true }); i++; continue }
    if (c === 47 && c1 === 42) { // /*
      if (s.charCodeAt(i + 2) === 33) { // /*! : versioned, its content runs
        let j = i + 3
        while (j < n && isDigit(s.charCodeAt(j))) j++
        i = j
        continue
      }
      const close = s.indexOf('*/', i + 2)
      if (close === -1) { toks.push({ k: 'c', v: '/*', start, end: n, closed: false }); break }
      i = close + 2
      continue
    }
    if (c === 42 && c1 === 47) { i += 2; continue } // the end of a /*! comment
    if (c === 40 || c === 41 || c === 44 || c === 59) {
      toks.push({ k: s[i] as Kind, v: s[i] as string, start, end: i + 1, closed: true })
      i++
      continue
    }
    if ((c === 124 && c1 === 124) || (c === 38 && c1 === 38)) {
      toks.push({ k: '&', v: s.slice(i, i + 2), start, end: i + 2, closed: true })
      i += 2
      continue
    }
    if (c === 60 || c === 62 || c === 61 || c === 33) { // < > = !
      let j = i + 1
      while (j < i + 3 && (s.charCodeAt(j) === 61 || s.charCodeAt(j) === 62 || s.charCodeAt(j) === 60)) j++
      toks.push({ k: 'o', v: s.slice(i, j), start, end: j, closed: true })
      i = j
      continue
    }
    if (c === 43 || c === 45 || c === 42 || c === 47 || c === 37 || c === 94 || c === 126 || c === 124 || c === 38) {
      toks.push({ k: 'o', v: s[i] as string, start, end: i + 1, closed: true })
      i++
      continue
    }
    toks.push({ k: 'x', v: s[i] as string, start, end: i + 1, closed: true })
    i++
  }
  for (let t = 0; t + 1 < toks.length; t++) {
    const tok = toks[t] as Token
    if ((tok.k === 'b' || tok.k === 'k') && (toks[t + 1] as Token).k === '(' && FUNCTIONS.has(tok.v)) tok.k = 'f'
  }
  return toks
}

function classify (w: string): Kind {
  if (LOGIC.has(w)) return '&'
  if (OPERATOR_WORDS.has(w)) return 'o'
  if (LITERALS.has(w)) return 'n'
  if (KEYWORDS.has(w)) return 'k'
  return 'b'
}

/** `s` without its block comments (`un/**\/ion` → `union`), MySQL `/*!` ones aside. */
export function joinComments (s: string): string {
  let out = ''
  let from = 0
  let i = s.indexOf('/*')
  while (i !== -1) {
    if (s.charCodeAt(i + 2) === 33) { i = s.indexOf('/*', i + 2); continue }
    const close = s.indexOf('*/', i + 2)
    if (close === -1) break
    out += s.slice(from, i)
    from = close + 2
    i = s.indexOf('/*', from)
  }
  return out + s.slice(from)
}

/**
 * `s` with `--` and `#` comments removed up to the line break: how MySQL reads
 * `UNION -- x⏎SELECT`. The plain reading keeps the comment's words (a dialect
 * without `#` comments runs them), this one drops them; rules see both.
 */
export function stripLineComments (s: string): string {
  let out = ''
  let from = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 35 || (c === 45 && s.charCodeAt(i + 1) === 45)) {
      const nl = s.indexOf('\n', i)
      if (nl === -1) break
      out += s.slice(from, i) + ' '
      from = nl
      i = nl
    }
  }
  return out + s.slice(from)
}

/** One reading of a value: its tokens and the text they index. */
interface Reading {
  readonly toks: Token[]
  readonly src: string
  /** Read as if it followed an open quote: the first string token is the break-out. */
  readonly quoted: boolean
}

const kReadings = {}

/**
 * Every reading of `v`: as is, after `'`, after `"` (only when the value holds
 * that quote: otherwise it is one unterminated string), and the same again
 * with block comments joined (comment-split keywords) and with line comments
 * dropped, when there are any.
 */
export function readings (v: Value): Reading[] {
  return v.memo(kReadings, (val) => {
    const text = val.text
    const out: Reading[] = []
    const variants = [text]
    if (text.indexOf('/*') !== -1) variants.push(joinComments(text))
    if (text.indexOf('\n') !== -1 && (text.indexOf('#') !== -1 || text.indexOf('--') !== -1)) variants.push(stripLineComments(text))
    for (const s of variants) {
      out.push({ toks: tokenize(s), src: s, quoted: false })
      if (s.indexOf('\'') !== -1) { const q = '\'' + s; out.push({ toks: tokenize(q), src: q, quoted: true }) }
      if (s.indexOf('"') !== -1) { const q = '"' + s; out.push({ toks: tokenize(q), src: q, quoted: true }) }
    }
    return out
  })
}

function excerpt (r: Reading, from: number, to: number): string {
  const a = r.toks[from] as Token
  const b = r.toks[Math.min(to, r.toks.length - 1)] as Token
  return r.src.slice(a.start, b.end)
}

function at (r: Reading, i: number): Token | undefined { return r.toks[i] }

/** Skips up to `max` tokens of kind `kind` (closing parentheses after a break-out). */
function skip (r: Reading, i: number, kind: Kind, max = 4): number {
  let n = 0
  while (n < max && i < r.toks.length && (r.toks[i] as Token).k === kind) { i++; n++ }
  return i
}

/** Skips `(` and a unary NOT / `!`. */
function skipOpen (r: Reading, i: number): number {
  for (let n = 0; n < 6; n++) {
    const t = at(r, i)
    if (t === undefined) return i
    if (t.k === '(' || (t.k === 'o' && (t.v === 'not' || t.v === '!' || t.v === '-' || t.v === '+' || t.v === '~'))) { i++; continue }
    return i
  }
  return i
}

function isOperand (t: Token | undefined): boolean {
  return t !== undefined && (t.k === 'n' || t.k === 's' || t.k === 'b' || t.k === 'v' || t.k === 'f' || t.k === '(')
}

/** SELECT, whether or not a `(` made it look like a call. */
function isSelect (t: Token | undefined): boolean { return t !== undefined && t.v === 'select' && (t.k === 'k' || t.k === 'f') }

function isComparison (t: Token | undefined): boolean { return t !== undefined && t.k === 'o' && COMPARISONS.has(t.v) }

function numeric (t: Token): number | undefined {
  if (t.k !== 'n' && t.k !== 's') return undefined
  if (t.v === 'true') return 1
  if (t.v === 'false') return 0
  const x = Number(t.v)
  return t.v !== '' && Number.isFinite(x) ? x : undefined
}

/** `a op b` that holds whatever the row: `1=1`, `'a'='a'`, `2>1`, `'a'<>'b'`. */
function tautology (a: Token, op: Token, b: Token): boolean {
  const lit = (t: Token): boolean => t.k === 'n' || t.k === 's' || t.k === 'b'
  if (!lit(a) || !lit(b)) return false
  const x = numeric(a)
  const y = numeric(b)
  switch (op.v) {
    case '=': case '==': case '<=>': case 'like': case 'is': case 'rlike': case 'regexp': case 'glob': case 'sounds':
      return a.v === b.v || (x !== undefined && x === y)
    case '!=': case '<>':
      return a.k !== 'b' && b.k !== 'b' && a.v !== b.v
    case '>': return x !== undefined && y !== undefined && x > y
    case '<': return x !== undefined && y !== undefined && x < y
    case '>=': return x !== undefined && y !== undefined && x >= y
    case '<=': return x !== undefined && y !== undefined && x <= y
  }
  return false
}

/**
 * After `' OR` (or `1 AND`): is what follows a boolean SQL expression? A
 * function call, a subquery, a literal on its own before the end or a
 * comment (`' or 1--`), a comparison — but not two prose words around `=`,
 * unless they are the same word — or literals joined by an operator MySQL
 * evaluates as a number (`' or ''-'`). A lone literal after a numeric
 * parameter needs a comment after it: "1 or 2" is a choice, not an injection.
 * Returns the index of the last token of the evidence, or -1.
 */
function booleanTail (r: Reading, i: number, numericContext: boolean): number {
  i = skipOpen(r, i)
  const y = at(r, i)
  if (y === undefined) return -1
  if (y.k === 'f' || isSelect(y)) return i + 1
  if (y.k === 'v') return i
  // `user_name()`, `version()`: an empty call is code, whatever the name.
  if (y.k === 'b' && at(r, i + 1)?.k === '(' && at(r, i + 2)?.k === ')') return i + 2
  if (y.k === 'n' || y.k === 's' || y.k === 'b') {
    const z = at(r, i + 1)
    if (z === undefined || z.k === 'c' || z.k === ';' || (z.k === ')' && (at(r, i + 2) === undefined || (at(r, i + 2) as Token).k === 'c'))) {
      if (y.k !== 'n') return -1
      return numericContext && z?.k !== 'c' ? -1 : i
    }
    if (isComparison(z)) {
      let j = i + 2
      if (z.v === 'not' || z.v === 'is') { const z2 = at(r, j); if (z2 !== undefined && (z2.v === 'not' || isComparison(z2))) j++ }
      const w = at(r, skipOpen(r, j))
      if (!isOperand(w) && !isSelect(w)) return -1
      const ww = w as Token
      if (y.k === 'b' && ww.k === 'b' && y.v !== ww.v) return -1
      return j
    }
    if (z.k === 'o' && y.k !== 'b' && !numericContext) {
      const w = at(r, i + 2)
      if (w !== undefined && (w.k === 's' || w.k === 'n')) return i + 2
    }
  }
  return -1
}

/** Only a few characters (`-- -`, `#`) after a comment that follows the break-out. */
function commentEnds (r: Reading, c: Token): boolean {
  return r.src.slice(c.end).trim().length <= 4
}

/**
 * After a break-out (a closed string, or a leading number): does SQL follow?
 * Returns the index of the last token of the evidence, or -1. Each case asks
 * for what only SQL has after the keyword, so "Workers' union meeting",
 * "Dogs' -- great" or "Parents' limit 5 per day" stay prose.
 */
function afterBreak (r: Reading, i: number, numericContext: boolean): number {
  const x = at(r, i)
  if (x === undefined) return -1
  switch (x.k) {
    case '&': return booleanTail(r, i + 1, numericContext)
    case ';': {
      const y = at(r, i + 1)
      if (y === undefined) return numericContext ? -1 : i
      if (y.k === 'c') return commentEnds(r, y) ? i + 1 : -1
      return y.k === 'k' && STATEMENTS.has(y.v) ? i + 1 : -1
    }
    case 'c': return !numericContext && commentEnds(r, x) ? i : -1
    case 'o': {
      // `'='`, `'-'`, `' || (select …)`: an operator joining the string to SQL.
      if (numericContext) {
        if (!isComparison(x)) return -1
        const j = skipOpen(r, i + 1)
        return isSelect(at(r, j)) ? j : -1
      }
      const j = skipOpen(r, i + 1)
      const y = at(r, j)
      if (y === undefined || !(y.k === 's' || y.k === 'n' || y.k === 'f' || y.k === 'v' || isSelect(y))) return -1
      if (y.k === 'f' || y.k === 'k') return j
      const z = at(r, j + 1)
      return z === undefined || z.k === 'c' || z.k === '&' || z.k === ';' || z.k === 'o' ? j : -1
    }
    case 'k': {
      const y = at(r, i + 1)
      const z = at(r, i + 2)
      switch (x.v) {
        case 'having': return booleanTail(r, i + 1, numericContext)
        case 'waitfor': return y !== undefined && (y.v === 'delay' || y.v === 'time') ? i + 1 : -1
        case 'procedure': return y !== undefined && (y.v === 'analyse' || y.v === 'analyze') ? i + 1 : -1
        case 'order': case 'group': {
          // `' ORDER BY 3--` (column counting), `' GROUP BY x HAVING …`.
          if (y?.v !== 'by' || z === undefined) return -1
          const after = at(r, i + 3)
          if (z.k === 'n' && (after === undefined || after.k === 'c' || after.k === ',' || after.k === ';' || after.k === '&')) return i + 2
          if (z.k === 'b' && after !== undefined && (after.k === 'c' || (after.k === 'k' && after.v === 'having'))) return i + 3
          return -1
        }
        case 'into': return y !== undefined && (y.v === 'outfile' || y.v === 'dumpfile') ? i + 1 : -1
        case 'limit': {
          const after = at(r, i + 2)
          return y !== undefined && y.k === 'n' && after !== undefined && (after.k === 'c' || after.k === ',' || after.k === ';') ? i + 2 : -1
        }
      }
      return -1
    }
  }
  return -1
}

function inReadings (v: Value, fn: (r: Reading) => string | undefined): string | undefined {
  for (const r of readings(v)) {
    const m = fn(r)
    if (m !== undefined) return m
  }
  return undefined
}

/** `' OR 1=1`, `admin'--`, `'; DROP …`, `') UNION …`: a string closed, then SQL. */
function quoteBreak (v: Value): string | undefined {
  return inReadings(v, (r) => {
    if (!r.quoted) return undefined
    const t0 = at(r, 0)
    if (t0 === undefined || t0.k !== 's' || !t0.closed) return undefined
    const i = skip(r, 1, ')')
    const end = afterBreak(r, i, false)
    return end === -1 ? undefined : excerpt(r, 0, end + 1)
  })
}

/** `1 OR 1=1`, `1) AND SLEEP(5)`, `1; DROP …`, `1 ORDER BY 5`: a numeric parameter broken out of. */
function numericBreak (v: Value): string | undefined {
  return inReadings(v, (r) => {
    if (r.quoted) return undefined
    let i = 0
    if (at(r, 0)?.k === 'o' && at(r, 0)?.v === '-') i = 1
    const t0 = at(r, i)
    if (t0 === undefined || t0.k !== 'n' || LITERALS.has(t0.v)) return undefined
    const j = skip(r, i + 1, ')')
    const end = afterBreak(r, j, true)
    return end === -1 ? undefined : excerpt(r, 0, end + 1)
  })
}

/** `… OR 1=1`, `… AND 'a'='a'` anywhere: a condition that is always true. */
function tautologyAnywhere (v: Value): string | undefined {
  return inReadings(v, (r) => {
    const toks = r.toks
    for (let i = 0; i < toks.length; i++) {
      if ((toks[i] as Token).k !== '&') continue
      const j = skipOpen(r, i + 1)
      const a = at(r, j); const op = at(r, j + 1); const b = at(r, j + 2)
      if (a !== undefined && op !== undefined && b !== undefined && op.k === 'o' && tautology(a, op, b)) return excerpt(r, i, j + 2)
    }
    return undefined
  })
}

/** `UNION [ALL] SELECT` followed by a select list (not "union select committee"). */
function unionSelect (v: Value): string | undefined {
  return inReadings(v, (r) => {
    const toks = r.toks
    for (let i = 0; i < toks.length; i++) {
      const t = toks[i] as Token
      if (t.k !== 'k' || t.v !== 'union') continue
      let j = i + 1
      for (let n = 0; n < 6; n++) {
        const u = at(r, j)
        if (u !== undefined && (u.k === 'c' || u.k === '(' || (u.k === 'k' && (u.v === 'all' || u.v === 'distinct')))) j++
        else break
      }
      const sel = at(r, j)
      if (sel === undefined || !(sel.v === 'select' && (sel.k === 'k' || sel.k === 'f'))) continue
      const y = at(r, j + 1)
      if (y === undefined) continue
      if (y.k === 'n' || y.k === 'v' || y.k === 'f' || y.k === 's' || y.k === '(' || (y.k === 'o' && y.v === '*') ||
        (y.k === 'k' && (y.v === 'distinct' || y.v === 'all' || y.v === 'top'))) return excerpt(r, i, j + 1)
      if (y.k === 'b') {
        const z = at(r, j + 2)
        if (z !== undefined && (z.k === ',' || z.k === ')' || z.k === 'c' || (z.k === 'k' && (z.v === 'from' || z.v === 'into')))) return excerpt(r, i, j + 2)
      }
      // A signed or negated first column: `UNION SELECT -7431.1, name`, `UNION SELECT ~0`.
      if (y.k === 'o' && (y.v === '-' || y.v === '+' || y.v === '~' || y.v === '!')) {
        const z = at(r, j + 2)
        if (z !== undefined && (z.k === 'n' || z.k === 'v' || z.k === 'f' || z.k === '(')) return excerpt(r, i, j + 2)
      }
    }
    return undefined
  })
}

/** `; DROP TABLE`, `; EXEC xp_…`, `; SELECT … FROM`: a second statement. */
function stacked (v: Value): string | undefined {
  return inReadings(v, (r) => {
    const toks = r.toks
    for (let i = 0; i + 1 < toks.length; i++) {
      if ((toks[i] as Token).k !== ';') continue
      const s = toks[i + 1] as Token
      const a = at(r, i + 2)
      if (a === undefined) {
        if (s.v === 'shutdown') return excerpt(r, i, i + 1)
        continue
      }
      let hit = false
      switch (s.v) {
        case 'drop': case 'truncate': case 'alter': case 'create':
          hit = ['table', 'database', 'schema', 'view', 'procedure', 'function', 'user', 'index', 'trigger', 'login'].includes(a.v)
          break
        case 'insert': hit = a.v === 'into' || (a.k === 'b' && at(r, i + 3)?.v === 'values'); break
        case 'delete': hit = a.v === 'from'; break
        case 'update': hit = a.k === 'b' && at(r, i + 3)?.v === 'set'; break
        case 'exec': case 'execute': hit = a.k === 'v' || a.k === '(' || a.k === 'f' || /^(?:xp_|sp_|master\.)/.test(a.v); break
        case 'declare': hit = a.k === 'v'; break
        case 'waitfor': hit = a.v === 'delay' || a.v === 'time'; break
        case 'shutdown': hit = a.k === 'c' || a.v === 'with'; break
        case 'select': {
          for (let j = i + 2; j < Math.min(toks.length, i + 24); j++) {
            const u = toks[j] as Token
            if (u.k === 'k' && u.v === 'from') { hit = true; break }
            if (u.k === 'f' && (u.v === 'sleep' || u.v === 'pg_sleep' || u.v === 'benchmark' || DANGEROUS.has(u.v))) { hit = true; break }
            if (u.k === 'v' && u.v.startsWith('@@')) { hit = true; break }
          }
          break
        }
        case 'set': hit = a.k === 'v' && at(r, i + 3)?.v === '='; break
      }
      if (hit) return excerpt(r, i, i + 2)
    }
    return undefined
  })
}

/** `SLEEP(5)`, `BENCHMARK(1e7, …)`, `PG_SLEEP(…)`, `WAITFOR DELAY '0:0:5'`: blind, by the clock. */
function timeDelay (v: Value): string | undefined {
  return inReadings(v, (r) => {
    const toks = r.toks
    for (let i = 0; i < toks.length; i++) {
      const t = toks[i] as Token
      if (t.k === 'f') {
        const a = at(r, i + 2)
        const b = at(r, i + 3)
        switch (t.v) {
          case 'sleep':
            // `sleep(5)`, `sleep((select …))`, not "sleep (8 hours)".
            if (a !== undefined && ((a.k === 'n' && b?.k === ')') || a.k === '(' || a.k === 'f' || (a.k === 'k' && a.v === 'select'))) return excerpt(r, i, i + 3)
            break
          case 'benchmark':
            if (a !== undefined && a.k === 'n' && b?.k === ',') return excerpt(r, i, i + 3)
            break
          case 'pg_sleep': case 'dbms_lock.sleep': case 'sys.dbms_lock.sleep': case 'dbms_pipe.receive_message':
            return excerpt(r, i, i + 2)
        }
      } else if (t.k === 'k' && t.v === 'waitfor') {
        const a = at(r, i + 1)
        const b = at(r, i + 2)
        if (a !== undefined && (a.v === 'delay' || a.v === 'time') && b !== undefined && (b.k === 's' || b.k === 'n' || b.k === 'v')) return excerpt(r, i, i + 2)
      }
    }
    return undefined
  })
}

/** File access, out-of-band and error-based functions; system catalogs; `@@version`; INTO OUTFILE. */
function dangerous (v: Value): string | undefined {
  return inReadings(v, (r) => {
    const toks = r.toks
    for (let i = 0; i < toks.length; i++) {
      const t = toks[i] as Token
      if (t.k === 'f' && DANGEROUS.has(t.v)) return excerpt(r, i, i + 1)
      if ((t.k === 'b' || t.k === 'f') && (CATALOG.test(t.v) || t.v.startsWith('xp_cmdshell'))) return excerpt(r, i, i)
      if (t.k === 'v' && /^@@(?:version|datadir|hostname|basedir|tmpdir|servername|spid|language|global\.|session\.)/.test(t.v)) return excerpt(r, i, i)
      if (t.k === 'k' && t.v === 'into') {
        const a = at(r, i + 1)
        if (a !== undefined && (a.v === 'outfile' || a.v === 'dumpfile')) return excerpt(r, i, i + 1)
      }
    }
    return undefined
  })
}

/** `CHAR(97)+CHAR(100)…`, `CONCAT(0x…)`: strings spelt by code so quotes are not needed. */
function charEncoding (v: Value): string | undefined {
  return inReadings(v, (r) => {
    const toks = r.toks
    let chars = 0
    for (let i = 0; i < toks.length; i++) {
      const t = toks[i] as Token
      if (t.k !== 'f') continue
      const a = at(r, i + 2)
      if (a === undefined) continue
      if (t.v === 'char' || t.v === 'chr' || t.v === 'nchar') {
        if (a.k !== 'n') continue
        if (at(r, i + 3)?.k === ',' || ++chars >= 2) return excerpt(r, i, i + 3)
      } else if (t.v === 'concat' || t.v === 'concat_ws') {
        if ((a.k === 'n' && a.v.startsWith('0x')) || a.k === 'f' || a.k === 'v' || (a.k === 'k' && a.v === 'select')) return excerpt(r, i, i + 2)
      } else if (t.v === 'unhex' || t.v === 'hex') {
        if (a.k === 'k' && a.v === 'select') return excerpt(r, i, i + 2)
      }
    }
    return undefined
  })
}

const VERSIONED = /\/\*!\d{0,6}\s{0,8}(?:union|select|and|or|from|where|insert|update|delete|drop|sleep|benchmark|order|having|concat|information_schema|char)/
const KEYWORD_PARTS = new Set(['union', 'select', 'insert', 'update', 'delete', 'drop', 'sleep', 'benchmark', 'concat', 'where', 'from', 'having', 'order', 'exec', 'execute', 'information_schema', 'waitfor', 'declare', 'char', 'substring', 'ascii'])

/** `UN/**\/ION`, `SEL/*x*\/ECT`, `/*!50000UNION*\/`: comments hiding keywords from filters. */
function commentObfuscation (v: Value): string | undefined {
  const s = v.text
  let i = s.indexOf('/*')
  if (i === -1) return undefined
  const m = VERSIONED.exec(s)
  if (m !== null) return m[0]
  // One forward scan: the `*/` found for one `/*` serves the next ones until
  // they pass it, so a run of unclosed `/*` costs no rescans.
  let close = -1
  for (; i !== -1; i = s.indexOf('/*', i + 2)) {
    if (close < i + 2) close = s.indexOf('*/', i + 2)
    if (close === -1) break
    if (close - i > 64) continue
    let a = i
    while (a > 0 && i - a < 20 && /[a-z_]/.test(s[a - 1] as string)) a--
    let b = close + 2
    while (b < s.length && b - close < 22 && /[a-z_]/.test(s[b] as string)) b++
    if (a === i || b === close + 2) continue
    if (KEYWORD_PARTS.has(s.slice(a, i) + s.slice(close + 2, b))) return s.slice(a, b)
  }
  return undefined
}

/** PL2: `SELECT <list> FROM` anywhere, with a list no prose has (`*`, a call, commas). */
function selectFrom (v: Value): string | undefined {
  return inReadings(v, (r) => {
    const toks = r.toks
    for (let i = 0; i < toks.length; i++) {
      const t = toks[i] as Token
      if (t.k !== 'k' || t.v !== 'select') continue
      let listy = false
      for (let j = i + 1; j < Math.min(toks.length, i + 24); j++) {
        const u = toks[j] as Token
        if ((u.k === 'o' && u.v === '*') || u.k === 'f' || u.k === ',' || u.k === 'v') listy = true
        if (u.k === 'k' && u.v === 'from') {
          if (listy) return excerpt(r, i, j + 1)
          break
        }
      }
    }
    return undefined
  })
}

/** PL2: `= 0x61646d696e`: a value spelt in hex so no quote is needed. */
function hexComparison (v: Value): string | undefined {
  return inReadings(v, (r) => {
    const toks = r.toks
    for (let i = 0; i + 1 < toks.length; i++) {
      const t = toks[i] as Token
      const n = toks[i + 1] as Token
      if (isComparison(t) && n.k === 'n' && n.v.startsWith('0x') && n.v.length >= 6) return excerpt(r, i, i + 1)
    }
    return undefined
  })
}

/** PL2: a quote closed and followed by AND/OR, whatever comes next. */
function quoteConjunction (v: Value): string | undefined {
  return inReadings(v, (r) => {
    if (!r.quoted) return undefined
    const t0 = at(r, 0)
    if (t0 === undefined || t0.k !== 's' || !t0.closed) return undefined
    const i = skip(r, 1, ')')
    const x = at(r, i)
    return x !== undefined && x.k === '&' && at(r, i + 1) !== undefined ? excerpt(r, 0, i + 1) : undefined
  })
}

/** PL3: many characters SQL needs and text rarely has (quotes, `;`, parentheses, `=`, `#`, `@`, comments). */
function restrictedChars (v: Value): string | undefined {
  const s = v.text
  if (s.length < 12) return undefined
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    const next = s.charCodeAt(i + 1)
    if (c === 39 || c === 34 || c === 96 || c === 59 || c === 40 || c === 41 || c === 61 || c === 35 || c === 64 ||
      (c === 45 && next === 45) || (c === 47 && next === 42)) {
      if (++n >= 12) return s.slice(0, 40)
    }
  }
  return undefined
}

const NOSQL_NAME = /\[\s{0,3}\$(?:ne|eq|gt|gte|lt|lte|in|nin|regex|where|exists|or|and|not|nor|expr|function|accumulator|elemmatch|size|type|all|mod|text|jsonschema)\s{0,3}\]/
const NOSQL_CODE_KEY = /^\$(?:where|function|accumulator|expr)$/
const NOSQL_KEY = /^\$(?:ne|eq|gt|gte|lt|lte|in|nin|regex|exists|or|and|not|nor|elemmatch|size|type|all|mod|text|jsonschema|options)$/

function nosqlName (v: Value, part: Part): string | undefined {
  if (!part.isName) return undefined
  const t = v.text
  const m = NOSQL_NAME.exec(t)
  if (m !== null) return m[0]
  if (part.location !== 'body') return undefined
  const key = t.slice(t.lastIndexOf('.') + 1)
  return NOSQL_CODE_KEY.test(key) ? key : undefined
}

function nosqlKey (v: Value, part: Part): string | undefined {
  if (!part.isName || part.location !== 'body') return undefined
  const t = v.text
  const key = t.slice(t.lastIndexOf('.') + 1)
  return NOSQL_KEY.test(key) ? key : undefined
}

/**
 * A MongoDB query fragment written into a value that ends up inside a query
 * document or a `$where` string: an operator key, unquoted as only script
 * writes it, after a comma (`', $or: [{}`, `true, $where: '1'`; JSON filters
 * an API takes, `{"$gte": 1}`, quote their keys), or a shell collection call
 * (`db.users.find({`).
 */
const NOSQL_VALUE = /,\s{0,4}\$(?:where|ne|eq|gt|gte|lt|lte|in|nin|regex|or|and|nor|not|exists|expr|function|accumulator|elemmatch)\s{0,4}:|\bdb\s{0,4}\.\s{0,4}[a-z_][a-z0-9_]{0,60}\s{0,4}\.\s{0,4}(?:insert|insertone|insertmany|find|findone|update|updateone|updatemany|remove|deleteone|deletemany|drop|aggregate|mapreduce)\s{0,4}\(\s{0,4}\{|\bthis\s{0,4}\.\s{0,4}[a-z_]{1,40}\s{0,4}(?:==|!=|>|<)[^;]{0,60};?\s{0,4}(?:sleep|return)\b/

const ARGS = ['path', 'query', 'body', 'cookie', 'header'] as const
const VALUES = ['query', 'body', 'cookie', 'header'] as const

export const sqliRules: readonly ValueRule[] = [
  { kind: 'value', id: 1601, family: 'sqli', severity: 'critical', paranoia: 1, where: ARGS, description: 'SQL injection: UNION SELECT with a select list', match: unionSelect },
  { kind: 'value', id: 1602, family: 'sqli', severity: 'critical', paranoia: 1, where: ARGS, description: 'SQL injection: string closed and followed by SQL (tautology, comment, stacked query, UNION, ORDER BY)', match: quoteBreak },
  { kind: 'value', id: 1603, family: 'sqli', severity: 'critical', paranoia: 1, where: VALUES, names: false, description: 'SQL injection: numeric parameter followed by SQL', match: numericBreak },
  { kind: 'value', id: 1604, family: 'sqli', severity: 'critical', paranoia: 1, where: ARGS, description: 'SQL injection: always-true condition (OR 1=1)', match: tautologyAnywhere },
  { kind: 'value', id: 1605, family: 'sqli', severity: 'critical', paranoia: 1, where: ARGS, description: 'SQL injection: stacked query', match: stacked },
  { kind: 'value', id: 1606, family: 'sqli', severity: 'critical', paranoia: 1, where: ARGS, description: 'SQL injection: time-based blind (SLEEP, BENCHMARK, PG_SLEEP, WAITFOR DELAY)', match: timeDelay },
  { kind: 'value', id: 1607, family: 'sqli', severity: 'critical', paranoia: 1, where: ARGS, description: 'SQL injection: file, out-of-band or error-based function, system catalog or server variable', match: dangerous },
  { kind: 'value', id: 1608, family: 'sqli', severity: 'critical', paranoia: 1, where: ARGS, description: 'SQL injection: strings built with CHAR() or CONCAT(0x…)', match: charEncoding },
  { kind: 'value', id: 1609, family: 'sqli', severity: 'critical', paranoia: 1, where: ARGS, description: 'SQL injection: keyword hidden by comments (UN/**/ION, /*!UNION*/)', match: commentObfuscation },
  { kind: 'value', id: 1610, family: 'sqli', severity: 'critical', paranoia: 1, where: ['query', 'body', 'cookie'], description: 'NoSQL injection: query operator in a parameter name ([$ne], $where)', match: nosqlName },
  { kind: 'value', id: 1611, family: 'sqli', severity: 'critical', paranoia: 1, where: VALUES, names: false, description: 'NoSQL injection: query operator or shell collection call in a value ($or:, $where:, db.users.find()', match: pattern('text', NOSQL_VALUE) },
  { kind: 'value', id: 1620, family: 'sqli', severity: 'critical', paranoia: 2, where: ARGS, description: 'SQL injection: SELECT … FROM with a select list', match: selectFrom },
  { kind: 'value', id: 1621, family: 'sqli', severity: 'critical', paranoia: 2, where: ARGS, description: 'SQL injection: comparison with a hex literal', match: hexComparison },
  { kind: 'value', id: 1622, family: 'sqli', severity: 'error', paranoia: 2, where: ARGS, description: 'SQL injection: string closed and followed by AND/OR', match: quoteConjunction },
  { kind: 'value', id: 1623, family: 'sqli', severity: 'critical', paranoia: 2, where: ['body'], description: 'NoSQL injection: query operator as a JSON key', match: nosqlKey },
  { kind: 'value', id: 1630, family: 'sqli', severity: 'warning', paranoia: 3, where: VALUES, names: false, description: 'SQL injection: many SQL metacharacters', match: restrictedChars },
]
