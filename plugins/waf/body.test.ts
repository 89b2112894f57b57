import t from 'tap'
import { bodyKind, extractBody, headerParam, splitPairs } from './body.ts'

const pairs = (b: ReturnType<typeof extractBody>): Array<[string, string, string]> =>
  b.fields.map((f) => [f.name, f.value, f.file ?? (f.isName ? 'name' : 'value')])

t.test('chooses how to read a body from its Content-Type', async (t) => {
  const text = Buffer.from('hello')
  t.equal(bodyKind('application/x-www-form-urlencoded; charset=UTF-8', text), 'form')
  t.equal(bodyKind('Multipart/Form-Data; boundary=x', text), 'multipart')
  t.equal(bodyKind('application/json', text), 'json')
  t.equal(bodyKind('application/vnd.api+json', text), 'json')
  t.equal(bodyKind('text/plain', text), 'text')
  t.equal(bodyKind('application/soap+xml', text), 'text')
  t.equal(bodyKind('image/png', text), 'binary')
  t.equal(bodyKind('application/octet-stream', text), 'binary')
  t.equal(bodyKind(undefined, text), 'text', 'no Content-Type: read as text…')
  t.equal(bodyKind(undefined, Buffer.from([0x89, 0x50, 0x00, 0x47])), 'binary', '…unless it looks binary')
})

t.test('splits query strings and form bodies without decoding', async (t) => {
  t.same(splitPairs('a=1&b=%20x&flag&&c=d=e&=v'), [['a', '1'], ['b', '%20x'], ['flag', ''], ['c', 'd=e'], ['', 'v']])
  t.same(splitPairs(''), [])
  const b = extractBody('application/x-www-form-urlencoded', Buffer.from('name=J+Doe&note=a%26b'), 32)
  t.same(pairs(b), [['name', 'name', 'name'], ['name', 'J+Doe', 'value'], ['note', 'note', 'name'], ['note', 'a%26b', 'value']])
  t.equal(b.argCount, 2)
  t.ok(b.fields.every((f) => f.form))
})

t.test('reads JSON keys and string values, nested, to a depth limit', async (t) => {
  const b = extractBody('application/json', Buffer.from(JSON.stringify({ a: 'x', n: 5, ok: true, nil: null, user: { tags: ['t1', { deep: 'y' }] } })), 32)
  t.same(pairs(b), [
    ['a', 'a', 'name'], ['a', 'x', 'value'], ['n', 'n', 'name'], ['ok', 'ok', 'name'], ['nil', 'nil', 'name'],
    ['user', 'user', 'name'], ['user.tags', 'tags', 'name'], ['user.tags', 't1', 'value'], ['user.tags.deep', 'deep', 'name'], ['user.tags.deep', 'y', 'value'],
  ])
  t.same(b.problems, [])
  t.equal(b.argCount, 0, 'JSON fields do not count as parameters')
  t.same(extractBody('application/json', Buffer.from('"top"'), 32).fields.map((f) => f.value), ['top'])
  const deep = extractBody('application/json', Buffer.from('{"a":{"b":{"c":"hidden"}}}'), 2)
  t.same(deep.problems, ['depth'])
  t.notOk(deep.fields.some((f) => f.value === 'hidden'))
  const broken = extractBody('application/json', Buffer.from('{"a": "<x>"'), 32)
  t.same(broken.problems, ['json'])
  t.same(broken.fields.map((f) => f.value), ['{"a": "<x>"'], 'read as text instead')
})

t.test('parses header parameters, quoted or not', async (t) => {
  t.equal(headerParam('form-data; name="a b"; filename="c\\"d.txt"', 'filename'), 'c"d.txt')
  t.equal(headerParam('form-data; name=plain', 'name'), 'plain')
  t.equal(headerParam('multipart/form-data; charset=utf-8; boundary=----x', 'boundary'), '----x')
  t.equal(headerParam('form-data', 'name'), undefined)
})

t.test('parses multipart/form-data strictly', async (t) => {
  const b = 'AaB03x'
  const ok = [
    'preamble is ignored',
    `--${b}`, 'Content-Disposition: form-data; name="title"', '', 'Hello',
    `--${b}`, 'Content-Disposition: form-data; name="file"; filename="a.txt"', 'Content-Type: text/plain', '', 'line 1\r\nline 2',
    `--${b}--`, 'epilogue',
  ].join('\r\n')
  const r = extractBody(`multipart/form-data; boundary=${b}`, Buffer.from(ok), 32)
  t.same(r.problems, [])
  t.same(pairs(r), [['title', 'title', 'name'], ['title', 'Hello', 'value'], ['file', 'file', 'name'], ['file', 'a.txt', 'name'], ['file', 'line 1\r\nline 2', 'content']])
  t.equal(r.argCount, 2)

  const bad = (ct: string, body: string): string[] => extractBody(ct, Buffer.from(body), 32).problems
  t.same(bad('multipart/form-data', ok), ['multipart'], 'no boundary parameter')
  t.same(bad(`multipart/form-data; boundary=${'x'.repeat(71)}`, ok), ['multipart'], 'boundary too long')
  t.same(bad(`multipart/form-data; boundary=${b}`, ok.replace(`--${b}--`, '')), ['multipart'], 'no closing delimiter')
  t.same(bad(`multipart/form-data; boundary=${b}`, ok.replaceAll('\r\n', '\n')), ['multipart'], 'bare LF line ends')
  t.same(bad(`multipart/form-data; boundary=${b}`, ok.replace('Content-Disposition: form-data; name="title"', 'Content-Type: text/plain')), ['multipart'], 'a part without Content-Disposition')
  t.same(bad(`multipart/form-data; boundary=${b}`, ok.replace('form-data; name="title"', 'form-data; filename="x"')), ['multipart'], 'a part without a name')
  t.same(bad(`multipart/form-data; boundary=${b}`, 'no delimiter at all'), ['multipart'])
})
