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

/**
 * What the service reports as it works. Telemetry implements it (metrics); the service never imports telemetry.
 * Methods are called on the hot path: implementations must be cheap and must not throw.
 */
export interface ServiceObserver {
  validated(source: AnswerSource, result: 'valid' | InvalidReason, seconds: number): void
  cacheLookup(outcome: 'hit' | 'miss' | 'error'): void
  singleFlightJoined(): void
  cacheWrite(kind: CacheWriteKind, outcome: CacheWriteOutcome): void
  invalidated(kind: InvalidationTarget['kind'], entries: number, revoked: number): void
}
