import type { LocalCache, SessionCache, SessionStore } from '../domain/ports.js'
import type { InvalidationTarget } from '../domain/session.js'
import { Errors } from '../errors.js'
import type { BackgroundWrites } from './background-writes.js'
import type { Log, ServiceObserver } from './observer.js'

export interface InvalidatorDeps {
  cache: SessionCache
  local?: LocalCache
  store: SessionStore
  writes: BackgroundWrites
  observer: ServiceObserver
  log: Log
  /** Told of each invalidation before it is acknowledged (the validator stops sharing reads that began earlier). */
  onInvalidation?: () => void
  /** Attempts after the first for an invalidation the cache refused; spread to outlast a breaker's reset timeout. */
  retryAttempts: number
}

export interface InvalidationResult {
  invalidated: number
  revoked: number
}

/**
 * Postgres first (the truth), then the cache. When the cache cannot be reached the caller gets a 503 to retry, and the
 * invalidation is retried in the background too, so an entry cannot outlive an outage and come back valid.
 */
export function createInvalidator(deps: InvalidatorDeps) {
  const { cache, store, writes, observer } = deps

  async function invalidate(target: InvalidationTarget, revoke: boolean): Promise<InvalidationResult> {
    const revoked = revoke ? await store.revoke(target) : 0
    // This instance's L1 first, synchronously; other instances hear it from the script's publication.
    deps.local?.evict(target)
    deps.onInvalidation?.()
    let invalidated: number
    try {
      invalidated = await cache.invalidate(target)
    } catch (err) {
      deps.log.warn({ err, kind: target.kind }, 'cache invalidation failed; retrying in the background')
      writes.run(
        'invalidate',
        async () => {
          await cache.invalidate(target)
          return 'written'
        },
        deps.retryAttempts,
      )
      throw new Errors.CacheUnavailable({ cause: err })
    }
    observer.invalidated(target.kind, invalidated, revoked)
    return { invalidated, revoked }
  }

  return { invalidate }
}

export type Invalidator = ReturnType<typeof createInvalidator>
