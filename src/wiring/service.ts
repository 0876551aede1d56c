import { startInvalidationFeed } from '../cache/invalidation-feed.js'
import type { LocalSessionCache } from '../cache/local-session-cache.js'
import type { Config } from '../config.js'
import type { SessionCache, SessionStore } from '../domain/ports.js'
import type { RedisClient } from '../redis/client.js'
import { createBackgroundWrites } from '../service/background-writes.js'
import { createInvalidator } from '../service/invalidator.js'
import type { Log } from '../service/observer.js'
import { createValidator } from '../service/validator.js'
import type { Metrics } from '../telemetry/metrics.js'
import type { Postgres } from './postgres.js'

export interface ServiceWiring {
  config: Config
  log: Log
  metrics: Metrics
  cache: SessionCache
  /** The L1 tier, when it is turned on. */
  local: LocalSessionCache | undefined
  breaker: { readonly opened: boolean }
  /** False while Redis is known to be behind the outbox (the revocation feed). */
  cacheTrusted: () => boolean
  store: SessionStore
  postgres: Postgres
  /** The subscriber and channel that keep every instance's L1 coherent. */
  subscriber: RedisClient
  invalidationChannel: string
  /** The span wrappers, when tracing was bootstrapped. */
  spans: typeof import('../telemetry/spans.js') | undefined
  now?: () => number
}

/**
 * The service over the resources: background writes, the validator (and the feed that keeps its L1 coherent), the
 * invalidator, each traced when tracing is on. Nothing here is opened: the composition root's lifecycle stops the
 * validator and waits for the writes.
 */
export function wireService(deps: ServiceWiring) {
  const { config, log, metrics, cache, local, breaker, store, postgres, subscriber, spans } = deps
  const tombstoneTtlMs = config.cache.tombstoneTtlSeconds * 1000
  const writes = createBackgroundWrites(
    { retries: config.cache.writeRetries, baseDelayMs: config.cache.writeRetryBaseMs },
    metrics.observer,
    log,
  )
  const validator = createValidator({
    cache,
    local,
    cacheAvailable: () => !breaker.opened,
    cacheTrusted: deps.cacheTrusted,
    store,
    storeRefused: postgres.access.refused,
    sessionUsed: postgres.activity?.record,
    writes,
    observer: metrics.observer,
    log,
    now: deps.now,
    options: {
      ttlMs: config.cache.ttlSeconds * 1000,
      negativeTtlMs: config.cache.negativeTtlSeconds * 1000,
      negativeMinMisses: config.cache.negativeMinMisses,
      // Half the tombstone's life: a fill older than that could outlive a tombstone written after its read.
      fillDeadlineMs: tombstoneTtlMs / 2,
      slidingTtl: config.cache.slidingTtl,
      slidingMinIntervalMs: config.cache.slidingMinIntervalSeconds * 1000,
      slidingIdleMs: config.cache.slidingIdleSeconds * 1000,
      localTtlMs: config.cache.localTtlMs,
      localRefreshAheadMs: config.cache.localRefreshAheadMs,
    },
  })
  startInvalidationFeed(subscriber, deps.invalidationChannel, local, log, validator.noteInvalidation)
  const invalidator = createInvalidator({
    cache,
    local,
    onInvalidation: validator.noteInvalidation,
    store,
    writes,
    observer: metrics.observer,
    log,
    // Backoff from 20 ms doubling: eight retries span the breaker's default reset timeout.
    retryAttempts: 10,
  })
  // With tracing on, each validation and invalidation is a span (the wrappers add nothing when it is off).
  const tracedValidator = spans ? spans.tracedValidator(validator, () => breaker.opened) : validator
  const tracedInvalidator = spans ? spans.tracedInvalidator(invalidator) : invalidator
  return { writes, validator, invalidator, tracedValidator, tracedInvalidator }
}
