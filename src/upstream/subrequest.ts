import type { HeaderMap, SubrequestOptions, SubrequestReply, UpstreamClient } from '../plugin.ts'
import type { Cluster } from './cluster.ts'
import { HOP_BY_HOP } from '../http/hop-by-hop.ts'
import { NoHealthyUpstreamError, OverloadedError } from '../errors.ts'
import { toUpstreamError } from './errors.ts'
import { orcaHeader } from './orca.ts'

/**
 * Requests a plugin sends on its own through its route's cluster, outside any
 * client exchange (a cache refreshing a stale entry in the background). They
 * use the balancer, count as load and feed health like client requests do,
 * but are never retried or hedged: the caller has already answered its client.
 */
export function upstreamClient (cluster: Cluster, timeouts: { headers: number | undefined, body: number | undefined }): UpstreamClient {
  return {
    async request (options: SubrequestOptions): Promise<SubrequestReply> {
      const limit = cluster.overloaded()
      if (limit !== undefined) throw new OverloadedError(`cluster "${cluster.name}" is overloaded (${limit})`)
      // overloaded() may have made this request the cluster breaker's half-open probe.
      const probe = cluster.breaker !== undefined && cluster.breaker.state === 'half-open'
      const picked = cluster.choose(options.headers, '')
      if (typeof picked === 'string') {
        cluster.breaker?.release()
        throw picked === 'none'
          ? new NoHealthyUpstreamError(`cluster "${cluster.name}" has no healthy endpoint`)
          : new OverloadedError(`cluster "${cluster.name}" is overloaded (${picked})`)
      }
      const endpointProbe = cluster.isProbe(picked)
      const headers: Record<string, string | string[]> = {}
      for (const name in options.headers) {
        const v = options.headers[name]
        if (v !== undefined && !HOP_BY_HOP.has(name)) headers[name] = v
      }
      cluster.active++
      picked.inflight++
      const started = performance.now()
      let judged = false
      try {
        const res = await picked.pool.request({
          origin: picked.id,
          path: options.path,
          method: options.method as 'GET',
          headers,
          headersTimeout: timeouts.headers,
          bodyTimeout: timeouts.body,
        })
        judged = true
        cluster.record(picked, res.statusCode >= 500 ? '5xx' : 'success', performance.now() - started, orcaHeader(res.headers['endpoint-load-metrics']), endpointProbe, probe)
        const chunks: Buffer[] = []
        let size = 0
        let tooBig = false
        for await (const chunk of res.body) {
          size += (chunk as Buffer).length
          if (size > options.maxBodySize) { tooBig = true; res.body.destroy(); break }
          chunks.push(chunk as Buffer)
        }
        return { status: res.statusCode, headers: res.headers as HeaderMap, body: tooBig ? undefined : Buffer.concat(chunks, size) }
      } catch (err) {
        const e = toUpstreamError(err as Error)
        if (!judged) {
          const phase = e.extensions?.phase
          const fault = phase === 'connect' || phase === 'reset' || phase === 'headers' || phase === 'response'
          cluster.record(picked, fault ? 'gateway-failure' : undefined, performance.now() - started, undefined, endpointProbe, probe)
          if (!fault && probe) cluster.breaker?.release()
        }
        throw e
      } finally {
        picked.inflight--
        cluster.active--
      }
    },
  }
}
