import type { Value } from './normalize.ts'

/** Rule families: each can be disabled as a whole, or excluded for one parameter. */
export const FAMILIES = ['protocol', 'scanner', 'lfi', 'rce', 'code', 'xss', 'sqli'] as const
export type Family = typeof FAMILIES[number]

/** Severities and the anomaly score each adds, as in the OWASP Core Rule Set. */
export const SCORES = { critical: 5, error: 4, warning: 3, notice: 2 } as const
export type Severity = keyof typeof SCORES

export type Paranoia = 1 | 2 | 3 | 4

/** Where in the request a value comes from. */
export type Location = 'path' | 'query' | 'body' | 'cookie' | 'header'

/**
 * Standard request headers with a fixed grammar (media types, codings,
 * credentials, validators, trace context …): the injection families do not
 * read them, they would only find false positives there. Every other header,
 * an application's own `X-…` ones included, is read like INSPECTED_HEADERS:
 * a backend may log, echo or query with it.
 */
export const STRUCTURED_HEADERS: ReadonlySet<string> = new Set([
  'accept', 'accept-charset', 'accept-encoding', 'accept-language', 'accept-datetime', 'authorization',
  'proxy-authorization', 'cache-control', 'connection', 'content-encoding', 'content-language', 'content-length',
  'content-md5', 'content-type', 'date', 'dnt', 'expect', 'host', 'if-match', 'if-none-match', 'if-modified-since',
  'if-unmodified-since', 'if-range', 'keep-alive', 'max-forwards', 'pragma', 'priority', 'range', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'upgrade-insecure-requests', 'via', 'traceparent', 'tracestate', 'baggage', 'b3',
  'x-request-id', 'x-correlation-id', 'x-amzn-trace-id', 'x-cloud-trace-context', 'x-forwarded-proto',
  'x-forwarded-port', 'x-csrf-token', 'x-xsrf-token', 'purpose', 'save-data', 'downlink', 'ect', 'rtt',
  'device-memory', 'viewport-width', 'width', 'dpr', 'early-data', 'http2-settings', 'alt-used', 'cookie',
])
/** Prefixes of header families with a fixed grammar (fetch metadata, client hints, tracing, gRPC). */
export const STRUCTURED_HEADER_PREFIXES: readonly string[] = ['sec-', 'access-control-request-', 'x-b3-', 'grpc-', 'x-envoy-', 'if-']

/** Request headers whose values the injection families read (beyond protocol checks). */
export const INSPECTED_HEADERS: ReadonlySet<string> = new Set([
  'user-agent', 'referer', 'origin', 'x-forwarded-for', 'x-forwarded-host', 'x-real-ip', 'x-client-ip',
  'true-client-ip', 'forwarded', 'x-original-url', 'x-rewrite-url', 'x-http-method-override', 'from',
  'x-api-version', 'x-requested-with',
])

interface RuleBase {
  /** Stable: configs disable and exclude rules by it, logs and problem bodies name it. */
  readonly id: number
  readonly family: Family
  readonly severity: Severity
  /** The lowest paranoia level the rule runs at (higher levels add stricter rules). */
  readonly paranoia: Paranoia
  readonly description: string
}

/** One value in context: the rule sees where it came from. */
export interface Part {
  readonly location: Location
  /** Parameter, cookie, header or JSON path name; '' for the path and a raw body. */
  readonly name: string
  /** The exclusion target: `query:q`, `header:user-agent`, `path`, `body` … */
  readonly target: string
  /** The value is a parameter (or cookie, JSON key) name rather than a value. */
  readonly isName: boolean
  /** The value was percent-encoded on the wire (path, query, form fields), so encoding anomalies mean something. */
  readonly urlEncoded: boolean
  /** The content (or filename) of an uploaded file. */
  readonly file: 'content' | 'name' | undefined
  readonly value: Value
}

/** A rule that reads one value at a time. */
export interface ValueRule extends RuleBase {
  readonly kind: 'value'
  /** Locations it reads. */
  readonly where: readonly Location[]
  /**
   * For `header`: the header names it reads; `all` for every header; absent
   * for INSPECTED_HEADERS.
   */
  readonly headers?: readonly string[] | 'all'
  /** Also read parameter names (default true). */
  readonly names?: boolean
  /** Read uploaded file contents (default false: they are binary, mostly). */
  readonly files?: boolean
  /** Returns the matched text (for the log), or undefined when it does not match. */
  readonly match: (v: Value, part: Part) => string | undefined
}

/** A body that could not be read as declared: `multipart` and `depth` hide content from the rules. */
export type BodyProblem = 'multipart' | 'json' | 'depth'

/** What request-level rules see: facts about the whole request. */
export interface RequestFacts {
  readonly method: string
  /** Raw header lines, names lower-cased, in order. */
  readonly headers: ReadonlyArray<readonly [string, string]>
  /** Query parameters plus body fields. */
  readonly argCount: number
  /** The body was larger than `maxBodySize`, so it was not inspected. */
  readonly bodyOversized: boolean
  /** What went wrong reading the body as its Content-Type says. */
  readonly bodyProblems: readonly BodyProblem[]
  readonly contentType: string | undefined
  readonly hasBody: boolean
  readonly limits: { readonly headerLength: number, readonly headerCount: number, readonly args: number }
}

/** A rule about the request as a whole (framing, header counts, the body's fate). */
export interface RequestRule extends RuleBase {
  readonly kind: 'request'
  /** The exclusion target it reports (`header:user-agent`, `body`, `request`). */
  readonly target: string
  /** Needs the body's facts (argument count, parse problems): runs once the body was read. */
  readonly afterBody?: boolean
  /** Returns what it found (for the log), or undefined. */
  readonly check: (r: RequestFacts) => string | undefined
}

export type Rule = ValueRule | RequestRule

/** The matched text of the first match of `re` (not global) in `s`, if any. */
export function found (re: RegExp, s: string): string | undefined {
  const m = re.exec(s)
  return m === null ? undefined : m[0]
}

/** Shorthand for the many rules that are one pattern over one view. */
export function pattern (view: 'text' | 'js' | 'compact' | 'shell' | 'fsPath' | 'decoded' | 'raw' | 'clean', re: RegExp): (v: Value) => string | undefined {
  if (re.global || re.sticky) throw new Error(`rule pattern ${re} must not be global or sticky: it would keep state between values`)
  return (v) => found(re, v[view])
}

/**
 * `words` as one alternation for a RegExp source, longest first so a shorter
 * word never shadows a longer one; escaped, so lists can hold `.` or `+`.
 */
export function alternation (words: readonly string[]): string {
  return [...words].sort((a, b) => b.length - a.length).map((w) => w.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')).join('|')
}
