import t from 'tap'
import { RULES } from './rules/index.ts'
import { Value } from './normalize.ts'
import { RuleSet } from './engine.ts'
import { schema } from './schema.ts'
import type { Part } from './rule.ts'

/**
 * No rule may backtrack catastrophically. Every pattern is written to be
 * linear (bounded quantifiers, no nested repetition, literal anchors; the
 * token-based SQL rules scan once) — V8's experimental non-backtracking
 * engine (`--enable-experimental-regexp-engine`, the `l` flag) is not used.
 * This test runs every rule, at every location it reads, over 50 KB inputs
 * made of repeated near-matches of the rules' own syntax, and the whole engine
 * over the same inputs in every body type. It asserts completion, not timing
 * (timing thresholds flake on a busy machine); the comment lists the slowest
 * cases so a regression is visible in the output.
 */

const SIZE = 50_000
const SEEDS = [
  '\'', '"', '`', '<', '<a ', '<script', '</', '"on', ' on', 'onerror=', 'javascript:', '&#', '&#x', '&lt', '&amp;',
  '%', '%25', '%c0%af', '%u00', '\\', '\\u00', '\\x', '/*', '*/', '/*!', '-- ', '#', '../', '..', '.', '/', ';', '|',
  '&', '&&', '||', '$(', '${', '${${', '{{', '{%', '<%', '#{', '(', ')', '=', ' ', '\t', '\n', 'a', '0x', '@@',
  'union ', 'select ', ' or 1=1', '\' or \'', ') or (', 'char(1)', 'sleep(', '1 and ', 'a.', '__', '$_get[', '<?',
  'http://', 'php://', '/etc/', ';ls ', '; cat ', 'x;', 'nc -', 'curl ', '() {', 'rO0AB', 'O:1:"', 'style', 'expression(',
  '<meta ', '<link ', '<!--#', '<!entity', 'a\'b"c`', '-', '+', 'é', '\uff1c', '[[', 'on', 'data:', 'constructor.',
  '/?', '/*', ' /a?', 'window[', 'top[\'', 'alert.call(', '(alert)', 'function(\'', '$u', '; $u ', 'db.a.', '$or:', '(|(',
  '*(|(', 'a:1.2.', '\r\n', '\na1 ', 'rcpt to:', '<#assign', '?new()', '<!doctype x system', '%2b+', 'this.a==',
]

function adversarial (seed: string, tail: string): string {
  return seed.repeat(Math.ceil(SIZE / seed.length)).slice(0, SIZE) + tail
}

t.test('every rule finishes on long near-matching input', async (t) => {
  const slowest: Array<[number, string]> = []
  let runs = 0
  for (const seed of SEEDS) {
    for (const tail of ['', '!', '\'']) {
      // One value per input, as in the engine: its views (decoding, SQL
      // tokens …) are computed once, by the first rule that needs them.
      const value = new Value(adversarial(seed, tail), true, 3)
      for (const rule of RULES) {
        if (rule.kind !== 'value') continue
        for (const location of rule.where) {
          const part: Part = { location, name: 'x', target: 'x', isName: false, urlEncoded: true, file: rule.files === true ? 'content' : undefined, value }
          const start = performance.now()
          rule.match(value, part)
          const ms = performance.now() - start
          runs++
          if (ms > 20) slowest.push([ms, `${rule.id} ${location} ${JSON.stringify(seed)}+${JSON.stringify(tail)}`])
        }
      }
    }
  }
  slowest.sort((a, b) => b[0] - a[0])
  t.comment(`slowest of ${runs} runs (the first rule to need a view computes it): ${slowest.slice(0, 5).map(([ms, what]) => `${ms.toFixed(0)}ms ${what}`).join('; ') || 'none over 20ms'}`)
  t.pass(`${runs} rule runs over ${SEEDS.length * 3} adversarial inputs of ${SIZE} characters completed`)
})

t.test('the whole engine finishes on long near-matching input in every part of a request', async (t) => {
  const rules = new RuleSet(schema.parse({ mode: 'detect', paranoiaLevel: 4, maxBodySize: '1mib', limits: { headerLength: 1 << 20 } }))
  for (const seed of SEEDS) {
    const input = adversarial(seed, '')
    const head = input.slice(0, 8000)
    rules.inspect({ method: 'POST', path: `/${head}`, query: `q=${encodeURIComponent(head)}`, headers: [['user-agent', head], ['cookie', `a=${head}`], ['content-type', 'text/plain']] }, { kind: 'read', data: Buffer.from(input) })
    rules.inspect({ method: 'POST', path: '/', query: '', headers: [['content-type', 'application/json']] }, { kind: 'read', data: Buffer.from(JSON.stringify({ [head]: input })) })
    rules.inspect({ method: 'POST', path: '/', query: '', headers: [['content-type', 'application/x-www-form-urlencoded']] }, { kind: 'read', data: Buffer.from(`a=${input}`) })
    rules.inspect({ method: 'POST', path: '/', query: '', headers: [['content-type', 'multipart/form-data; boundary=b']] }, { kind: 'read', data: Buffer.from(`--b\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\n${input}\r\n--b--\r\n`) })
  }
  t.pass('completed')
})
