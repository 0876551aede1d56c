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
 * The one invalidation path, for /invalidate and for the revocation outbox alike. Postgres is the source of the token
 * hashes of every invalidation by session or user (the revoke's or lookup's rows, an outbox row's); the cache's own
 * session and user indexes (cache/keys.ts) are what finds an entry when Postgres cannot be reached.
 *
 * /invalidate: the cache first (a token's entry, or what the target's index holds), so that a revoke that fails in
 * Postgres still leaves nothing cached; then Postgres (the revoke, or the lookup of the target's token hashes); then
 * the hashes Postgres returned, so an index key evicted under memory pressure cannot hide an entry. A cache that
 * cannot be reached gets the invalidation retried in the background and the caller a 503 to retry; a Postgres that
 * cannot be reached, a 503. L1 and the single-flight epoch are told before and after: a read that began before the
 * revoke committed is neither joined nor kept by a request that starts after the answer.
 */
export function createInvalidator(deps: InvalidatorDeps) {
  const { cache, store, writes, observer } = deps

  function forget(targets: InvalidationTarget[]): void {
    deps.local?.evict(targets)
    deps.onInvalidation?.()
  }

  async function drop(targets: InvalidationTarget[]): Promise<{ removed: number; failed?: unknown }> {
    try {
      return { removed: await cache.invalidate(targets) }
    } catch (err) {
      deps.log.warn({ err, targets: targets.length }, 'cache invalidation failed; retrying in the background')
      writes.run(
        'invalidate',
        async () => {
          await cache.invalidate(targets)
          return 'written'
        },
        deps.retryAttempts,
      )
      return { removed: 0, failed: err }
    }
  }

  async function invalidate(target: InvalidationTarget, revoke: boolean): Promise<InvalidationResult> {
    forget([target])
    const first = await drop([target])
    const { revoked, tokenHashes } = revoke
      ? await store.revoke(target)
      : { revoked: 0, tokenHashes: target.kind === 'token' ? [] : await store.tokenHashes(target) }
    const known: InvalidationTarget[] = tokenHashes
      .filter((hash) => !(target.kind === 'token' && hash === target.tokenHash))
      .map((tokenHash) => ({ kind: 'token', tokenHash }))
    const second = known.length > 0 ? await drop(known) : { removed: 0 }
    forget([target, ...known])
    const failed = first.failed ?? second.failed
    if (failed !== undefined) throw new Errors.CacheUnavailable({ cause: failed })
    const invalidated = first.removed + second.removed
    observer.invalidated(target.kind, invalidated, revoked)
    return { invalidated, revoked }
  }

  return {
    invalidate,
    /**
     * An outbox row, applied here as on every instance. Its session targets come with their token hashes (the trigger
     * writes OLD.token with each id, in the transaction that ended it); a user's are looked up again now, after the
     * commit: a session inserted while a ban committed is missing from the ban's row, yet a fill may have read it
     * before the ban. Throws when the cache or Postgres cannot be reached (the feed retries).
     */
    async applyRevocation(targets: InvalidationTarget[]): Promise<void> {
      forget(targets)
      const named = new Set<string>()
      for (const target of targets) if (target.kind === 'token') named.add(target.tokenHash)
      const found: InvalidationTarget[] = []
      for (const target of targets) {
        if (target.kind !== 'user') continue
        for (const tokenHash of await store.tokenHashes(target)) {
          if (named.has(tokenHash)) continue
          named.add(tokenHash)
          found.push({ kind: 'token', tokenHash })
        }
      }
      await cache.invalidate([...targets, ...found])
      forget([...targets, ...found])
    },
    /** After an outbox gap: nothing this instance holds from before it can be trusted. */
    forgetLocal(): void {
      deps.local?.evictAll()
      deps.onInvalidation?.()
    },
  }
}

export type Invalidator = ReturnType<typeof createInvalidator>
