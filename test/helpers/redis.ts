import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { freePort } from './cli.ts'

/** The server binary; OUTRIDER_REDIS_SERVER points elsewhere (CI installs the distro's). */
export const REDIS_SERVER = process.env.OUTRIDER_REDIS_SERVER ?? 'redis-server'

let unavailable: string | false | undefined

/**
 * Why the Redis tests cannot run on this machine, or false when they can.
 * Pass it as tap's `skip` option so a missing redis-server reads as a skip
 * with its reason, never as a failure or a silent pass.
 */
export function redisUnavailable (): string | false {
  if (unavailable === undefined) {
    const r = spawnSync(REDIS_SERVER, ['--version'], { encoding: 'utf8' })
    unavailable = r.error !== undefined || r.status !== 0
      ? `${REDIS_SERVER} is not installed or does not run (install Redis, e.g. apt-get install redis-server, or set OUTRIDER_REDIS_SERVER)`
      : false
  }
  return unavailable
}

/** A decoded RESP reply (simple string, error, integer, bulk string, array, nil). */
export type RespValue = string | number | null | Error | RespValue[]

/** RESP2 encoding of a command (https://redis.io/docs/latest/develop/reference/protocol-spec/). */
function encode (args: readonly string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`
}

/** Parses one reply from `buf` at `at`; undefined when more bytes are needed. */
function parse (buf: Buffer, at: number): [RespValue, number] | undefined {
  const eol = buf.indexOf('\r\n', at)
  if (eol === -1) return undefined
  const line = buf.toString('utf8', at + 1, eol)
  const next = eol + 2
  switch (String.fromCharCode(buf[at] as number)) {
    case '+': return [line, next]
    case '-': return [new Error(line), next]
    case ':': return [Number(line), next]
    case '$': {
      const n = Number(line)
      if (n === -1) return [null, next]
      if (buf.length < next + n + 2) return undefined
      return [buf.toString('utf8', next, next + n), next + n + 2]
    }
    case '*': {
      const n = Number(line)
      if (n === -1) return [null, next]
      const items: RespValue[] = []
      let pos = next
      for (let i = 0; i < n; i++) {
        const r = parse(buf, pos)
        if (r === undefined) return undefined
        items.push(r[0])
        pos = r[1]
      }
      return [items, pos]
    }
    default: throw new Error(`not a RESP reply: ${buf.toString('utf8', at, Math.min(buf.length, at + 40))}`)
  }
}

/** Sends one command on a fresh connection and resolves with the decoded reply. */
export function redisCommand (port: number, args: readonly string[], timeoutMs = 2_000): Promise<RespValue> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    let buf = Buffer.alloc(0)
    socket.setTimeout(timeoutMs, () => { socket.destroy(new Error(`redis on ${port} did not answer ${args[0] ?? ''} within ${timeoutMs} ms`)) })
    socket.once('error', reject)
    socket.once('connect', () => { socket.write(encode(args)) })
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      const r = parse(buf, 0)
      if (r === undefined) return
      socket.end()
      resolve(r[0])
    })
  })
}

export interface TestRedis {
  readonly port: number
  /** redis://127.0.0.1:<port> */
  readonly url: string
  /** Whether the server process is up. */
  readonly running: boolean
  /** Runs one command (e.g. `['DBSIZE']`) and returns the reply. */
  command (...args: string[]): Promise<RespValue>
  /** Kills the server at once (SIGKILL): an outage, not a shutdown. */
  stop (): Promise<void>
  /** Starts it again on the same port; the data is gone (no persistence). */
  start (): Promise<void>
  /** Freezes the server (SIGSTOP): connections stay open, nothing answers. */
  pause (): void
  /** Lets a paused server go on (SIGCONT). */
  resume (): void
  /** Stops the server and removes its directory. */
  close (): Promise<void>
}

async function waitForPong (port: number, child: ChildProcess, output: () => string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`redis-server exited before answering PING:\n${output()}`)
    try {
      if (await redisCommand(port, ['PING'], 500) === 'PONG') return
    } catch {}
    if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not answer PING within ${timeoutMs} ms:\n${output()}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/** Waits until a cluster node reports that it serves every slot. */
async function clusterOk (port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!String(await redisCommand(port, ['CLUSTER', 'INFO'])).includes('cluster_state:ok')) {
    if (Date.now() > deadline) throw new Error(`the cluster node on ${port} did not reach cluster_state:ok within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/**
 * A real redis-server on a free loopback port, without persistence
 * (`--save '' --appendonly no`), in a directory of its own. With
 * `cluster: true` it is a one-node Redis Cluster owning all 16384 slots:
 * enough for ioredis's Cluster client to discover and use it (the node
 * announces 127.0.0.1: alone, it would never learn its own address and
 * CLUSTER SLOTS would name an empty host). Pass `t` to
 * have it killed in the test's teardown.
 *
 * @example
 * t.test('shared limits', { skip: redisUnavailable() }, async (t) => {
 *   const redis = await startRedis(t)
 *   // … { store: { type: 'redis', url: redis.url } }
 * })
 */
export async function startRedis (t?: { teardown (fn: () => unknown): void }, options: { cluster?: boolean } = {}): Promise<TestRedis> {
  const reason = redisUnavailable()
  if (reason !== false) throw new Error(reason)
  const dir = await mkdtemp(path.join(tmpdir(), 'outrider-redis-'))
  let port = await freePort()
  let child: ChildProcess | undefined
  let output = ''

  const args = (): string[] => [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
    ...(options.cluster === true ? ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-announce-ip', '127.0.0.1'] : []),
  ]

  const launch = async (): Promise<void> => {
    output = ''
    const c = spawn(REDIS_SERVER, args(), { stdio: ['ignore', 'pipe', 'pipe'] })
    child = c
    c.stdout?.on('data', (d: Buffer) => { output += d.toString() })
    c.stderr?.on('data', (d: Buffer) => { output += d.toString() })
    await waitForPong(port, c, () => output)
  }

  const kill = async (): Promise<void> => {
    const c = child
    child = undefined
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return
    const exited = new Promise((resolve) => c.once('exit', resolve))
    c.kill('SIGKILL')
    await exited
  }

  try {
    await launch()
  } catch {
    // The free port was taken between freePort() and the bind: once more.
    await kill()
    port = await freePort()
    await launch()
  }

  if (options.cluster === true) {
    const r = await redisCommand(port, ['CLUSTER', 'ADDSLOTSRANGE', '0', '16383'])
    if (r instanceof Error) throw r
    await clusterOk(port)
  }

  const redis: TestRedis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    get running () { return child !== undefined && child.exitCode === null && child.signalCode === null },
    command: (...a: string[]) => redisCommand(port, a),
    stop: kill,
    start: async () => {
      if (redis.running) return
      await launch()
      // nodes.conf kept the slots; wait for the node to say so again.
      if (options.cluster === true) await clusterOk(port)
    },
    pause: () => { child?.kill('SIGSTOP') },
    resume: () => { child?.kill('SIGCONT') },
    close: async () => {
      await kill()
      await rm(dir, { recursive: true, force: true })
    },
  }
  t?.teardown(redis.close)
  return redis
}
