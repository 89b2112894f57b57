import t from 'tap'
import { compileOrigins, normalizeOrigin } from './origin.ts'
import { appendVary } from '../../src/http/vary.ts'
import type { HeaderMap } from '../../src/plugin.ts'

t.test('normalizeOrigin', async (t) => {
  t.same(normalizeOrigin('*'), { origin: '*' })
  t.same(normalizeOrigin('HTTPS://App.Example.com:443'), { origin: 'https://app.example.com' })
  t.same(normalizeOrigin('http://127.0.0.1:8080'), { origin: 'http://127.0.0.1:8080' })
  t.same(normalizeOrigin('https://*.Example.com:8443'), { origin: 'https://*.example.com:8443' })
  t.same(normalizeOrigin('https://*.example.com:443'), { origin: 'https://*.example.com' })
  for (const bad of ['https://example.com/', 'https://*.com', 'https://x*.example.com', 'example.com', 'null', 'https://a.example?x', 'file:///etc']) {
    t.ok('error' in normalizeOrigin(bad), bad)
  }
})

t.test('exact origins match exactly', async (t) => {
  const m = compileOrigins(['https://app.example.com', 'http://localhost:3000'])
  t.notOk(m.any)
  t.ok(m.allows('https://app.example.com'))
  t.ok(m.allows('http://localhost:3000'))
  t.notOk(m.allows('http://app.example.com'), 'scheme matters')
  t.notOk(m.allows('https://app.example.com:8443'), 'port matters')
  t.notOk(m.allows('http://localhost:3001'))
  t.notOk(m.allows('https://app.example.com.evil.com'))
  t.notOk(m.allows('null'))
  t.notOk(m.allows(''))
})

t.test('a wildcard stands for one or more labels and nothing else', async (t) => {
  const m = compileOrigins(['https://*.example.com', 'http://*.dev.example:8080'])
  t.ok(m.allows('https://a.example.com'))
  t.ok(m.allows('https://a-1.b.example.com'), 'several labels')
  t.notOk(m.allows('https://example.com'), 'not the bare domain')
  t.notOk(m.allows('https://.example.com'))
  t.notOk(m.allows('https://a..example.com'))
  t.notOk(m.allows('http://a.example.com'), 'scheme matters')
  t.notOk(m.allows('https://a.example.com:8443'), 'port matters')
  t.notOk(m.allows('https://evilexample.com'))
  t.notOk(m.allows('https://a.example.com.evil.com'))
  t.notOk(m.allows('https://evil.com/.example.com'))
  t.notOk(m.allows('https://evil.com#.example.com'))
  t.notOk(m.allows('https://evil.com:1@x.example.com'))
  t.notOk(m.allows('https://A.example.com'), 'browsers serialize lower-case')
  t.ok(m.allows('http://x.dev.example:8080'))
  t.notOk(m.allows('http://x.dev.example'))
})

t.test('* allows everything', async (t) => {
  const m = compileOrigins(['*'])
  t.ok(m.any)
  t.ok(m.allows('https://anything.example'))
})

t.test('appendVary merges without repeating', async (t) => {
  const cases: Array<[HeaderMap['vary'], HeaderMap['vary']]> = [
    [undefined, 'Origin'],
    ['', 'Origin'],
    ['Accept-Encoding', 'Accept-Encoding, Origin'],
    ['accept-encoding, origin', 'accept-encoding, origin'],
    ['ORIGIN', 'ORIGIN'],
    ['*', '*'],
    [['Accept', 'Accept-Language'], 'Accept, Accept-Language, Origin'],
  ]
  for (const [before, after] of cases) {
    const h: HeaderMap = { vary: before }
    appendVary(h, 'Origin')
    t.same(h.vary, after, String(before))
  }
})
