import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { startChaosUpstream, type ChaosUpstream, type ChaosUpstreamOptions } from './chaos-upstream.ts'

/**
 * Small helpers shared by the resilience tests (test/proxy/retry, hedging,
 * circuit-breaker, health, peak-ewma): chaos upstreams closed in teardown,
 * the admin `/clusters` view, metric values, and bounded polling.
 */

type Teardown = { teardown (fn: () => unknown): void }

/** A chaos upstream closed in the test's teardown. */
export async function chaos (t: Teardown, options: ChaosUpstreamOptions = {}): Promise<ChaosUpstream> {
  const up = await startChaosUpstream(options)
  t.teardown(() => up.close())
  return up
}

/** What the tests read of one endpoint on the admin `/clusters` endpoint. */
export interface EndpointView {
  url: string
  healthy: boolean
  inflight: number
  health: { active: string, ejectedUntil?: string, ejections: number, healthy: boolean, panic: boolean }
  activeCheck?: { state: string, consecutivePasses: number, consecutiveFailures: number }
  circuit?: { state: string, openUntil?: string }
  score?: Record<string, unknown>
}

export interface ClusterView {
  name: string
  panic: boolean
  active: number
  retriesInFlight: number
  circuit?: { state: string, openUntil?: string }
  endpoints: EndpointView[]
}

/** One cluster as the admin `/clusters` endpoint shows it. */
export async function clusterState (adminUrl: string, name: string): Promise<ClusterView> {
  const res = await request(`${adminUrl}/clusters`)
  const body = await res.body.json() as { clusters: ClusterView[] }
  const c = body.clusters.find((x) => x.name === name)
  if (c === undefined) throw new Error(`no cluster ${name} on /clusters`)
  return c
}

/**
 * The value of one sample of a metric on the admin `/metrics` endpoint, 0
 * when absent. `labels` must all match (others may be present).
 */
export async function metric (adminUrl: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const res = await request(`${adminUrl}/metrics`)
  const text = await res.body.text()
  let sum = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const m = /^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$/.exec(line)
    if (m === null || m[1] !== name) continue
    const have = parseLabels(m[3] ?? '')
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[4])
  }
  return sum
}

function parseLabels (s: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const m of s.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) out[m[1] as string] = (m[2] as string).replace(/\\(.)/g, '$1')
  return out
}

/**
 * Polls `check` until it returns a truthy value (returned), or throws after
 * `maxMs`. The bound is only a safety net: tests assert on states, not on how
 * long they took.
 */
export async function waitFor<T> (check: () => T | Promise<T>, what: string, maxMs = 5000, everyMs = 20): Promise<NonNullable<T>> {
  const until = Date.now() + maxMs
  for (;;) {
    const v = await check()
    if (v !== undefined && v !== null && v !== false) return v as NonNullable<T>
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await sleep(everyMs)
  }
}

export interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** One request through the proxy, body read as text. */
export async function get (url: string, options: Parameters<typeof request>[1] = {}): Promise<Answer> {
  const res = await request(url, options)
  const body = await res.body.text()
  return { status: res.statusCode, headers: res.headers, body }
}

/** `n` requests, `concurrency` at a time; answers in completion order. */
export async function drive (url: string, n: number, concurrency: number, options: Parameters<typeof request>[1] = {}): Promise<Answer[]> {
  const out: Answer[] = []
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < n) {
      next++
      out.push(await get(url, options))
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker))
  return out
}

/** How many answers came from the chaos upstream named `name`. */
export function from (answers: readonly Answer[], name: string): number {
  return answers.filter((a) => a.headers['x-chaos-upstream'] === name).length
}
