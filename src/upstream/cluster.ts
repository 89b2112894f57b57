import { Pool } from 'undici'
import type { ClusterConfig } from '../config/schema.ts'
import type { HeaderMap } from '../plugin.ts'
import type { Balancer, BalancedEndpoint } from './balancer.ts'
import { createBalancer } from './balancers/index.ts'
import { createHashKeyExtractor } from './balancers/consistent-hash.ts'

/** One upstream endpoint: its pooled keep-alive connections and live state. */
export class Endpoint implements BalancedEndpoint {
  readonly id: string
  readonly url: string
  readonly weight: number
  readonly pool: Pool
  inflight = 0
  healthy = true

  constructor (url: string, weight: number, cfg: ClusterConfig) {
    const origin = new URL(url).origin
    this.id = origin
    this.url = url
    this.weight = weight
    this.pool = new Pool(origin, {
      connections: cfg.connectionsPerEndpoint,
      // Pipelining would let one slow response stall the ones queued behind it.
      pipelining: 1,
      keepAliveTimeout: cfg.timeouts.keepAlive,
      keepAliveMaxTimeout: Math.max(cfg.timeouts.keepAlive, 1000),
      connectTimeout: cfg.timeouts.connect,
      headersTimeout: cfg.timeouts.request,
      bodyTimeout: cfg.timeouts.idle,
      // The client's framing was already checked; the upstream's is checked by undici.
      strictContentLength: true,
    })
  }

  state (): Record<string, unknown> {
    const s = this.pool.stats
    return {
      url: this.url,
      weight: this.weight,
      healthy: this.healthy,
      inflight: this.inflight,
      pool: { connected: s.connected, free: s.free, pending: s.pending, running: s.running, size: s.size },
    }
  }
}

/**
 * A named set of endpoints and the policy that picks among them. Built once per
 * snapshot; retired (pools drained, then closed) when the snapshot is replaced.
 */
export class Cluster {
  readonly name: string
  readonly config: ClusterConfig
  readonly endpoints: readonly Endpoint[]
  readonly #balancer: Balancer
  readonly #hashKey: ((headers: HeaderMap, clientIp: string) => string | undefined) | undefined

  constructor (config: ClusterConfig) {
    this.name = config.name
    this.config = config
    this.endpoints = config.endpoints.map((e) => new Endpoint(e.url, e.weight, config))
    this.#balancer = createBalancer(config.loadBalancer, this.endpoints)
    this.#hashKey = config.loadBalancer.policy === 'consistent_hash' ? createHashKeyExtractor(config.loadBalancer.hashOn) : undefined
  }

  /** The endpoint for this request, or undefined when none is healthy. */
  pick (headers: HeaderMap, clientIp: string): Endpoint | undefined {
    return this.#balancer.pick(this.#hashKey === undefined ? undefined : this.#hashKey(headers, clientIp)) as Endpoint | undefined
  }

  state (): Record<string, unknown> {
    return { name: this.name, loadBalancer: this.config.loadBalancer, endpoints: this.endpoints.map((e) => e.state()) }
  }

  /**
   * Lets requests already dispatched finish (undici's `close` waits for them),
   * then closes the pools; after `deadlineMs` whatever is left is destroyed.
   */
  async drain (deadlineMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), deadlineMs) })
    timer?.unref()
    await Promise.all(this.endpoints.map(async (e) => {
      const result = await Promise.race([e.pool.close().then(() => 'ok' as const), deadline])
      if (result === 'late') await e.pool.destroy()
    }))
    clearTimeout(timer)
  }
}
