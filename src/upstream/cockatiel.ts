import type * as Cockatiel from 'cockatiel'

/**
 * cockatiel is loaded only when a config uses retries or circuit breakers:
 * every module the serving thread loads stays in the heap each major GC marks.
 * `Snapshot.build` awaits `loadCockatiel()` before it constructs a
 * `RetryPolicy` or a `CircuitBreaker`; their constructors read it from here.
 */
let lib: typeof Cockatiel | undefined

export async function loadCockatiel (): Promise<void> {
  lib ??= await import('cockatiel')
}

export function cockatiel (): typeof Cockatiel {
  if (lib === undefined) throw new Error('cockatiel is not loaded: await loadCockatiel() before building retry policies or circuit breakers')
  return lib
}
