import type { InvalidationTarget, SessionAnswer, SessionRecord } from './session.js'

/** The truth: the Studio's platform tables. Every method throws (never answers) when the store is unreachable. */
export interface SessionStore {
  findByTokenHash(tokenHash: string): Promise<SessionRecord | null>
  /** Sets revoked_at on the targeted sessions that are not revoked yet; returns how many it changed. */
  revoke(target: InvalidationTarget): Promise<number>
  ping(): Promise<void>
  close(): Promise<void>
}

/** A fill is refused when an invalidation for the same token, session or user landed recently (its tombstone). */
export type FillOutcome = 'written' | 'tombstoned'

/**
 * A cache of answers keyed by token hash. Never the truth: any method may throw when the cache is unreachable, and the
 * caller treats that as "not cached".
 */
export interface SessionCache {
  get(tokenHash: string): Promise<SessionAnswer | null>
  /** Stores an answer for ttlMs, atomically with its indexes, unless a tombstone forbids it. */
  fill(tokenHash: string, answer: SessionAnswer, ttlMs: number): Promise<FillOutcome>
  /** Extends a cached valid entry (and its indexes) to ttlMs from now. */
  extend(tokenHash: string, answer: SessionAnswer & { valid: true }, ttlMs: number): Promise<void>
  /** Removes every cached entry of the target and leaves tombstones; returns how many entries it removed. */
  invalidate(target: InvalidationTarget): Promise<number>
  close(): Promise<void>
}

/**
 * An in-process tier in front of the SessionCache. Synchronous, so a hit costs no promise and no round trip. Kept
 * coherent by an invalidation feed: every invalidation (here or on another instance) evicts, and bumps a generation
 * so that a lookup that started before it cannot put its (possibly stale) answer back.
 */
export interface LocalCache {
  generation(): number
  get(tokenHash: string): SessionAnswer | undefined
  /** Stores the answer unless an invalidation was seen since `generation` was read, or the tier is suspended. */
  set(tokenHash: string, answer: SessionAnswer, ttlMs: number, generation: number): void
  evict(target: InvalidationTarget): void
}
