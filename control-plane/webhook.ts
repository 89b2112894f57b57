import type { Logger } from '../src/log.ts'

/** Where and how to POST one alert. */
export interface WebhookTarget {
  url: string
  headers: Readonly<Record<string, string>>
  /** Per attempt. */
  timeoutSeconds: number
  /** Attempts after the first. */
  retries: number
}

export interface WebhookSenderOptions {
  log: Logger
  /** First back-off (ms); doubles per retry, drawn from its upper half. Default 1000. */
  backoffMs?: number
  /** Deliveries in flight at most; more are dropped (counted). Default 64. */
  maxInFlight?: number
}

export interface WebhookStats {
  delivered: number
  /** Gave up after every attempt. */
  failed: number
  retried: number
  /** Not attempted: too many in flight. */
  dropped: number
}

/** The outcome of one delivery, for the caller's own counters. */
export type DeliveryOutcome = 'delivered' | 'failed' | 'dropped'

/**
 * POSTs JSON alerts (rule webhooks) off the caller's path: `send` returns at
 * once, each attempt has its own timeout, a network error, a timeout, a 429
 * or a 5xx is retried with exponential back-off, and other answers are
 * final (a 4xx will not improve). Deliveries are bounded in number and
 * aborted by `close`.
 *
 * @example
 * const webhooks = new WebhookSender({ log })
 * webhooks.send({ url: 'https://hooks.example/x', headers: {}, timeoutSeconds: 5, retries: 2 }, { rule: 'shed' })
 */
export class WebhookSender {
  readonly #log: Logger
  readonly #backoffMs: number
  readonly #maxInFlight: number
  readonly #inFlight = new Set<Promise<unknown>>()
  readonly #abort = new AbortController()
  readonly stats: WebhookStats = { delivered: 0, failed: 0, retried: 0, dropped: 0 }

  constructor (options: WebhookSenderOptions) {
    this.#log = options.log
    this.#backoffMs = options.backoffMs ?? 1000
    this.#maxInFlight = options.maxInFlight ?? 64
  }

  /** Starts a delivery; `done` (if given) hears how it ended. Never throws. */
  send (target: WebhookTarget, body: unknown, done?: (outcome: DeliveryOutcome) => void): void {
    if (this.#inFlight.size >= this.#maxInFlight || this.#abort.signal.aborted) {
      this.stats.dropped++
      this.#log.warn('webhook dropped: too many deliveries in flight', { url: redactUrl(target.url) })
      done?.('dropped')
      return
    }
    const p = this.#deliver(target, JSON.stringify(body)).then((ok) => { done?.(ok ? 'delivered' : 'failed') })
    this.#inFlight.add(p)
    void p.finally(() => { this.#inFlight.delete(p) })
  }

  /** Resolves when every delivery started so far has ended (tests, shutdown). */
  async idle (): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight])
  }

  /** Aborts the deliveries in flight (and their back-off waits). */
  close (): void {
    this.#abort.abort()
  }

  async #deliver (target: WebhookTarget, body: string): Promise<boolean> {
    const url = redactUrl(target.url)
    for (let attempt = 0; ; attempt++) {
      let problem: string
      try {
        const res = await fetch(target.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': 'outrider-cp', ...target.headers },
          body,
          signal: AbortSignal.any([this.#abort.signal, AbortSignal.timeout(target.timeoutSeconds * 1000)]),
          redirect: 'manual',
        })
        await res.body?.cancel().catch(() => {})
        if (res.status >= 200 && res.status < 300) {
          this.stats.delivered++
          return true
        }
        problem = `HTTP ${res.status}`
        if (res.status !== 429 && res.status < 500) return this.#failed(url, problem, attempt + 1)
      } catch (err) {
        problem = (err as Error).name === 'TimeoutError' ? `no answer within ${target.timeoutSeconds}s` : (err as Error).message
      }
      if (attempt >= target.retries || this.#abort.signal.aborted) return this.#failed(url, problem, attempt + 1)
      this.stats.retried++
      const cap = this.#backoffMs * 2 ** attempt
      this.#log.debug('webhook attempt failed; retrying', { url, problem, attempt: attempt + 1 })
      await sleep(cap / 2 + Math.random() * cap / 2, this.#abort.signal)
    }
  }

  #failed (url: string, problem: string, attempts: number): false {
    this.stats.failed++
    this.#log.warn('webhook failed', { url, problem, attempts })
    return false
  }
}

function sleep (ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms)
    function done (): void { clearTimeout(timer); signal.removeEventListener('abort', done); resolve() }
    signal.addEventListener('abort', done, { once: true })
  })
}

/** A URL for logs and the audit log: credentials and query values hidden (tokens often travel there). */
export function redactUrl (url: string): string {
  try {
    const u = new URL(url)
    if (u.username !== '' || u.password !== '') { u.username = 'redacted'; u.password = '' }
    for (const key of [...u.searchParams.keys()]) u.searchParams.set(key, 'redacted')
    return u.toString()
  } catch {
    return '(invalid URL)'
  }
}
