const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/
const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 }

/**
 * `500ms`, `10s`, `5m`, `1h`, `7d`, `1w` (or a bare number of seconds) →
 * seconds; undefined when it is neither.
 *
 * @example
 * parseDuration('5m') // 300
 */
export function parseDuration (text: string | number): number | undefined {
  if (typeof text === 'number') return Number.isFinite(text) && text >= 0 ? text : undefined
  const trimmed = text.trim()
  if (/^\d+(?:\.\d+)?$/.test(trimmed)) return Number(trimmed)
  const m = DURATION.exec(trimmed)
  if (m === null) return undefined
  return Number(m[1]) * (UNIT_SECONDS[m[2] as string] as number)
}

/** 300 → `5m`, 90 → `90s`: the shortest exact form, for messages and the CLI. */
export function formatDuration (seconds: number): string {
  for (const [unit, s] of [['w', 604_800], ['d', 86_400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (seconds >= s && seconds % s === 0) return `${seconds / s}${unit}`
  }
  return `${Math.round(seconds * 1000)}ms`
}
