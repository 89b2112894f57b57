import t from 'tap'
import { Value, decodeEntities, decodeJsEscapes, decodeRepeatedly, nfkc, percentDecode, shellView } from './normalize.ts'

t.test('percent-decodes UTF-8, keeps stray % and flags it', async (t) => {
  t.same(percentDecode('a%20b%3Cc', false), { value: 'a b<c', changed: true, invalid: false, overlong: false })
  t.equal(percentDecode('caf%C3%A9', false).value, 'caf\u00e9')
  t.equal(percentDecode('caf%E9', false).value, 'caf\u00e9', 'a byte that is not UTF-8 reads as Latin-1')
  const bad = percentDecode('50%zz and 100%', false)
  t.equal(bad.value, '50%zz and 100%')
  t.equal(bad.invalid, true)
  t.equal(percentDecode('plain', false).changed, false, 'nothing to do is a fast path')
})

t.test('reads + as a space only in form data', async (t) => {
  t.equal(percentDecode('a+b%2Bc', true).value, 'a b+c')
  t.equal(percentDecode('a+b', false).value, 'a+b')
})

t.test('decodes overlong UTF-8 and %u escapes, and flags them', async (t) => {
  const slash = percentDecode('..%c0%af..%e0%80%afetc', false)
  t.equal(slash.value, '../../etc')
  t.equal(slash.overlong, true)
  const u = percentDecode('%u003cscript%u003e', false)
  t.equal(u.value, '<script>')
  t.equal(u.overlong, true)
  t.equal(percentDecode('%c3%a9', false).overlong, false, 'a proper two-byte sequence is not overlong')
})

t.test('decodes repeatedly up to the round limit, counting rounds that changed something', async (t) => {
  t.same(decodeRepeatedly('%252e%252e%252f', false, 3), { value: '../', rounds: 2, invalid: false, overlong: false })
  t.equal(decodeRepeatedly('%25252e', false, 3).value, '.')
  t.equal(decodeRepeatedly('%25252e', false, 2).value, '%2e', 'stops at the limit')
  t.equal(decodeRepeatedly('a+%2B', true, 3).value, 'a +', 'a decoded plus is not a space in round two')
  t.equal(decodeRepeatedly('hello', false, 3).rounds, 0)
})

t.test('decodes HTML references: named, decimal, hex, with or without ;', async (t) => {
  t.equal(decodeEntities('&lt;script&gt;'), '<script>')
  t.equal(decodeEntities('&#60;&#x3C;&#X3c;&#0000060;'), '<<<<')
  t.equal(decodeEntities('&#60script&#x3e'), '<script>', 'no semicolon, as browsers accept')
  t.equal(decodeEntities('&ltscript&gt'), '<script>')
  t.equal(decodeEntities('java&Tab;script&colon;'), 'java\tscript:')
  t.equal(decodeEntities('java&NewLine;script&colon;'), 'java\nscript:')
  t.equal(decodeEntities('java&tab;script&colon;'), 'java\tscript:', 'a lower-case spelling too')
  t.equal(decodeEntities('&amp;lt;'), '<', 'twice, for a double-encoded reference')
  t.equal(decodeEntities('AT&T & friends &unknown; &#;'), 'AT&T & friends &unknown; &#;', 'what is not a reference stays')
  t.equal(decodeEntities('&#0;&#x110000;'), '\ufffd\ufffd')
})

t.test('applies NFKC to fullwidth and compatibility forms', async (t) => {
  t.equal(nfkc('\uff1c\uff53\uff43\uff52\uff49\uff50\uff54\uff1e'), '<script>')
  t.equal(nfkc('\ufb01le'), 'file', 'a ligature')
  t.equal(nfkc('ascii only'), 'ascii only')
})

t.test('decodes JavaScript escapes', async (t) => {
  t.equal(decodeJsEscapes('\\x3cscript\\u003e\\u{61}lert\\\''), '<script>alert\'')
  t.equal(decodeJsEscapes('C:\\path\\zz'), 'C:\\path\\zz', 'unknown escapes stay')
})

t.test('undoes shell quoting tricks', async (t) => {
  t.equal(shellView('c\'a\'t /e"t"c/pa\'\'sswd'), 'cat /etc/passwd')
  t.equal(shellView('c\\at /etc/passwd'), 'cat /etc/passwd')
  t.equal(shellView('w^h^o^a^m^i'), 'whoami')
  t.equal(shellView('cat${ifs}/etc/passwd'), 'cat /etc/passwd')
  t.equal(shellView('cat$ifs$9/etc/passwd'), 'cat /etc/passwd')
  t.equal(shellView('who$@ami'), 'whoami')
  t.equal(shellView('{cat,/etc/passwd}'), ' cat /etc/passwd}')
  t.equal(shellView('a\r\n\r\nb  \t c'), 'a\nb c', 'line breaks kept as one \\n, other whitespace collapsed')
  t.equal(shellView('cat$x /etc$x/shadow$x'), 'cat /etc/shadow', 'short variables glued to words expand to nothing')
  t.equal(shellView('echo $home and $path'), 'echo $home and $path', 'variables standing alone are kept')
  t.equal(shellView('cat /etc/sh\u2019ad\u2019ow'), 'cat /etc/shadow', 'typographic quotes inside a word')
})

t.test('a value with escapes and a + outside a form also has a reading with + as a space', async (t) => {
  const v = new Value('%3Csvg+onload%3Dx%3E', false, 3)
  t.equal(v.decoded, '<svg+onload=x>', 'as it is: a backend that does not form-decode sees the plus')
  t.equal(v.plusReading()?.decoded, '<svg onload=x>', 'and as a form-decoding backend reads it')
  t.equal(new Value('C++ and a+b', false, 3).plusReading(), undefined, 'no escapes: a plus is a plus')
  t.equal(new Value('%3Cb%3E+x', true, 3).plusReading(), undefined, 'a form value is read so already')
  t.equal(new Value('%252B+x', false, 3).plusReading()?.decoded, '+ x', 'an encoded plus stays a plus')
})

t.test('a Value computes its views lazily, each once', async (t) => {
  const v = new Value('%3CScRiPt%3E%00+%26lt;x&#x09;', true, 3)
  t.equal(v.decoded, '<ScRiPt>\0 &lt;x&#x09;')
  t.equal(v.clean, '<ScRiPt> <x\t', 'entities decoded, NUL removed, case kept')
  t.equal(v.text, '<script> <x\t')
  t.equal(v.compact, '<script> <x', 'controls dropped, spaces kept')
  t.equal(v.text, v.text, 'cached')
  let calls = 0
  const key = {}
  v.memo(key, () => ++calls)
  v.memo(key, () => ++calls)
  t.equal(calls, 1)
  t.equal(new Value('\\u0061lert', false, 1).js, 'alert')
  t.equal(new Value('..\\..\\Windows', false, 1).fsPath, '../../windows')
})
