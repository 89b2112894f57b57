/**
 * HTTP-date (RFC 9110 §5.6.7): recipients accept the three historical forms.
 * `Date.parse` is not used: it accepts many strings that are not HTTP-dates
 * (and rejects none of the ambiguous ones), and an invalid date has a meaning
 * of its own in caching (`Expires: 0` is "already expired").
 */

// Names are matched without regard to case (a lenient reading the caching suites expect); the layout is strict.
const MONTHS: Record<string, number> = { jan: 0, feb: 1, mar: 2, apr: 3, may: 4, jun: 5, jul: 6, aug: 7, sep: 8, oct: 9, nov: 10, dec: 11 }

// Sun, 06 Nov 1994 08:49:37 GMT
const IMF_FIXDATE = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) ([a-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/i
// Sunday, 06-Nov-94 08:49:37 GMT
const RFC850 = /^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\d{2})-([a-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$/i
// Sun Nov  6 08:49:37 1994
const ASCTIME = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([a-z]{3}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/i

function build (year: number, month: string, day: number, h: number, m: number, s: number): number | undefined {
  const mon = MONTHS[month.toLowerCase()]
  if (mon === undefined || day < 1 || day > 31 || h > 23 || m > 59 || s > 60) return undefined
  const t = Date.UTC(year, mon, day, h, m, Math.min(s, 59))
  // Date.UTC rolls 31 Feb into March: such a date is not a date.
  return new Date(t).getUTCDate() === day ? t : undefined
}

/** Milliseconds since the epoch, or undefined when `value` is not an HTTP-date. */
export function parseHttpDate (value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const v = value.trim()
  let m = IMF_FIXDATE.exec(v)
  if (m !== null) return build(Number(m[3]), m[2] as string, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]))
  m = RFC850.exec(v)
  if (m !== null) {
    // Two-digit years more than 50 years ahead are in the past century (RFC 9110 §5.6.7).
    let year = 2000 + Number(m[3])
    if (year > new Date().getUTCFullYear() + 50) year -= 100
    return build(year, m[2] as string, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]))
  }
  m = ASCTIME.exec(v)
  if (m !== null) return build(Number(m[6]), m[1] as string, Number((m[2] as string).trim()), Number(m[3]), Number(m[4]), Number(m[5]))
  return undefined
}

/** The IMF-fixdate form of `ms`, as every sender must use. */
export function formatHttpDate (ms: number): string {
  return new Date(ms).toUTCString()
}
