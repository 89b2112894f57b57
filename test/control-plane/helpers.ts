import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { TokenTable } from '../../control-plane/auth.ts'
import { startControlPlane, type ControlPlaneOptions, type RunningControlPlane } from '../../control-plane/server.ts'
import { createOperatorClient, type OperatorClient } from '../../control-plane/operator-client.ts'
import { startManagedProxy, type ManagedProxy, type ManagedProxyOptions } from '../../src/control-plane-client.ts'
import { createMetrics } from '../../src/metrics.ts'
import { testLogger } from '../helpers/proxy.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

/** One token per role (at least 16 characters, as token files require). */
export const TOKENS = {
  admin: 'admin-token-0123456789',
  operator: 'operator-token-0123456789',
  viewer: 'viewer-token-0123456789',
  dataPlane: 'data-plane-token-0123456789',
} as const

export const tokenTable = (): TokenTable => new TokenTable([
  { name: 'ada', role: 'admin', token: TOKENS.admin },
  { name: 'olga', role: 'operator', token: TOKENS.operator },
  { name: 'vic', role: 'viewer', token: TOKENS.viewer },
  { name: 'fleet', role: 'data-plane', token: TOKENS.dataPlane },
])

interface Teardown { teardown (fn: () => unknown): void }

/** A temporary directory, removed in teardown. */
export async function tempDir (t: Teardown, prefix = 'outrider-cp-'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** A control plane on 127.0.0.1 (port 0 unless given), with the test tokens, closed in teardown. */
export async function startTestControlPlane (t: Teardown, options: Partial<ControlPlaneOptions> & Pick<ControlPlaneOptions, 'store'>): Promise<RunningControlPlane> {
  const cp = await startControlPlane({ listen: '127.0.0.1:0', tokens: tokenTable(), log: testLogger(), ...options })
  t.teardown(() => cp.close())
  return cp
}

/** An Operator client with `role`'s token, closed in teardown. */
export function operatorClient (t: Teardown, address: string, role: keyof typeof TOKENS = 'operator'): OperatorClient {
  const op = createOperatorClient(address, { token: TOKENS[role] })
  t.teardown(() => { op.close() })
  return op
}

/** A data plane fed by the control plane at `address`, with fast back-off, shut down in teardown. */
export async function startTestDataPlane (t: Teardown, address: string, nodeId: string, options: Partial<ManagedProxyOptions> = {}): Promise<ManagedProxy> {
  const dp = await startManagedProxy({
    address,
    nodeId,
    labels: { zone: 'test' },
    token: TOKENS.dataPlane,
    log: testLogger().child({ node: nodeId }),
    backoff: { initialMs: 50, maxMs: 400 },
    telemetryIntervalMs: 0,
    start: { metrics: createMetrics({ defaultMetrics: false }) },
    ...options,
  })
  t.teardown(() => dp.shutdown(500))
  return dp
}

/** A document whose listeners pick free loopback ports (every test data plane shares the one global config). */
export function baseDocument (clusters: Array<[string, string]>, routes: Array<Record<string, unknown>> = []): Record<string, unknown> {
  return {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    clusters: clusters.map(([name, url]) => ({ name, endpoints: [{ url }] })),
    routes,
  }
}

/** Polls `check` until it returns true (or a value other than false/undefined). */
export async function waitFor<T> (what: string, check: () => T | Promise<T>, timeoutMs = 10_000): Promise<Exclude<T, false | undefined>> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await check()
      if (v !== false && v !== undefined) return v as Exclude<T, false | undefined>
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last === undefined ? '' : ` (last error: ${(last as Error).message})`}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/** GET through a proxy: status and body text. */
export async function get (url: string, headers: Record<string, string> = {}): Promise<{ status: number, body: string }> {
  const res = await request(url, { headers })
  return { status: res.statusCode, body: await res.body.text() }
}

export const proxyUrl = (dp: ManagedProxy, p: string): string => `http://127.0.0.1:${dp.proxy?.port ?? 0}${p}`
export const adminUrl = (dp: ManagedProxy, p: string): string => `http://127.0.0.1:${dp.proxy?.adminPort ?? 0}${p}`

export interface NodeProcess {
  readonly child: ChildProcess
  readonly logs: () => string
  /** Resolves when the output holds `text` `count` times. */
  waitForLog (text: string, count?: number, timeoutMs?: number): Promise<void>
  readonly exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

/** Runs a TypeScript entry point with this Node (24), capturing its output. */
export function runScript (script: string, args: string[], options: { env?: NodeJS.ProcessEnv, cwd?: string } = {}): NodeProcess {
  const child = spawn(process.execPath, [script, ...args], { env: { ...process.env, ...options.env }, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const waiters = new Set<() => void>()
  const onData = (c: Buffer): void => { out += c.toString(); for (const w of waiters) w() }
  child.stdout?.on('data', onData)
  child.stderr?.on('data', onData)
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => { resolve({ code, signal }); for (const w of waiters) w() })
  })
  return {
    child,
    logs: () => out,
    exited,
    waitForLog (text, count = 1, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (out.split(text).length - 1 >= count) { cleanup(); resolve() } else if (child.exitCode !== null || child.signalCode !== null) { cleanup(); reject(new Error(`exited before logging "${text}":\n${out}`)) }
        }
        const timer = setTimeout(() => { cleanup(); reject(new Error(`timed out waiting for "${text}":\n${out}`)) }, timeoutMs)
        const cleanup = (): void => { clearTimeout(timer); waiters.delete(check) }
        waiters.add(check)
        check()
      })
    },
  }
}

export const CP_CLI = fileURLToPath(new URL('../../control-plane/outrider-cp.js', import.meta.url))

/** An upstream that answers `<name> <path>`: which one served a request is in its body. */
export async function namedUpstream (t: Teardown, name: string): Promise<Upstream> {
  const up = await startUpstream((req, res) => { res.writeHead(200); res.end(`${name} ${req.url ?? ''}`) })
  t.teardown(() => up.close())
  return up
}

/** Whether the data plane serves `text` at path `p` right now. */
export async function serves (dp: ManagedProxy, p: string, text: string): Promise<boolean> {
  if (dp.proxy === undefined) return false
  const r = await get(proxyUrl(dp, p))
  return r.status === 200 && r.body === text
}
