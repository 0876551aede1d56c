import type { AnswerSource, InvalidationTarget, InvalidReason } from '../domain/session.js'

/** A structured logger, as the service needs it (pino satisfies it). Object first, message second. */
export interface Log {
  debug(obj: object, msg: string): void
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

export type CacheWriteKind = 'fill' | 'extend' | 'invalidate'
/** written; tombstoned (an invalidation forbade it); skipped (cache unavailable); failed (after every retry). */
export type CacheWriteOutcome = 'written' | 'tombstoned' | 'skipped' | 'failed'
/** hit: a valid answer; negative: a cached not-valid answer; miss: not cached; error: the cache could not be read. */
export type CacheLookupOutcome = 'hit' | 'negative' | 'miss' | 'error'

/**
 * What the service reports as it works. Telemetry implements it (metrics); the service never imports telemetry.
 * Methods are called on the hot path: implementations must be cheap and must not throw.
 */
export interface ServiceObserver {
  validated(source: AnswerSource, result: 'valid' | InvalidReason, seconds: number): void
  /** Once per validation. The hash stays in the process: telemetry exports at most a short prefix of it. */
  cacheLookup(outcome: CacheLookupOutcome, tokenHash: string): void
  /** A not-valid answer was written to the cache (negative caching). */
  negativeCached(): void
  singleFlightJoined(): void
  cacheWrite(kind: CacheWriteKind, outcome: CacheWriteOutcome): void
  invalidated(kind: InvalidationTarget['kind'], entries: number, revoked: number): void
}
