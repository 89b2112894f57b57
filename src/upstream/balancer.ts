import type { LoadBalancerConfig } from '../config/schema.ts'

/**
 * What a balancer sees of an endpoint. The cluster owns these objects and
 * updates `inflight` and `healthy` in place; balancers only read them.
 */
export interface BalancedEndpoint {
  /** Stable identity (the endpoint URL's origin). */
  readonly id: string
  /** Configured weight, >= 1. */
  readonly weight: number
  /** Requests currently in flight to this endpoint. */
  inflight: number
  /** False while ejected by health checks / outlier detection (issue #3). */
  healthy: boolean
}

/** Picks an endpoint per request. Built once per snapshot per cluster. */
export interface Balancer {
  /**
   * @param hashKey the consistent-hash key for this request (only the
   *   consistent_hash policy reads it; undefined when none could be derived).
   * @param usable when given, endpoints it refuses are passed over as if they
   *   were unhealthy (the cluster's second pick, after its first one's circuit
   *   was open or its queue full). Only that rare pick passes it.
   * @returns an endpoint, or undefined when none is healthy (and usable).
   */
  pick (hashKey: string | undefined, usable?: Usable): BalancedEndpoint | undefined
  /**
   * Called once per finished upstream attempt (only latency-aware policies
   * implement it). Must be cheap: it runs on every response.
   */
  observe? (endpoint: BalancedEndpoint, sample: AttemptSample): void
  /** An external weight hint (the control plane's), or undefined to clear it. */
  setWeightHint? (endpointId: string, weight: number | undefined): void
  /** What the admin `/clusters` endpoint shows of this endpoint's score and its inputs. */
  describe? (endpoint: BalancedEndpoint): Record<string, unknown>
}

/** One finished attempt as a balancer sees it. */
export interface AttemptSample {
  /** Dispatch until the response head (or the failure), in ms. */
  latencyMs: number
  /** Connect failure, reset, timeout or 5xx. */
  failed: boolean
  /** The raw ORCA `endpoint-load-metrics` response header, when the upstream sent one. */
  orca: string | undefined
  /** performance.now() at the end of the attempt. */
  now: number
}

export type BalancerFactory = (config: LoadBalancerConfig, endpoints: readonly BalancedEndpoint[]) => Balancer

/** Which endpoints a restricted pick may return (see `Balancer.pick`). */
export type Usable = (endpoint: BalancedEndpoint) => boolean

/** Healthy and, when the pick is restricted, usable: the test every policy applies. */
export function eligible (endpoint: BalancedEndpoint, usable: Usable | undefined): boolean {
  return endpoint.healthy && (usable === undefined || usable(endpoint))
}
