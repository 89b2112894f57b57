import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { startTestProxy, simpleDoc, type TestProxy } from '../helpers/proxy.ts'
import {
  parseRequests, rawRequest, startRecordingUpstream,
  type RawResult, type RecordedRequest, type RecordingUpstream,
} from '../helpers/raw-http.ts'

/**
 * Request smuggling and protocol abuse (RFC 9112 §2.2, §3, §5, §6–§7, §9.3,
 * §11.2). Every case is sent byte-exactly on its own connection. The outcome
 * is one of:
 *   reject  — a 4xx with `Connection: close`, the connection closed, and
 *             nothing reached the upstream;
 *   forward — the upstream received exactly the requests the client got
 *             answers for, each one well-formed on the wire with the framing
 *             Outrider chose.
 * Whatever the outcome, a request the proxy did not answer as its own (the
 * `/smuggled` payloads) MUST never reach the upstream.
 */

type Outcome = 'reject' | 'forward' | 'either'

interface Case {
  name: string
  send: string | Buffer | Array<string | Buffer>
  outcome: Outcome
  /** Expected status when rejected. */
  status?: number
  /** Requests expected upstream when forwarded (default 1). */
  count?: number
  /** Methods sent, for reading HEAD responses. */
  methods?: string[]
  /** Extra checks on the forwarded request(s). */
  check?: (t: Test, seen: RecordedRequest[], result: RawResult) => void
}

/** A subtest as tap hands it to a callback. */
type Test = Parameters<Parameters<typeof t.test>[0]>[0]

const H = 'Host: x.test\r\n'
const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: x.test\r\n\r\n'

const crlf = (...lines: string[]): string => lines.join('\r\n')

function header (seen: RecordedRequest, name: string): string[] {
  const out: string[] = []
  for (let i = 0; i < seen.rawHeaders.length; i += 2) {
    if ((seen.rawHeaders[i] as string).toLowerCase() === name) out.push(seen.rawHeaders[i + 1] as string)
  }
  return out
}

function bodyIs (expected: string) {
  return (t: Test, seen: RecordedRequest[]) => { t.equal(seen[0]?.body.toString('latin1'), expected, 'body as framed') }
}

const cases: Case[] = [
  // ---- baselines ----------------------------------------------------------
  { name: 'plain GET', send: `GET /a HTTP/1.1\r\n${H}\r\n`, outcome: 'forward' },
  {
    name: 'POST with Content-Length',
    send: `POST /a HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello`,
    outcome: 'forward',
    check: bodyIs('hello'),
  },
  {
    name: 'POST chunked',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n`,
    outcome: 'forward',
    check: bodyIs('hello world'),
  },

  // ---- CL and TE together (§6.1, §6.3 rule 3, §11.2) ---------------------
  {
    name: 'CL.TE: Content-Length then chunked',
    send: `POST /a HTTP/1.1\r\n${H}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'TE.CL: chunked then Content-Length',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n${(SMUGGLED.length + 2).toString(16)}\r\n\r\n${SMUGGLED}\r\n0\r\n\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'CL.TE with TE hidden behind a trailing space in the name',
    send: `POST /a HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'CL with TE: chunked on HTTP/1.0',
    send: `POST /a HTTP/1.0\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
    status: 400,
  },

  // ---- Transfer-Encoding obfuscation (§6.1, §7) ---------------------------
  {
    name: 'TE "chunked " with trailing space (OWS is not part of the value)',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
    outcome: 'either',
    check: bodyIs('hello'),
  },
  {
    name: 'TE "chunked" preceded by a tab',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
    outcome: 'either',
    check: bodyIs('hello'),
  },
  {
    name: 'TE "CHUNKED" (coding names are case-insensitive, §7)',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
    outcome: 'either',
    check: bodyIs('hello'),
  },
  {
    name: 'TE "xchunked"',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'TE "chunkedx"',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'TE "chunked, identity" (chunked not final)',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'TE "identity, chunked"',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'TE "gzip, chunked" (a coding we do not relay)',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'TE "chunked, chunked"',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'TE repeated: chunked twice',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'TE repeated: chunked then identity',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'TE repeated: identity then chunked',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'TE folded onto the next line (obs-fold, §5.2)',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'TE value with a vertical tab',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'TE on HTTP/1.0 (§6.1: faulty framing)',
    send: `POST /a HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'Transfer_Encoding (underscore) is just a field; CL frames the body',
    send: `POST /a HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer_Encoding: chunked\r\n\r\nhello`,
    outcome: 'either',
    check: bodyIs('hello'),
  },

  // ---- Content-Length abuse (§6.2, §6.3) ---------------------------------
  {
    name: 'Content-Length repeated with the same value',
    send: `POST /a HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'Content-Length repeated with different values',
    send: `POST /a HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 45\r\n\r\nhello${SMUGGLED}`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'Content-Length as a list "5, 5"',
    send: `POST /a HTTP/1.1\r\n${H}Content-Length: 5, 5\r\n\r\nhello`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'Content-Length "+5"',
    send: `POST /a HTTP/1.1\r\n${H}Content-Length: +5\r\n\r\nhello`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'Content-Length "-1"',
    send: `POST /a HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'Content-Length "0x5"',
    send: `POST /a HTTP/1.1\r\n${H}Content-Length: 0x5\r\n\r\nhello`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'Content-Length "5 5" (inner space)',
    send: `POST /a HTTP/1.1\r\n${H}Content-Length: 5 5\r\n\r\nhello`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'Content-Length "1e1"',
    send: `POST /a HTTP/1.1\r\n${H}Content-Length: 1e1\r\n\r\nhelloworld`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'Content-Length empty',
    send: `POST /a HTTP/1.1\r\n${H}Content-Length: \r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'Content-Length beyond 2^64',
    send: `POST /a HTTP/1.1\r\n${H}Content-Length: 99999999999999999999999\r\n\r\nhello`,
    outcome: 'reject',
  },
  {
    name: 'Content-Length with surrounding spaces (OWS, allowed)',
    send: `POST /a HTTP/1.1\r\n${H}Content-Length:   5  \r\n\r\nhello`,
    outcome: 'forward',
    check: bodyIs('hello'),
  },
  {
    name: 'Content-Length "05" (leading zero is still 1*DIGIT)',
    send: `POST /a HTTP/1.1\r\n${H}Content-Length: 05\r\n\r\nhello`,
    outcome: 'either',
    check: bodyIs('hello'),
  },
  {
    name: 'Content-Length shorter than the bytes sent: the rest is the next request, answered as such',
    send: `POST /a HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n${H}\r\n`,
    outcome: 'forward',
    count: 2,
    check: (t, seen) => {
      t.equal(seen[0]?.body.toString(), 'hello')
      t.equal(seen[1]?.url, '/b')
    },
  },

  {
    name: 'hundreds of fields before Content-Length: all seen, body framed by it',
    send: `POST /a HTTP/1.1\r\n${H}${'X-Pad: 1\r\n'.repeat(600)}Content-Length: 5\r\n\r\nhello`,
    outcome: 'either',
    check: (t, seen) => {
      t.equal(seen[0]?.body.toString(), 'hello')
      t.equal(header(seen[0] as RecordedRequest, 'x-pad').length, 600, 'every field relayed')
    },
  },

  // ---- chunked body abuse (§7.1) -----------------------------------------
  {
    name: 'chunk size "0x5"',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n`,
    outcome: 'reject',
  },
  {
    name: 'chunk size "-5"',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n`,
    outcome: 'reject',
  },
  {
    name: 'chunk size with a leading space',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n`,
    outcome: 'reject',
  },
  {
    name: 'chunk size "g"',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\ng\r\nhello\r\n0\r\n\r\n`,
    outcome: 'reject',
  },
  {
    name: 'chunk size overflowing 64 bits',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
  },
  {
    name: 'chunk data longer than its size',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n`,
    outcome: 'reject',
  },
  {
    name: 'chunk data ended by a bare LF',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
  },
  {
    name: 'chunk size line ended by a bare LF',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
  },
  {
    name: 'chunk size with leading zeros',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0005\r\nhello\r\n0000\r\n\r\n`,
    outcome: 'either',
    check: bodyIs('hello'),
  },
  {
    name: 'chunk size followed by whitespace (BWS before an extension)',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5 ;a=b\r\nhello\r\n0\r\n\r\n`,
    outcome: 'either',
    check: bodyIs('hello'),
  },
  {
    name: 'TE "chunked;q=1" (a parameter on chunked)',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'TE with the coding in quotes',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: "chunked"\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'TE empty',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: \r\nContent-Length: 5\r\n\r\nhello`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'chunk extension (valid): relayed without it',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n0;last\r\n\r\n`,
    outcome: 'forward',
    check: bodyIs('hello'),
  },
  {
    name: 'chunk extension hiding a bare LF',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
  },
  {
    name: 'chunk extension with a quoted CRLF',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5;a="x\r\n0\r\n\r\n"\r\nhello\r\n0\r\n\r\n`,
    outcome: 'reject',
  },
  {
    name: 'chunk extension of 64 KiB (resource abuse, CVE-2024-22019)',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5;${'a'.repeat(64 * 1024)}\r\nhello\r\n0\r\n\r\n`,
    outcome: 'reject',
  },
  {
    name: 'request trailers are not relayed as headers',
    send: `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTrailer: x-t\r\n\r\n5\r\nhello\r\n0\r\nx-t: 1\r\nContent-Length: 99\r\n\r\n`,
    outcome: 'either',
    check: (t, seen) => {
      t.equal(seen[0]?.body.toString(), 'hello')
      t.same(header(seen[0] as RecordedRequest, 'x-t'), [])
      t.same(header(seen[0] as RecordedRequest, 'trailer'), [])
    },
  },

  // ---- head syntax (§2.2, §3, §5) ----------------------------------------
  {
    name: 'bare LF line endings in the head',
    send: `GET /a HTTP/1.1\n${H.replace('\r\n', '\n')}X-A: 1\n\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'bare CR inside the head',
    send: `GET /a HTTP/1.1\r\n${H}X-A: 1\rX-B: 2\r\n\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'obs-fold in an ordinary field (§5.2: reject)',
    send: `GET /a HTTP/1.1\r\n${H}X-A: 1\r\n 2\r\n\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'whitespace between a field name and the colon (§5.1)',
    send: `GET /a HTTP/1.1\r\n${H}X-A : 1\r\n\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'field line starting with whitespace right after the request line',
    send: `GET /a HTTP/1.1\r\n X-A: 1\r\n${H}\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'NUL in a field value',
    send: `GET /a HTTP/1.1\r\n${H}X-A: a\x00b\r\n\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'empty field name',
    send: `GET /a HTTP/1.1\r\n${H}: x\r\n\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'non-token characters in a field name',
    send: `GET /a HTTP/1.1\r\n${H}X[A]: 1\r\n\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    // §3: recipients MAY split on whitespace; undici re-serialises the line.
    name: 'two spaces in the request line',
    send: `GET  /a HTTP/1.1\r\n${H}\r\n`,
    outcome: 'either',
    check: (t, seen) => { t.equal(seen[0]?.url, '/a') },
  },
  {
    name: 'space inside the request target',
    send: `GET /a b HTTP/1.1\r\n${H}\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'HTTP/0.9 style request line',
    send: 'GET /a\r\n\r\n',
    outcome: 'reject',
  },
  {
    name: 'HTTP/2.0 in an HTTP/1 request line',
    send: `GET /a HTTP/2.0\r\n${H}\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'HTTP/1.2',
    send: `GET /a HTTP/1.2\r\n${H}\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'lower-case method',
    send: `get /a HTTP/1.1\r\n${H}\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'NUL in the request target',
    send: `GET /a\x00b HTTP/1.1\r\n${H}\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'obs-text in a field value is relayed byte for byte (RFC 9110 §5.5)',
    send: Buffer.from(`GET /a HTTP/1.1\r\n${H}X-A: caf\xe9\r\n\r\n`, 'latin1'),
    outcome: 'either',
    check: (t, seen) => { t.same(header(seen[0] as RecordedRequest, 'x-a'), ['caf\xe9']) },
  },
  {
    name: 'HTTP/1.0 without Host: forwarded without an empty Host',
    send: 'GET /a HTTP/1.0\r\n\r\n',
    outcome: 'forward',
    check: (t, seen) => {
      t.same(header(seen[0] as RecordedRequest, 'host'), [`127.0.0.1:${up.port}`], 'the upstream\'s own authority')
      t.same(header(seen[0] as RecordedRequest, 'x-forwarded-host'), [])
    },
  },
  {
    name: 'IPv6 literal Host',
    send: 'GET /a HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n',
    outcome: 'forward',
  },
  {
    name: 'HTTP/2 preface on an HTTP/1.1 listener',
    send: 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
    outcome: 'reject',
  },
  {
    name: 'missing Host on HTTP/1.1 (§3.2)',
    send: 'GET /a HTTP/1.1\r\nX-A: 1\r\n\r\n',
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'two Host headers (§3.2)',
    send: `GET /a HTTP/1.1\r\n${H}Host: evil.test\r\n\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'empty Host on HTTP/1.1 (RFC 9110 §4.2.1: an empty host is invalid)',
    send: `GET /a HTTP/1.1\r\nHost: \r\n\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'Host naming two hosts with a comma',
    send: `GET /a HTTP/1.1\r\nHost: x.test,evil.test\r\n\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'Host with a port and no host',
    send: `GET /a HTTP/1.1\r\nHost: :80\r\n\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'absolute-form target with a port and no host',
    send: `GET http://:80/a HTTP/1.1\r\n${H}\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'absolute-form target with no path before its query: forwarded as /?q=1 (§3.2.1)',
    send: `GET http://x.test?q=1 HTTP/1.1\r\n${H}\r\n`,
    outcome: 'forward',
    check: (t, seen) => { t.equal(seen[0]?.url, '/?q=1') },
  },
  {
    name: 'a WebSocket handshake without Host (§3.2)',
    send: `GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'Upgrade on HTTP/1.0 is ignored (RFC 9110 §7.8): a plain request, no 101',
    send: `GET /ws HTTP/1.0\r\n${H}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
    outcome: 'forward',
    check: (t, seen) => { t.same(header(seen[0] as RecordedRequest, 'upgrade'), [], 'no Upgrade upstream') },
  },
  {
    name: 'a WebSocket handshake with a body is no handshake: a plain request with its body',
    send: `GET /ws HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 5\r\n\r\nhello`,
    outcome: 'forward',
    check: (t, seen) => {
      t.same(header(seen[0] as RecordedRequest, 'upgrade'), [], 'no Upgrade upstream')
      t.equal(seen[0]?.body.toString(), 'hello', 'the body framed by its Content-Length')
    },
  },
  {
    name: 'HEAD with conflicting framing: 400 with no content (RFC 9110 §9.3.2)',
    send: `HEAD /a HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    methods: ['HEAD'],
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'Host with a space inside',
    send: 'GET /a HTTP/1.1\r\nHost: x.test evil.test\r\n\r\n',
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'Host with a path in it',
    send: 'GET /a HTTP/1.1\r\nHost: x.test/evil\r\n\r\n',
    outcome: 'reject',
    status: 400,
  },

  // ---- request targets (§3.2) --------------------------------------------
  {
    name: 'absolute-form target wins over a different Host (§3.2.2)',
    send: `GET http://y.test/a?q=1 HTTP/1.1\r\n${H}\r\n`,
    outcome: 'forward',
    check: (t, seen) => {
      t.equal(seen[0]?.url, '/a?q=1', 'origin-form upstream')
      t.same(header(seen[0] as RecordedRequest, 'host'), ['y.test'], 'one Host: the target\'s authority replaces the received Host')
      t.same(header(seen[0] as RecordedRequest, 'x-forwarded-host'), ['y.test'])
    },
  },
  {
    name: 'absolute-form target with userinfo (RFC 9110 §4.2.4: an error)',
    send: `GET http://user:pw@y.test/a HTTP/1.1\r\n${H}\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'absolute-form target with a non-http scheme',
    send: `GET ftp://y.test/a HTTP/1.1\r\n${H}\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'absolute-form target without an authority',
    send: `GET http:///a HTTP/1.1\r\n${H}\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'a fragment in the target',
    send: `GET /a#frag HTTP/1.1\r\n${H}\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'asterisk-form on GET',
    send: `GET * HTTP/1.1\r\n${H}\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'authority-form on GET',
    send: `GET x.test:443 HTTP/1.1\r\n${H}\r\n`,
    outcome: 'reject',
    status: 400,
  },

  // ---- Connection and Upgrade (§9.6, RFC 9110 §7.6.1, §7.8) ---------------
  {
    name: 'Connection naming Content-Length',
    send: `POST /a HTTP/1.1\r\n${H}Connection: Content-Length\r\nContent-Length: 5\r\n\r\nhello`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'Connection naming Host',
    send: `GET /a HTTP/1.1\r\n${H}Connection: close, Host\r\n\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'Connection naming Transfer-Encoding',
    send: `POST /a HTTP/1.1\r\n${H}Connection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
    outcome: 'reject',
    status: 400,
  },
  {
    name: 'Connection naming an ordinary field removes it',
    send: `GET /a HTTP/1.1\r\n${H}Connection: x-secret\r\nX-Secret: 1\r\nX-Kept: 2\r\n\r\n`,
    outcome: 'forward',
    check: (t, seen) => {
      t.same(header(seen[0] as RecordedRequest, 'x-secret'), [])
      t.same(header(seen[0] as RecordedRequest, 'x-kept'), ['2'])
    },
  },
  {
    name: 'Upgrade: h2c is stripped and served as a plain request',
    send: `GET /a HTTP/1.1\r\n${H}Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n`,
    outcome: 'forward',
    check: (t, seen, result) => {
      t.equal(result.responses[0]?.status, 200, 'no 101')
      const s = seen[0] as RecordedRequest
      t.same(header(s, 'upgrade'), [])
      t.same(header(s, 'http2-settings'), [])
      t.same(header(s, 'connection').filter((v) => /upgrade/i.test(v)), [])
    },
  },
  {
    name: 'Upgrade: websocket on POST is not an upgrade',
    send: `POST /a HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello`,
    outcome: 'forward',
    check: (t, seen) => {
      t.equal(seen[0]?.body.toString(), 'hello')
      t.same(header(seen[0] as RecordedRequest, 'upgrade'), [])
    },
  },
  {
    name: 'CONNECT (405)',
    send: `CONNECT x.test:443 HTTP/1.1\r\n${H}\r\n`,
    outcome: 'reject',
    status: 405,
    check: (t, _seen, result) => { t.match(result.responses[0]?.headers.allow, /GET/, 'Allow on a 405 (RFC 9110 §15.5.6)') },
  },
  {
    name: 'CONNECT with a tunnelled request behind it',
    send: `CONNECT x.test:443 HTTP/1.1\r\n${H}\r\n${SMUGGLED}`,
    outcome: 'reject',
    status: 405,
  },
  {
    name: 'OPTIONS with Max-Forwards: 2 is forwarded with 1 (RFC 9110 §7.6.2)',
    send: `OPTIONS /a HTTP/1.1\r\n${H}Max-Forwards: 2\r\n\r\n`,
    outcome: 'forward',
    check: (t, seen) => { t.same(header(seen[0] as RecordedRequest, 'max-forwards'), ['1']) },
  },
  {
    name: 'TE: trailers (request TE is hop-by-hop)',
    send: `GET /a HTTP/1.1\r\n${H}TE: trailers\r\nConnection: TE\r\n\r\n`,
    outcome: 'forward',
    check: (t, seen) => { t.same(header(seen[0] as RecordedRequest, 'te'), []) },
  },

  // ---- bodies where none is expected -------------------------------------
  {
    name: 'GET with a Content-Length body is forwarded with it (RFC 9110 §9.3.1)',
    send: `GET /a HTTP/1.1\r\n${H}Content-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
    outcome: 'forward',
    check: bodyIs(SMUGGLED),
  },
  {
    name: 'GET with a chunked body',
    send: `GET /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${SMUGGLED.length.toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`,
    outcome: 'forward',
    check: bodyIs(SMUGGLED),
  },
  {
    name: 'HEAD with a Content-Length body, then a GET: both answered in order',
    send: `HEAD /a HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n${H}\r\n`,
    methods: ['HEAD', 'GET'],
    outcome: 'forward',
    count: 2,
    check: (t, seen, result) => {
      t.equal(result.responses[0]?.body.length, 0, 'HEAD response has no body')
      t.match(result.responses[1]?.body.toString(), /GET \/b$/)
    },
  },
  {
    name: 'Content-Length: 0 then a second request (CL.0): both answered in order',
    send: `POST /a HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\nGET /b HTTP/1.1\r\n${H}\r\n`,
    outcome: 'forward',
    count: 2,
  },
  {
    name: 'HTTP/1.0 without a length: the body is not read as a request',
    send: `POST /a HTTP/1.0\r\n${H}\r\n${SMUGGLED}`,
    outcome: 'either',
  },

  // ---- pipelining (§9.3.2) -----------------------------------------------
  {
    name: 'three pipelined requests answered in order',
    send: `GET /1 HTTP/1.1\r\n${H}\r\nPOST /2 HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nabcPOST /3 HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n`,
    outcome: 'forward',
    count: 3,
    check: (t, seen, result) => {
      t.same(result.responses.map((r) => r.body.toString().replace(/^#\d+ /, '')), ['GET /1', 'POST /2', 'POST /3'], 'responses in request order')
      t.same(seen.map((s) => `${s.url}:${s.body.toString()}`).sort(), ['/1:', '/2:abc', '/3:xy'])
    },
  },
  {
    name: 'a request after `Connection: close` is not served (§9.6)',
    send: `GET /a HTTP/1.1\r\n${H}Connection: close\r\n\r\n${SMUGGLED}`,
    outcome: 'forward',
    check: (t, _seen, result) => {
      t.equal(result.responses[0]?.status, 200, 'the first request gets its own answer')
      t.equal(result.responses[0]?.headers.connection, 'close')
      t.ok(result.closed, 'then the connection closes')
    },
  },
  {
    name: 'an HTTP/1.0 request followed by more bytes: answered, then closed',
    send: `POST /a HTTP/1.0\r\n${H}Content-Length: 5\r\n\r\nhello${SMUGGLED}`,
    outcome: 'forward',
    check: (t, seen, result) => {
      t.equal(seen[0]?.body.toString(), 'hello')
      t.equal(result.responses[0]?.status, 200, 'the first request gets its own answer')
      t.ok(result.closed, 'then the connection closes')
    },
  },
  {
    name: 'CONNECT pipelined behind a request still being answered: its 405 waits for that answer (§9.3.2)',
    send: `GET /slow HTTP/1.1\r\n${H}\r\nCONNECT x.test:443 HTTP/1.1\r\n${H}\r\n`,
    outcome: 'reject',
    status: 405,
    count: 1,
    check: (t, _seen, result) => { t.equal(result.responses[0]?.body.toString(), '#1 GET /slow', 'the earlier request got its answer first') },
  },
  {
    name: 'a refused WebSocket handshake pipelined behind a request still being answered: answered after it',
    send: `GET /slow HTTP/1.1\r\n${H}\r\nGET /ws HTTP/1.1\r\n${H}Host: y.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
    outcome: 'reject',
    status: 400,
    count: 1,
    check: (t, _seen, result) => { t.equal(result.responses[0]?.body.toString(), '#1 GET /slow', 'the earlier request got its answer first') },
  },
  {
    name: 'a request without Host behind one still being answered: 400, and nothing after it reaches the upstream',
    send: `GET /slow HTTP/1.1\r\n${H}\r\nGET /a HTTP/1.1\r\nX: 1\r\n\r\n${SMUGGLED}`,
    outcome: 'reject',
    status: 400,
    count: 1,
  },
  {
    name: 'Expect: 100-continue pipelined behind a request still being answered, body sent at once: no 100 inside another response',
    send: `GET /slow HTTP/1.1\r\n${H}\r\nPOST /b HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello`,
    outcome: 'forward',
    count: 2,
    check: (t, seen, result) => {
      t.same(result.responses.map((r) => r.body.toString().replace(/^#\d+ /, '')), ['GET /slow', 'POST /b'], 'each response whole, in order')
      t.equal(seen.find((r) => r.url === '/b')?.body.toString(), 'hello')
    },
  },
  {
    name: 'pipelined after a bad request: nothing after the 400 is served',
    send: `GET /1 HTTP/1.1\r\n${H}\r\nPOST /2 HTTP/1.1\r\n${H}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab${SMUGGLED}`,
    outcome: 'reject',
    status: 400,
    count: 1,
  },
]

let up: RecordingUpstream
let proxy: TestProxy

t.before(async () => {
  up = await startRecordingUpstream()
  proxy = await startTestProxy({
    ...simpleDoc(up.url),
    limits: { maxHeaderSize: 8192, headersTimeout: 500, requestTimeout: 0 },
  })
})
t.teardown(async () => {
  await proxy.shutdown(500)
  await up.close()
})

for (const c of cases) {
  t.test(c.name, async (t) => {
    up.reset()
    const expected = c.outcome === 'forward' ? (c.count ?? 1) : 1
    const result = await rawRequest(proxy.port, c.send, { methods: c.methods, expect: expected })
    // Let anything the proxy is still sending upstream arrive before judging.
    await sleep(20)
    assertNeverSmuggled(t, result)
    const last = result.responses[result.responses.length - 1]
    t.ok(last !== undefined, 'a response came back')
    if (last === undefined) return
    const rejected = last.status >= 400
    if (c.outcome === 'reject') t.ok(rejected, `rejected (got ${last.status})`)
    if (c.outcome === 'forward') t.notOk(rejected, `forwarded (got ${last.status} ${last.body.toString()})`)
    if (rejected) {
      t.ok(last.status < 500, 'a client error, not a proxy failure')
      if (c.status !== undefined) t.equal(last.status, c.status)
      t.equal(last.headers.connection, 'close', 'Connection: close')
      t.ok(result.closed, 'the connection is closed')
      t.equal(result.rest.length, 0, 'nothing after the error response')
      t.equal(up.requests.length, result.responses.length - 1, 'nothing past the error reached the upstream')
      if (c.outcome === 'reject') c.check?.(t, up.requests, result)
      return
    }
    t.equal(up.requests.length, c.outcome === 'either' ? 1 : expected, 'upstream request count')
    t.equal(result.responses.length, up.requests.length, 'one response per upstream request')
    if (up.requests.length === 1) {
      // One request: the bytes on the wire must be exactly one well-formed message.
      const wire = parseRequests(up.raw())
      t.equal(wire.requests.length, 1, 'one message on the wire')
      t.equal(wire.rest.length, 0, 'no stray bytes after it')
      t.equal(wire.requests[0]?.body.toString('latin1'), up.requests[0]?.body.toString('latin1'), 'the wire body is the parsed body')
    }
    c.check?.(t, up.requests, result)
  })
}

/** Every upstream request was answered to this client, in order; none smuggled. */
function assertNeverSmuggled (t: Test, result: RawResult): void {
  for (const r of up.requests) t.notMatch(r.url, /smuggled/, 'no smuggled request upstream')
  const ok = result.responses.filter((r) => r.status === 200)
  t.equal(ok.length, up.requests.length, 'one answer per request the upstream saw')
  // HEAD answers carry no body to name their request.
  const answered = ok.filter((r) => r.body.length > 0).map((r) => r.body.toString().replace(/^#\d+ /, ''))
  const seen = up.requests.filter((r) => r.method !== 'HEAD').map((r) => `${r.method} ${r.url}`)
  t.same(answered.slice().sort(), seen.slice().sort(), 'the upstream saw exactly the requests the client got answers for')
}

t.test('oversized request head → 431 and closed', async (t) => {
  up.reset()
  const result = await rawRequest(proxy.port, `GET /a HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(10_000)}\r\n\r\n`)
  t.equal(result.responses[0]?.status, 431)
  t.equal(result.responses[0]?.headers.connection, 'close')
  t.ok(result.closed)
  t.equal(up.requests.length, 0)
})

t.test('oversized request line → 431 and closed', async (t) => {
  up.reset()
  const result = await rawRequest(proxy.port, `GET /${'a'.repeat(10_000)} HTTP/1.1\r\n${H}\r\n`)
  t.ok([414, 431].includes(result.responses[0]?.status as number), `got ${result.responses[0]?.status}`)
  t.equal(result.responses[0]?.headers.connection, 'close')
  t.ok(result.closed)
  t.equal(up.requests.length, 0)
})

t.test('slow request head → 408 and closed (slowloris)', async (t) => {
  up.reset()
  // headersTimeout is 500 ms in this file's config; the head never completes.
  const result = await rawRequest(proxy.port, ['GET /a HTTP/1.1\r\n', H, 'X-A: 1\r\n'], { gapMs: 50, maxMs: 5000, quietMs: 5000 })
  t.equal(result.responses[0]?.status, 408)
  t.equal(result.responses[0]?.headers.connection, 'close')
  t.ok(result.closed)
  t.equal(up.requests.length, 0)
})

t.test('a body that never arrives does not let the next request in', async (t) => {
  up.reset()
  // Content-Length promises 10 bytes; 5 arrive, then a full request. It is body, not a request.
  const result = await rawRequest(proxy.port, [`POST /a HTTP/1.1\r\n${H}Content-Length: 50\r\n\r\nhello`, SMUGGLED], { gapMs: 50, quietMs: 300, expect: 0, maxMs: 1500 })
  for (const r of up.requests) t.notMatch(r.url, /smuggled/)
  t.equal(result.responses.length, 0, 'no answer until the body is complete')
})

t.test('Max-Forwards: 0 on OPTIONS and TRACE: answered here as the final recipient, not forwarded', async (t) => {
  up.reset()
  const options = await rawRequest(proxy.port, `OPTIONS /a HTTP/1.1\r\n${H}Max-Forwards: 0\r\n\r\n`)
  t.equal(options.responses[0]?.status, 200)
  t.match(options.responses[0]?.headers.allow, /GET/)
  const trace = await rawRequest(proxy.port, `TRACE /a HTTP/1.1\r\n${H}Max-Forwards: 0\r\nAuthorization: Bearer secret\r\n\r\n`)
  t.equal(trace.responses[0]?.status, 405, 'TRACE is not reflected')
  t.notMatch(trace.responses[0]?.body.toString() ?? '', /secret/)
  t.equal(up.requests.length, 0, 'neither reached the upstream')
})

t.test('Expect: 100-continue pipelined behind a request still being answered: the 100 comes after that answer, before its own', async (t) => {
  up.reset()
  // The client holds the body back until well after the first answer, as a
  // client waiting for its 100 does.
  const result = await rawRequest(proxy.port, [
    `GET /slow HTTP/1.1\r\n${H}\r\nPOST /b HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: 5\r\n\r\n`, 'hello',
  ], { gapMs: 700, expect: 2 })
  const raw = result.raw.toString('latin1')
  const first = raw.indexOf('#1 GET /slow')
  const cont = raw.indexOf('HTTP/1.1 100 Continue')
  const second = raw.indexOf('HTTP/1.1 200', first)
  t.ok(first !== -1 && cont > first && second > cont, `the 100 sits between the two answers (at ${cont}, answers at ${first} and ${second})`)
  t.same(result.responses.map((r) => r.body.toString().replace(/^#\d+ /, '')), ['GET /slow', 'POST /b'])
  t.equal(up.requests.find((r) => r.url === '/b')?.body.toString(), 'hello')
})

t.test('a handshake pipelined behind a response larger than the socket buffer waits for all of it', async (t) => {
  up.reset()
  const result = await rawRequest(proxy.port, `GET /big HTTP/1.1\r\n${H}\r\nGET /ws HTTP/1.1\r\n${H}Host: y.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`, { expect: 2, maxMs: 15_000 })
  t.equal(result.responses.length, 2, 'both answered')
  t.equal(result.responses[0]?.body.length, Buffer.byteLength(`#1 GET /big ${'.'.repeat(4 << 20)}`), 'the big answer whole')
  t.equal(result.responses[1]?.status, 400, 'then the refusal')
})

t.test('a request asking for an upgrade we do not relay ends the connection: nothing pipelined behind it is served', async (t) => {
  up.reset()
  const result = await rawRequest(proxy.port, `GET /a HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: h2c\r\n\r\nPOST /x HTTP/1.1\r\n${H}Content-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`, { expect: 1 })
  t.equal(result.responses[0]?.status, 200)
  t.equal(result.responses[0]?.headers.connection, 'close')
  t.ok(result.closed, 'closed after it')
  t.same(up.requests.map((r) => r.url), ['/a'], 'nothing after it reached the upstream')
})
