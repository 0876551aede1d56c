import type { FillOutcome, SessionCache } from '../../src/domain/ports.js'
import type { InvalidationTarget, SessionAnswer } from '../../src/domain/session.js'

/**
 * In-memory SessionCache with the same semantics as the Redis adapter (TTLs, token tombstones, nothing kept by session
 * or user id), for unit tests. The contract suite runs against both, so the two cannot drift.
 */
export function createMemorySessionCache(tombstoneTtlMs: number, now: () => number = Date.now): SessionCache & { size(): number } {
  const entries = new Map<string, { answer: SessionAnswer; expiresAt: number }>()
  const tombstones = new Map<string, number>()
  const alive = (expiresAt: number | undefined) => expiresAt !== undefined && expiresAt > now()

  return {
    async get(hash) {
      const e = entries.get(hash)
      return e && alive(e.expiresAt) ? e.answer : null
    },
    async fill(hash, answer, ttlMs): Promise<FillOutcome> {
      if (alive(tombstones.get(hash))) return 'tombstoned'
      entries.set(hash, { answer, expiresAt: now() + ttlMs })
      return 'written'
    },
    async extend(hash, _answer, ttlMs) {
      const e = entries.get(hash)
      if (e && alive(e.expiresAt)) e.expiresAt = now() + ttlMs
    },
    async invalidate(targets: InvalidationTarget[]) {
      let removed = 0
      for (const target of targets) {
        // Session and user targets are announcements only: their tokens come as token targets.
        if (target.kind !== 'token') continue
        const had = entries.get(target.tokenHash)
        entries.delete(target.tokenHash)
        tombstones.set(target.tokenHash, now() + tombstoneTtlMs)
        if (had && alive(had.expiresAt)) removed++
      }
      return removed
    },
    async close() {},
    size: () => [...entries.values()].filter((e) => alive(e.expiresAt)).length,
  }
}
