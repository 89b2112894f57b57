import t from 'tap'
import type { HeaderMap } from '../../src/plugin.ts'
import { contentLength, isEncoded, namesWeakForm, noTransform, varyOnAcceptEncoding, weakenEtag } from './headers.ts'
import { MediaTypes } from './media-types.ts'
import { DEFAULT_CONTENT_TYPES } from './schema.ts'

t.test('Vary: Accept-Encoding once, never next to *', async (t) => {
  const table: Array<[before: string | string[] | undefined, after: string | string[]]> = [
    [undefined, 'Accept-Encoding'],
    ['', 'Accept-Encoding'],
    ['Origin', 'Origin, Accept-Encoding'],
    ['accept-encoding', 'accept-encoding'],
    ['Origin,Accept-Encoding', 'Origin,Accept-Encoding'],
    ['Origin , ACCEPT-ENCODING ', 'Origin , ACCEPT-ENCODING '],
    ['*', '*'],
    ['Origin, *', 'Origin, *'],
    ['Accept-Encoding-Extra', 'Accept-Encoding-Extra, Accept-Encoding'],
    [['Origin', 'Accept-Language'], 'Origin, Accept-Language, Accept-Encoding'],
    [['Origin', 'Accept-Encoding'], ['Origin', 'Accept-Encoding']],
  ]
  for (const [before, after] of table) {
    const h: HeaderMap = { vary: before }
    varyOnAcceptEncoding(h)
    t.same(h.vary, after, JSON.stringify(before))
  }
})

t.test('ETags are weakened, or dropped when malformed', async (t) => {
  const table: Array<[before: string | string[] | undefined, after: string | undefined]> = [
    [undefined, undefined],
    ['"abc"', 'W/"abc"'],
    ['""', 'W/""'],
    ['W/"abc"', 'W/"abc"'],
    ['abc', undefined],
    ['"abc', undefined],
    [['"a"', '"b"'], undefined],
  ]
  for (const [before, after] of table) {
    const h: HeaderMap = before === undefined ? {} : { etag: before }
    weakenEtag(h)
    t.equal(h.etag, after, JSON.stringify(before))
    t.equal('etag' in h, after !== undefined, `${JSON.stringify(before)}: present only with a value`)
  }
})

t.test('If-None-Match naming our weak form', async (t) => {
  t.ok(namesWeakForm('W/"a"', '"a"'))
  t.ok(namesWeakForm('"x", W/"a"', '"a"'))
  t.ok(namesWeakForm(['"x"', 'W/"a"'], '"a"'))
  t.notOk(namesWeakForm('"a"', '"a"'), 'the strong form: the client holds the uncoded variant')
  t.notOk(namesWeakForm('W/"ab"', '"a"'), 'another tag')
  t.notOk(namesWeakForm('w/"a"', '"a"'), 'W/ is case-sensitive (RFC 9110 §8.8.3)')
  t.notOk(namesWeakForm('W/"a"', 'W/"a"'), 'the upstream\'s own weak tag needs nothing')
  t.notOk(namesWeakForm('*', '"a"'))
  t.notOk(namesWeakForm(undefined, '"a"'))
  t.notOk(namesWeakForm('W/"a"', undefined))
})

t.test('Cache-Control: no-transform', async (t) => {
  t.ok(noTransform('no-transform'))
  t.ok(noTransform('public, max-age=60, No-Transform'))
  t.ok(noTransform(['public', 'no-transform']))
  t.notOk(noTransform(undefined))
  t.notOk(noTransform('public, max-age=60'))
  t.notOk(noTransform('no-transformer'), 'a different directive')
  t.notOk(noTransform('x-ext="no-transform"'), 'inside a value')
})

t.test('Content-Length and Content-Encoding', async (t) => {
  t.equal(contentLength({ 'content-length': '1024' }), 1024)
  t.equal(contentLength({ 'content-length': '0' }), 0)
  t.equal(contentLength({}), -1)
  t.equal(contentLength({ 'content-length': '' }), -1)
  t.equal(contentLength({ 'content-length': '12abc' }), -1)
  t.equal(contentLength({ 'content-length': ['1', '1'] }), -1)
  t.ok(isEncoded('gzip'))
  t.ok(isEncoded('gzip, br'))
  t.ok(isEncoded(['gzip']))
  t.notOk(isEncoded(undefined))
  t.notOk(isEncoded(''))
  t.notOk(isEncoded('Identity'))
})

t.test('media types', async (t) => {
  const types = new MediaTypes(DEFAULT_CONTENT_TYPES)
  const table: Array<[type: string | string[] | undefined, kind: string]> = [
    ['text/html; charset=utf-8', 'text'],
    ['Text/Plain', 'text'],
    ['  application/json  ', 'text'],
    ['application/problem+json; charset=utf-8', 'text'],
    ['application/vnd.api+json', 'text'],
    ['application/rss+xml', 'text'],
    ['image/svg+xml', 'text'],
    ['application/wasm', 'binary'],
    ['font/ttf', 'binary'],
    ['text/event-stream', 'event-stream'],
    ['image/png', 'skip'],
    ['application/octet-stream', 'skip'],
    ['application/json-seq', 'skip'],
    ['text', 'skip'],
    ['/json', 'skip'],
    ['text/', 'skip'],
    ['', 'skip'],
    [undefined, 'skip'],
    [['image/png', 'text/html'], 'text'],
  ]
  for (const [type, kind] of table) t.equal(types.kind(type), kind, JSON.stringify(type))
  t.equal(types.kind('text/html; charset=utf-8'), 'text', 'remembered: the same answer')

  const narrow = new MediaTypes(['application/*+json', 'text/css'])
  t.equal(narrow.kind('application/ld+json'), 'text')
  t.equal(narrow.kind('text/vnd.x+json'), 'skip', 'the suffix is bound to its type')
  t.equal(narrow.kind('text/html'), 'skip')
  t.equal(narrow.kind('TEXT/CSS;charset=utf-8'), 'text')
  const all = new MediaTypes(['*/*'])
  t.equal(all.kind('image/png'), 'binary')
  t.equal(all.kind('video/mp4'), 'binary')
  for (let i = 0; i < 500; i++) all.kind(`application/x-${i}`)
  t.equal(all.kind('text/plain'), 'text', 'still right after the memo turned over')
})
