/**
 * The RateLimit-Policy and RateLimit response fields of
 * draft-ietf-httpapi-ratelimit-headers-11 (May 2026; the field syntax is the
 * one of -08 onwards): Structured Fields lists (RFC 9651) of items named by a
 * policy, with parameters.
 *
 *   RateLimit-Policy: "1s";q=10;w=1, "1d";q=1000;w=86400   (§3: quota q per window w seconds)
 *   RateLimit: "1s";r=0;t=1                                (§4: r left, for t more seconds)
 *
 * Policy names are checked by the schema to need no escaping inside an
 * sf-string. No partition key (`pk`) is sent: ours are client addresses and
 * identities, which §6.1 and §9 advise against disclosing.
 */

/** One quota policy item (draft §3.1). */
export function policyItem (name: string, points: number, seconds: number): string {
  return `"${name}";q=${points};w=${seconds}`
}

/**
 * One service limit item (draft §4.1). `t` is delay-seconds (§4.1.2), so
 * the milliseconds left are rounded up: rounding down would tell a client
 * to come back while the window is still closed.
 */
export function limitItem (name: string, remaining: number, resetMs: number): string {
  return `"${name}";r=${remaining};t=${Math.ceil(resetMs / 1000)}`
}

/** Appends a list member to a response field, keeping what the upstream sent (draft §7.2: never more permissive). */
export function appendField (headers: Record<string, string | string[] | undefined>, name: string, value: string): void {
  const prev = headers[name]
  // A new array, never a push: the one there may be shared (a cached response's).
  if (prev === undefined) headers[name] = value
  else headers[name] = typeof prev === 'string' ? [prev, value] : [...prev, value]
}
