import { Counter, Gauge, type Registry } from 'prom-client'
import { MemoryStore } from './memory-store.ts'

/**
 * What the cache keeps per process rather than per plugin instance: its
 * metrics (one set per registry, whatever the number of routes and
 * snapshots) and the L1 stores, which outlive a config reload.
 */

const metricCache = new WeakMap<Registry, { lookups: Counter<'route' | 'result'>, bytes: Gauge<'route' | 'layer'>, l2Errors: Counter<'route' | 'op'> }>()
/** Stores alive in this process, for the bytes gauge (several snapshots may hold one). */
const liveStores = new Map<string, Set<MemoryStore>>()

export function metricsFor (registry: Registry): NonNullable<ReturnType<typeof metricCache.get>> {
  let m = metricCache.get(registry)
  if (m !== undefined) return m
  const existing = registry.getSingleMetric('outrider_cache_lookups_total') as Counter<'route' | 'result'> | undefined
  m = {
    lookups: existing ?? new Counter({ name: 'outrider_cache_lookups_total', help: 'Cache lookups, by route and result (hit, miss, stale, revalidated, bypass).', labelNames: ['route', 'result'], registers: [registry] }),
    bytes: (registry.getSingleMetric('outrider_cache_stored_bytes') as Gauge<'route' | 'layer'> | undefined) ?? new Gauge({
      name: 'outrider_cache_stored_bytes',
      help: 'Bytes held by the in-process (l1) cache, by route.',
      labelNames: ['route', 'layer'],
      registers: [registry],
      collect () {
        this.reset()
        for (const [route, stores] of liveStores) {
          let bytes = 0
          for (const s of stores) bytes += s.bytes
          this.labels(route, 'l1').set(bytes)
        }
      },
    }),
    l2Errors: (registry.getSingleMetric('outrider_cache_l2_errors_total') as Counter<'route' | 'op'> | undefined) ??
      new Counter({ name: 'outrider_cache_l2_errors_total', help: 'L2 (Redis) operations that failed or timed out, by route and operation.', labelNames: ['route', 'op'], registers: [registry] }),
  }
  metricCache.set(registry, m)
  return m
}

/**
 * The L1 stores outlive snapshots: a config reload that keeps a route's
 * cache settings keeps what it has stored. Keyed by route and the settings
 * that shape the store.
 */
const stores = new Map<string, { store: MemoryStore, refs: number }>()

export function acquireStore (route: string, maxSize: number): { store: MemoryStore, release: () => void } {
  const id = `${route}\u0000${maxSize}`
  let s = stores.get(id)
  if (s === undefined) { s = { store: new MemoryStore(maxSize), refs: 0 }; stores.set(id, s) }
  s.refs++
  const held = s
  let live = liveStores.get(route)
  if (live === undefined) { live = new Set(); liveStores.set(route, live) }
  live.add(held.store)
  return {
    store: held.store,
    release: () => {
      if (--held.refs > 0) return
      stores.delete(id)
      liveStores.get(route)?.delete(held.store)
      if (liveStores.get(route)?.size === 0) liveStores.delete(route)
    },
  }
}

