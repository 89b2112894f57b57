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
   * @returns an endpoint, or undefined when none is healthy.
   */
  pick (hashKey: string | undefined): BalancedEndpoint | undefined
}

export type BalancerFactory = (config: LoadBalancerConfig, endpoints: readonly BalancedEndpoint[]) => Balancer
