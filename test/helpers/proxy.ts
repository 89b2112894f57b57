import { configSchema, type Config } from '../../src/config/schema.ts'
import { startProxy, type RunningProxy } from '../../src/proxy.ts'
import { createLogger, type Logger } from '../../src/log.ts'
import { createMetrics } from '../../src/metrics.ts'

export interface TestProxy extends RunningProxy {
  readonly url: string
  readonly adminUrl: string
  /** Parses a config document (same defaults as a file) and applies it. */
  reload (doc: Record<string, unknown>): ReturnType<RunningProxy['apply']>
}

/** Logs only when OUTRIDER_TEST_LOG is set, so test output stays readable. */
export function testLogger (): Logger {
  return createLogger({ level: process.env.OUTRIDER_TEST_LOG === undefined ? 'error' : 'debug', write: process.env.OUTRIDER_TEST_LOG === undefined ? () => {} : undefined })
}

/** Turns a partial document into a Config on loopback ports chosen by the OS. */
export function testConfig (doc: Record<string, unknown>): Config {
  return configSchema.parse({
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    ...doc,
  })
}

/**
 * A real Outrider on 127.0.0.1:0 with its admin listener. Pass `t` to have it
 * shut down in the test's teardown.
 */
export async function startTestProxy (doc: Record<string, unknown>, t?: { teardown (fn: () => unknown): void }): Promise<TestProxy> {
  const proxy = await startProxy({ config: testConfig(doc), source: 'test', log: testLogger(), metrics: createMetrics({ defaultMetrics: false }) })
  const out: TestProxy = {
    get snapshot () { return proxy.snapshot },
    url: `http://127.0.0.1:${proxy.port}`,
    adminUrl: `http://127.0.0.1:${proxy.adminPort ?? 0}`,
    port: proxy.port,
    adminPort: proxy.adminPort,
    metrics: proxy.metrics,
    log: proxy.log,
    apply: proxy.apply,
    shutdown: proxy.shutdown,
    reload: (d: Record<string, unknown>) => proxy.apply(testConfig(d)),
  }
  t?.teardown(() => proxy.shutdown(1000))
  return out
}

/** A one-cluster, one-route document pointing at `upstreamUrl`. */
export function simpleDoc (upstreamUrl: string, route: Record<string, unknown> = {}, cluster: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    clusters: [{ name: 'up', endpoints: [{ url: upstreamUrl }], ...cluster }],
    routes: [{ name: 'all', match: { pathPrefix: '/' }, cluster: 'up', ...route }],
  }
}
