import type { OutboxPosition, RevocationEvent } from './revocation.js'
import type { InvalidationTarget, SessionAnswer, SessionRecord } from './session.js'

/** The truth: the Studio's platform tables. Every method throws (never answers) when the store is unreachable. */
export interface SessionStore {
  findByTokenHash(tokenHash: string): Promise<SessionRecord | null>
  /**
   * Sets revoked_at on the targeted sessions that are not revoked yet. Returns how many it changed, and the token
   * hashes of every targeted session that is not expired (revoked now or before), for the cache to drop.
   */
  revoke(target: InvalidationTarget): Promise<{ revoked: number; tokenHashes: string[] }>
  /** The token hashes of the targeted sessions that are not expired: what the cache may hold for them. */
  tokenHashes(target: InvalidationTarget): Promise<string[]>
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
  /**
   * Stores an answer for ttlMs with its indexes, unless a tombstone of its token, session or user forbids it: then
   * nothing of it is left to read.
   */
  fill(tokenHash: string, answer: SessionAnswer, ttlMs: number): Promise<FillOutcome>
  /** Extends a cached valid entry (and its indexes) to ttlMs from now. */
  extend(tokenHash: string, answer: SessionAnswer & { valid: true }, ttlMs: number): Promise<void>
  /**
   * Removes every cached entry of the targets (found by token hash, or through the cache's own session and user
   * indexes), leaves tombstones and announces each target to every instance, in one atomic step. Returns how many
   * entries it removed.
   */
  invalidate(targets: InvalidationTarget[]): Promise<number>
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
  /** What is left of an answer's life here, in ms (0 when there is none). */
  remainingMs(tokenHash: string): number
  /** Stores the answer unless an invalidation was seen since `generation` was read, or the tier is suspended. */
  set(tokenHash: string, answer: SessionAnswer, ttlMs: number, generation: number): void
  evict(targets: InvalidationTarget[]): void
  /** Drops everything (the outbox had a gap: any entry may be stale). */
  evictAll(): void
}

/** The revocation outbox that Postgres triggers write (store/migrations/002-revocation-outbox.ts). Reads throw when
 * Postgres is unreachable. */
export interface RevocationOutbox {
  /** Rows with an id above `afterId`, oldest first, at most `limit`. */
  readAfter(afterId: number, limit: number): Promise<RevocationEvent[]>
  readById(id: number): Promise<RevocationEvent | null>
  position(): Promise<OutboxPosition>
  /** The highest id written before `atMs` (0 when none): where a starting instance begins to replay. */
  lastIdBefore(atMs: number): Promise<number>
  /** Deletes rows written before `beforeMs`, at most `limit`, recording the highest id pruned; returns how many. */
  prune(beforeMs: number, limit: number): Promise<number>
}

/** Where a session's last use is recorded (the Studio's user_sessions.last_activity_at). */
export interface ActivityStore {
  /**
   * Records each session's last use (session id → epoch ms), skipping sessions whose stored activity is already within
   * `minIntervalSeconds` of it. Returns how many rows it changed. Throws when the store cannot be written.
   */
  recordActivity(uses: ReadonlyMap<string, number>, minIntervalSeconds: number): Promise<number>
}
