import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

/**
 * How a chaos upstream answers requests other than `/healthz`. Steps run in
 * this order: `hang`, then `delayMs`, then `reset`, `closeMidBody`, or an
 * answer with `status` (or 200, see `failRatio`).
 */
export interface ChaosBehaviour {
  /** Wait this long before acting. */
  delayMs?: number
  /**
   * Status of the answers. Without `failRatio` every request gets it (default
   * 200); with `failRatio` only that share does (default 503), the rest get 200.
   */
  status?: number
  /**
   * Share of requests, 0..1, answered with `status`. Spread deterministically
   * (0.25 fails every 4th request), so tests can count.
   */
  failRatio?: number
  /** Reset the connection (TCP RST) instead of answering. */
  reset?: boolean
  /** Never answer; the socket stays open until the client gives up or close(). */
  hang?: boolean
  /** Send the head and half of the body, then close the connection. */
  closeMidBody?: boolean
  /** Response body; default: the upstream's name and a newline. */
  body?: string | Buffer
  /** Extra response headers, e.g. an ORCA `endpoint-load-metrics`. */
  headers?: Record<string, string>
}

export interface SeenRequest {
  method: string
  url: string
  headers: http.IncomingHttpHeaders
}

export interface ChaosUpstreamOptions {
  /** Sent as `x-chaos-upstream` on every answer; default `up-<port>`. */
  name?: string
  behaviour?: ChaosBehaviour
  /** Record request heads in `seen` (turn off for benchmarks). Default true. */
  recordSeen?: boolean
}

/**
 * A real HTTP server on 127.0.0.1 whose failures are set at runtime, for
 * resilience tests and benchmarks.
 *
 * Per-request overrides, as request headers: `x-chaos-delay: <ms>`,
 * `x-chaos-status: <code>` (answer with this status, whatever failRatio says),
 * `x-chaos-reset`, `x-chaos-hang`, `x-chaos-close-mid-body` (any value).
 *
 * `GET /healthz` answers 200 or 503 according to `healthy` (after
 * `healthDelayMs`) and is counted apart, in `healthChecks`.
 *
 * @example
 * const up = await startChaosUpstream({ name: 'a' })
 * up.behave({ status: 503, failRatio: 0.5 })
 * up.healthy = false
 * await up.stop()   // connections are refused now
 * await up.start()  // same port again
 * await up.close()
 */
export class ChaosUpstream {
  readonly name: string
  readonly port: number
  readonly url: string
  /** Request heads in arrival order (not /healthz). */
  readonly seen: SeenRequest[] = []
  /** Heads of /healthz requests. */
  readonly healthSeen: SeenRequest[] = []
  /** Answer of /healthz: 200 when true, 503 when false. */
  healthy = true
  /** Delay of /healthz answers (e.g. longer than a checker's timeout). */
  healthDelayMs = 0
  readonly #server: http.Server
  readonly #record: boolean
  readonly #timers = new Set<NodeJS.Timeout>()
  #behaviour: ChaosBehaviour = {}
  #body: Buffer = Buffer.alloc(0)
  #failDebt = 0
  #count = 0
  #healthChecks = 0
  #listening = true

  constructor (server: http.Server, port: number, options: ChaosUpstreamOptions) {
    this.#server = server
    this.port = port
    this.url = `http://127.0.0.1:${port}`
    this.name = options.name ?? `up-${port}`
    this.#record = options.recordSeen ?? true
    this.behave(options.behaviour)
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => { this.#handle(req, res) })
  }

  /** Requests answered or not, /healthz excluded, since start or reset(). */
  get count (): number { return this.#count }
  /** /healthz requests since start or reset(). */
  get healthChecks (): number { return this.#healthChecks }
  get behaviour (): Readonly<ChaosBehaviour> { return this.#behaviour }

  /** Replaces the behaviour (unset fields fall back to a plain 200). */
  behave (behaviour: ChaosBehaviour = {}): void {
    this.#behaviour = { ...behaviour }
    const body = behaviour.body ?? `${this.name}\n`
    this.#body = typeof body === 'string' ? Buffer.from(body) : body
    this.#failDebt = 0
  }

  /** Clears the counters and the recorded heads. */
  reset (): void {
    this.#count = 0
    this.#healthChecks = 0
    this.seen.length = 0
    this.healthSeen.length = 0
    this.#failDebt = 0
  }

  /** Stops listening and drops every connection: new connections are refused. */
  async stop (): Promise<void> {
    if (!this.#listening) return
    this.#listening = false
    for (const t of this.#timers) clearTimeout(t)
    this.#timers.clear()
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve())
      this.#server.closeAllConnections()
    })
  }

  /** Listens again on the same port after stop(). */
  async start (): Promise<void> {
    if (this.#listening) return
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(this.port, '127.0.0.1', () => {
        this.#server.off('error', reject)
        resolve()
      })
    })
    this.#listening = true
  }

  /** Ends everything, hanging sockets included. */
  async close (): Promise<void> {
    await this.stop()
  }

  #later (fn: () => void, ms: number): void {
    if (ms <= 0) { fn(); return }
    const t = setTimeout(() => { this.#timers.delete(t); fn() }, ms)
    this.#timers.add(t)
  }

  #handle (req: http.IncomingMessage, res: http.ServerResponse): void {
    const head: SeenRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers }
    if (req.url === '/healthz') {
      this.#healthChecks++
      if (this.#record) this.healthSeen.push(head)
      req.resume()
      this.#later(() => {
        const body = this.healthy ? 'ok\n' : 'unhealthy\n'
        res.writeHead(this.healthy ? 200 : 503, { 'content-type': 'text/plain', 'content-length': body.length, 'x-chaos-upstream': this.name })
        res.end(body)
      }, this.healthDelayMs)
      return
    }
    this.#count++
    if (this.#record) this.seen.push(head)
    const b = this.#behaviour
    const h = req.headers
    if (h['x-chaos-hang'] !== undefined || b.hang === true) return
    const delayHeader = h['x-chaos-delay']
    const delay = delayHeader !== undefined ? Number(delayHeader) : b.delayMs ?? 0
    // Decide failRatio now, in arrival order, so the spread stays exact under delays.
    const statusHeader = h['x-chaos-status']
    const status = statusHeader !== undefined ? Number(statusHeader) : this.#status(b)
    const reset = h['x-chaos-reset'] !== undefined || b.reset === true
    const midBody = h['x-chaos-close-mid-body'] !== undefined || b.closeMidBody === true
    // Read the request body first, so the connection can be reused.
    req.resume()
    req.once('end', () => {
      this.#later(() => {
        if (reset) { req.socket.resetAndDestroy(); return }
        const headers: http.OutgoingHttpHeaders = { ...b.headers, 'x-chaos-upstream': this.name }
        if (midBody) { this.#closeMidBody(req.socket, res, headers, status); return }
        headers['content-length'] = this.#body.length
        res.writeHead(status, headers)
        res.end(this.#body)
      }, Number.isFinite(delay) ? delay : 0)
    })
  }

  #status (b: ChaosBehaviour): number {
    if (b.failRatio === undefined) return b.status ?? 200
    this.#failDebt += b.failRatio
    if (this.#failDebt >= 1 - 1e-9) {
      this.#failDebt -= 1
      return b.status ?? 503
    }
    return 200
  }

  #closeMidBody (socket: Socket, res: http.ServerResponse, headers: http.OutgoingHttpHeaders, status: number): void {
    // Too short a body has no middle: announce 64 bytes instead.
    const payload = this.#body.length >= 2 ? this.#body : Buffer.alloc(64, 'x')
    headers['content-length'] = payload.length
    res.writeHead(status, headers)
    res.write(payload.subarray(0, payload.length >> 1), () => { socket.destroy() })
  }
}

/** A chaos upstream on 127.0.0.1, port chosen by the OS. Close it in teardown. */
export async function startChaosUpstream (options: ChaosUpstreamOptions = {}): Promise<ChaosUpstream> {
  const server = http.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return new ChaosUpstream(server, (server.address() as AddressInfo).port, options)
}
