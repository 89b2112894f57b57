import type { ExchangeSummary, PluginContext, PluginHooks, PurgeSelector, RequestContext, ResponseContext, LocalResponse } from './plugin.ts'
import { pluginsByName } from '../plugins/index.ts'
import type { RouteConfig } from './config/schema.ts'

type OnRequest = NonNullable<PluginHooks['onRequest']>
type OnResponse = NonNullable<PluginHooks['onResponse']>
type OnLog = NonNullable<PluginHooks['onLog']>

/**
 * A route's plugin chain flattened into plain arrays once per snapshot (as
 * fastify does with hooks): the hot path runs a `for` loop and awaits only
 * what really returned a promise. `onResponse` and `onLog` are stored already
 * reversed (envoy#4599: the response path unwinds the request path).
 */
export class Pipeline {
  readonly onRequest: readonly OnRequest[]
  readonly onResponse: readonly OnResponse[]
  readonly onLog: readonly OnLog[]
  readonly #instances: readonly PluginHooks[]
  /** Which plugin each onRequest entry belongs to (for errors and logs). */
  readonly requestNames: readonly string[]

  constructor (instances: ReadonlyArray<{ name: string, hooks: PluginHooks }>) {
    const req: OnRequest[] = []
    const names: string[] = []
    const res: OnResponse[] = []
    const log: OnLog[] = []
    for (const { name, hooks } of instances) {
      if (hooks.onRequest !== undefined) { req.push(hooks.onRequest.bind(hooks)); names.push(name) }
      if (hooks.onResponse !== undefined) res.unshift(hooks.onResponse.bind(hooks))
      if (hooks.onLog !== undefined) log.unshift(hooks.onLog.bind(hooks))
    }
    this.onRequest = req
    this.requestNames = names
    this.onResponse = res
    this.onLog = log
    this.#instances = instances.map((i) => i.hooks)
  }

  get empty (): boolean { return this.onRequest.length === 0 && this.onResponse.length === 0 && this.onLog.length === 0 }

  /**
   * Runs the request phase from hook `from`. Returns a LocalResponse when a
   * plugin answered, undefined to go on upstream, or a promise of either once a
   * hook turned out to be asynchronous.
   */
  runRequest (ctx: RequestContext, from = 0): LocalResponse | undefined | Promise<LocalResponse | undefined> {
    const hooks = this.onRequest
    for (let i = from; i < hooks.length; i++) {
      const r = (hooks[i] as OnRequest)(ctx)
      if (r === undefined) continue
      if (typeof (r as Promise<unknown>).then === 'function') {
        return (r as Promise<void | LocalResponse>).then((v) => v === undefined ? this.runRequest(ctx, i + 1) : v)
      }
      return r as LocalResponse
    }
    return undefined
  }

  /** Runs the response phase; a promise only once a hook returned one. */
  runResponse (ctx: RequestContext, res: ResponseContext, from = 0): void | Promise<void> {
    const hooks = this.onResponse
    for (let i = from; i < hooks.length; i++) {
      const r = (hooks[i] as OnResponse)(ctx, res)
      if (r !== undefined && typeof r.then === 'function') return r.then(() => this.runResponse(ctx, res, i + 1))
    }
  }

  /** Runs onLog hooks; a throwing hook never affects the others. */
  runLog (ctx: RequestContext, summary: ExchangeSummary, onError: (err: unknown) => void): void {
    for (const hook of this.onLog) {
      try { hook(ctx, summary) } catch (err) { onError(err) }
    }
  }

  /** Purges every cache on the route; the number of entries dropped. */
  async purge (selector: PurgeSelector): Promise<number> {
    let n = 0
    for (const h of this.#instances) if (h.purge !== undefined) n += await h.purge(selector)
    return n
  }

  async close (): Promise<void> {
    await Promise.allSettled(this.#instances.map(async (h) => { await h.close?.() }))
  }
}

/** Instantiates a route's plugins (once per snapshot). */
export async function buildPipeline (route: RouteConfig, ctx: Omit<PluginContext, 'routeName'>): Promise<Pipeline> {
  const instances: Array<{ name: string, hooks: PluginHooks }> = []
  try {
    for (const entry of route.plugins) {
      const known = pluginsByName.get(entry.name)
      if (known === undefined) throw new Error(`unknown plugin "${entry.name}"`)
      const def = await known.load()
      const hooks = await def.create(entry.config, { ...ctx, routeName: route.name, log: ctx.log.child({ route: route.name, plugin: entry.name }) })
      instances.push({ name: entry.name, hooks })
    }
  } catch (err) {
    // Close what was opened before the failure: no leaked stores or timers.
    await new Pipeline(instances).close()
    throw err
  }
  return new Pipeline(instances)
}
