import { LRUCache } from 'lru-cache'
import type { LocalCache } from '../domain/ports.js'
import type { InvalidationTarget, SessionAnswer } from '../domain/session.js'

/**
 * The L1 tier: a bounded LRU with per-entry TTL (lru-cache). It starts suspended: it holds nothing and answers nothing
 * until the invalidation feed says it is subscribed, and it is emptied and suspended again whenever the feed is lost,
 * because an L1 that might have missed an invalidation must not answer.
 */
export function createLocalSessionCache(maxEntries: number) {
  const entries = new LRUCache<string, SessionAnswer>({ max: maxEntries, ttlAutopurge: false })
  let generation = 0
  let active = false

  function evictMatching(targets: InvalidationTarget[]): void {
    const sessions = new Set<string>()
    const users = new Set<string>()
    for (const target of targets) {
      if (target.kind === 'token') entries.delete(target.tokenHash)
      else if (target.kind === 'session') sessions.add(target.sessionId)
      else users.add(target.userId)
    }
    if (sessions.size === 0 && users.size === 0) return
    // Invalidations are rare and the tier is small: one scan is cheaper than keeping reverse indexes on the hot path.
    for (const [hash, answer] of entries.entries()) {
      if (!answer.valid) continue
      const session = answer.entry.session
      if (sessions.has(session.id) || users.has(session.userId)) entries.delete(hash)
    }
  }

  const cache: LocalCache & { suspend(): void; resume(): void; readonly active: boolean; readonly size: number } = {
    generation: () => generation,
    get(tokenHash) {
      return active ? entries.get(tokenHash) : undefined
    },
    remainingMs(tokenHash) {
      return entries.getRemainingTTL(tokenHash)
    },
    set(tokenHash, answer, ttlMs, seenGeneration) {
      if (!active || seenGeneration !== generation || ttlMs <= 0) return
      entries.set(tokenHash, answer, { ttl: Math.floor(ttlMs) })
    },
    evict(targets) {
      generation++
      evictMatching(targets)
    },
    evictAll() {
      generation++
      entries.clear()
    },
    suspend() {
      generation++
      active = false
      entries.clear()
    },
    resume() {
      generation++
      active = true
    },
    get active() {
      return active
    },
    get size() {
      return entries.size
    },
  }
  return cache
}

export type LocalSessionCache = ReturnType<typeof createLocalSessionCache>
