/** Median of the finite values; NaN when there are none. Sorts a copy. */
export function median (values: ArrayLike<number>): number {
  const v: number[] = []
  for (let i = 0; i < values.length; i++) {
    const x = values[i]!
    if (Number.isFinite(x)) v.push(x)
  }
  if (v.length === 0) return Number.NaN
  v.sort((a, b) => a - b)
  const mid = v.length >> 1
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2
}

export const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x))

export const logit = (p: number): number => Math.log(p / (1 - p))

/**
 * Maps an unbounded optimiser coordinate into [lo, hi] and back, so
 * Nelder–Mead can search a box without constraint handling.
 */
export const toBox = (x: number, lo: number, hi: number): number => lo + (hi - lo) * sigmoid(x)

export const fromBox = (v: number, lo: number, hi: number): number => {
  const p = Math.min(1 - 1e-6, Math.max(1e-6, (v - lo) / (hi - lo)))
  return logit(p)
}

/** Standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9). */
export function normalQuantile (p: number): number {
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239]
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1]
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783]
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416]
  const lowTail = 0.02425
  if (p <= 0) return Number.NEGATIVE_INFINITY
  if (p >= 1) return Number.POSITIVE_INFINITY
  if (p < lowTail) {
    const q = Math.sqrt(-2 * Math.log(p))
    return (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) /
      ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1)
  }
  if (p > 1 - lowTail) return -normalQuantile(1 - p)
  const q = p - 0.5
  const r = q * q
  return (((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q /
    (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1)
}

/** The p-quantile (0–1) of the finite values by linear interpolation; NaN when there are none. */
export function quantile (values: ArrayLike<number>, p: number): number {
  const v: number[] = []
  for (let i = 0; i < values.length; i++) {
    const x = values[i]!
    if (Number.isFinite(x)) v.push(x)
  }
  if (v.length === 0) return Number.NaN
  v.sort((a, b) => a - b)
  const pos = Math.min(1, Math.max(0, p)) * (v.length - 1)
  const lo = Math.floor(pos)
  const hi = Math.min(v.length - 1, lo + 1)
  return v[lo]! + (pos - lo) * (v[hi]! - v[lo]!)
}
