import type { FillOutcome, SessionCache } from '../../src/domain/ports.js'
import type { InvalidationTarget, SessionAnswer } from '../../src/domain/session.js'

/**
 * In-memory SessionCache with the same semantics as the Redis adapter (TTLs, indexes, tombstones), for unit tests.
 * The contract suite runs against both, so the two cannot drift.
 */
export function createMemorySessionCache(tombstoneTtlMs: number, now: () => number = Date.now): SessionCache & { size(): number } {
  const entries = new Map<string, { answer: SessionAnswer; expiresAt: number }>()
  const tombstones = new Map<string, number>()
  const alive = (expiresAt: number | undefined) => expiresAt !== undefined && expiresAt > now()
  const tomb = (key: string) => tombstones.set(key, now() + tombstoneTtlMs)

  function remove(hash: string): number {
    const had = entries.get(hash)
    entries.delete(hash)
    tomb(`tok:${hash}`)
    return had && alive(had.expiresAt) ? 1 : 0
  }

  return {
    async get(hash) {
      const e = entries.get(hash)
      return e && alive(e.expiresAt) ? e.answer : null
    },
    async fill(hash, answer, ttlMs): Promise<FillOutcome> {
      const guards = [`tok:${hash}`]
      if (answer.valid) guards.push(`sid:${answer.entry.session.id}`, `uid:${answer.entry.session.userId}`)
      if (guards.some((g) => alive(tombstones.get(g)))) return 'tombstoned'
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
        for (const [hash, e] of entries) {
          const match =
            target.kind === 'token'
              ? hash === target.tokenHash
              : e.answer.valid &&
                (target.kind === 'session'
                  ? e.answer.entry.session.id === target.sessionId
                  : e.answer.entry.session.userId === target.userId)
          if (match) removed += remove(hash)
        }
        if (target.kind === 'token') tomb(`tok:${target.tokenHash}`)
        if (target.kind === 'session') tomb(`sid:${target.sessionId}`)
        if (target.kind === 'user') tomb(`uid:${target.userId}`)
      }
      return removed
    },
    async close() {},
    size: () => [...entries.values()].filter((e) => alive(e.expiresAt)).length,
  }
}
