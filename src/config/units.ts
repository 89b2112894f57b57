import { z } from 'zod'

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/
const DURATION_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
const SIZE = /^(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?$/i
const SIZE_BYTES: Record<string, number> = { b: 1, kb: 1000, kib: 1024, mb: 1e6, mib: 1024 ** 2, gb: 1e9, gib: 1024 ** 3 }

/**
 * The longest delay a Node timer takes: a longer one fires after 1 ms (a
 * `drainTimeout: 600h` would end a drain at once).
 */
export const MAX_TIMER_MS = 2 ** 31 - 1
const TEN_YEARS_MS = 10 * 365 * 86_400_000

/** A duration in milliseconds up to `max`: a number (ms) or a string such as `250ms`, `5s`, `2m`, `1h`. */
function durationUpTo (max: number, tooLong: string): z.ZodType<number, number | string> {
  return z.union([
    z.number().int().nonnegative().max(max, tooLong),
    z.string().regex(DURATION, 'a duration such as 250ms, 5s, 2m or 1h').transform((s) => {
      const m = DURATION.exec(s) as RegExpExecArray
      return Math.round(Number(m[1]) * (DURATION_MS[m[2] as string] as number))
    }).pipe(z.number().max(max, tooLong)),
  ], { error: 'a duration: milliseconds as a number, or a string such as 250ms, 5s, 2m, 1h' })
}

/** A duration that may be a timer's delay: at most MAX_TIMER_MS. */
export const duration = durationUpTo(MAX_TIMER_MS, `a duration of at most ${MAX_TIMER_MS} ms (24.8 days; timers cannot wait longer)`)

/**
 * A duration that is only compared against, never a timer's delay (a token's
 * age, how long a stale response is kept): up to ten years.
 */
export const longDuration = durationUpTo(TEN_YEARS_MS, 'a duration of at most ten years')

/** A size in bytes: a number or a string such as `64kb`, `10mib`, `1gb`. */
export const size = z.union([
  z.number().int().nonnegative(),
  z.string().regex(SIZE, 'a size such as 512, 64kb, 10mib or 1gb').transform((s) => {
    const m = SIZE.exec(s) as RegExpExecArray
    return Math.round(Number(m[1]) * (SIZE_BYTES[(m[2] ?? 'b').toLowerCase()] as number))
  }),
], { error: 'a size in bytes: a number, or a string such as 64kb, 10mib, 1gb' })
