import { runJob, type Job } from './job.ts'

export interface NelderMeadOptions {
  /** Initial simplex edge along each axis. */
  step?: number
  /** Budget of objective evaluations; fitting cost is linear in it. */
  maxEvals?: number
  /** Stop when the simplex's objective values span less than this. */
  tolerance?: number
}

export interface NelderMeadResult {
  x: number[]
  fx: number
  evals: number
}

/**
 * Minimises `f` over Rⁿ with the Nelder–Mead simplex (standard coefficients:
 * reflection 1, expansion 2, contraction ½, shrink ½). Derivative-free, so it
 * copes with the kinked absolute-error objectives used to fit smoothing
 * parameters; constraints are the caller's job (map bounded parameters
 * through a sigmoid).
 *
 * @example
 * const { x } = nelderMead(([a, b]) => (a! - 1) ** 2 + (b! + 2) ** 2, [0, 0])
 * // x ≈ [1, -2]
 */
export function nelderMead (f: (x: number[]) => number, x0: ArrayLike<number>, options: NelderMeadOptions = {}): NelderMeadResult {
  return runJob(nelderMeadSteps(f, x0, options))
}

/** nelderMead as a job (./job.ts): it yields after every evaluation of `f`. */
export function * nelderMeadSteps (f: (x: number[]) => number, x0: ArrayLike<number>, options: NelderMeadOptions = {}): Job<NelderMeadResult> {
  const { step = 1, maxEvals = 200, tolerance = 1e-9 } = options
  const n = x0.length
  let evals = 0
  function * evaluate (x: number[]): Job<number> {
    evals++
    const v = f(x)
    yield
    // A NaN objective (a diverging parameter set) must lose every comparison.
    return Number.isNaN(v) ? Number.POSITIVE_INFINITY : v
  }
  const points: number[][] = [Array.from(x0)]
  for (let i = 0; i < n; i++) {
    const p = Array.from(x0)
    p[i]! += step
    points.push(p)
  }
  const values: number[] = []
  for (const p of points) values.push(yield * evaluate(p))
  const order = points.map((_, i) => i)
  const combine = (a: number[], b: number[], t: number): number[] => a.map((v, i) => v + t * (b[i]! - v))

  while (evals < maxEvals) {
    order.sort((i, j) => values[i]! - values[j]!)
    const best = order[0]!
    const worst = order[n]!
    const second = order[n - 1]!
    if (Math.abs(values[worst]! - values[best]!) <= tolerance * (1 + Math.abs(values[best]!))) break

    const centroid = new Array<number>(n).fill(0)
    for (const i of order.slice(0, n)) for (let d = 0; d < n; d++) centroid[d]! += points[i]![d]! / n

    const reflected = combine(centroid, points[worst]!, -1)
    const fr = yield * evaluate(reflected)
    if (fr < values[best]!) {
      const expanded = combine(centroid, points[worst]!, -2)
      const fe = yield * evaluate(expanded)
      if (fe < fr) {
        points[worst] = expanded
        values[worst] = fe
      } else {
        points[worst] = reflected
        values[worst] = fr
      }
      continue
    }
    if (fr < values[second]!) {
      points[worst] = reflected
      values[worst] = fr
      continue
    }
    // Contract towards the better of the worst point and its reflection.
    const outside = fr < values[worst]!
    const contracted = combine(centroid, outside ? reflected : points[worst]!, 0.5)
    const fc = yield * evaluate(contracted)
    if (fc < (outside ? fr : values[worst]!)) {
      points[worst] = contracted
      values[worst] = fc
      continue
    }
    for (const i of order.slice(1)) {
      points[i] = combine(points[best]!, points[i]!, 0.5)
      values[i] = yield * evaluate(points[i]!)
    }
  }
  let bestIndex = 0
  for (let i = 1; i <= n; i++) if (values[i]! < values[bestIndex]!) bestIndex = i
  return { x: points[bestIndex]!, fx: values[bestIndex]!, evals }
}
