import { randomUUID } from 'node:crypto'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { SessionCache } from '../../src/domain/ports.js'
import type { SessionAnswer } from '../../src/domain/session.js'
import { hashToken } from '../../src/domain/token.js'

export interface CacheUnderTest {
  cache: SessionCache
  close(): Promise<void>
}

export function validAnswer(userId = randomUUID(), sessionId = randomUUID()): SessionAnswer & { valid: true } {
  const expiresAtMs = Date.now() + 3_600_000
  return {
    valid: true,
    entry: {
      session: { id: sessionId, userId, createdAt: new Date().toISOString(), expiresAt: new Date(expiresAtMs).toISOString(), lastActivityAt: null },
      user: { id: userId, email: `${userId}@example.test`, firstName: 'Grace', lastName: null, username: 'grace' },
      expiresAtMs,
      readAtMs: Date.now(),
    },
  }
}

const hash = () => hashToken(randomUUID())

async function eventually(check: () => Promise<boolean>, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 20))
  }
  throw new Error('condition not met in time')
}

/** What every SessionCache must do, whatever it is built on. */
export function sessionCacheContract(name: string, make: (tombstoneTtlMs: number) => Promise<CacheUnderTest>) {
  describe(`SessionCache contract: ${name}`, () => {
    let subject: CacheUnderTest
    let cache: SessionCache
    beforeEach(async () => {
      subject = await make(1000)
      cache = subject.cache
    })
    afterEach(async () => {
      await subject.close()
    })

    it('a token never filled is a miss', async () => {
      expect(await cache.get(hash())).toBeNull()
    })

    it('a filled valid answer comes back whole', async () => {
      const h = hash()
      const answer = validAnswer()
      expect(await cache.fill(h, answer, 60_000)).toBe('written')
      expect(await cache.get(h)).toEqual(answer)
    })

    it('a filled invalid answer comes back with its reason', async () => {
      const h = hash()
      await cache.fill(h, { valid: false, reason: 'revoked' }, 60_000)
      expect(await cache.get(h)).toEqual({ valid: false, reason: 'revoked' })
    })

    it('an entry is gone once its TTL has passed', async () => {
      const h = hash()
      await cache.fill(h, validAnswer(), 80)
      await eventually(async () => (await cache.get(h)) === null)
    })

    it('extending an entry keeps it past its first TTL', async () => {
      const h = hash()
      const answer = validAnswer()
      await cache.fill(h, answer, 300)
      await cache.extend(h, answer, 60_000)
      await new Promise((r) => setTimeout(r, 450))
      expect(await cache.get(h)).toEqual(answer)
    })

    it('invalidating a token removes its entry and refuses a racing fill for it', async () => {
      const h = hash()
      const answer = validAnswer()
      await cache.fill(h, answer, 60_000)
      expect(await cache.invalidate([{ kind: 'token', tokenHash: h }])).toBe(1)
      expect(await cache.get(h)).toBeNull()
      expect(await cache.fill(h, answer, 60_000)).toBe('tombstoned')
      expect(await cache.get(h)).toBeNull()
    })

    it('invalidating a session id removes its entry, and refuses a fill of that session under any token', async () => {
      const h = hash()
      const answer = validAnswer()
      await cache.fill(h, answer, 60_000)
      expect(await cache.invalidate([{ kind: 'session', sessionId: answer.entry.session.id }])).toBe(1)
      expect(await cache.get(h)).toBeNull()
      const later = hash()
      expect(await cache.fill(later, answer, 60_000)).toBe('tombstoned')
      // Refused by the owner's tombstone: nothing of it is left to read, whatever order its writes took.
      expect(await cache.get(later)).toBeNull()
    })

    it("invalidating a user removes all of that user's entries and nobody else's", async () => {
      const userId = randomUUID()
      const [h1, h2, other] = [hash(), hash(), hash()]
      await cache.fill(h1, validAnswer(userId), 60_000)
      await cache.fill(h2, validAnswer(userId), 60_000)
      const stranger = validAnswer()
      await cache.fill(other, stranger, 60_000)
      expect(await cache.invalidate([{ kind: 'user', userId }])).toBe(2)
      expect(await cache.get(h1)).toBeNull()
      expect(await cache.get(h2)).toBeNull()
      expect(await cache.get(other)).toEqual(stranger)
      const later = hash()
      expect(await cache.fill(later, validAnswer(userId), 60_000)).toBe('tombstoned')
      // Refused by the owner's tombstone: nothing of it is left to read, whatever order its writes took.
      expect(await cache.get(later)).toBeNull()
    })

    it('invalidating what is not cached removes nothing and still leaves a tombstone', async () => {
      const answer = validAnswer()
      expect(await cache.invalidate([{ kind: 'session', sessionId: answer.entry.session.id }])).toBe(0)
      const later = hash()
      expect(await cache.fill(later, answer, 60_000)).toBe('tombstoned')
      // Refused by the owner's tombstone: nothing of it is left to read, whatever order its writes took.
      expect(await cache.get(later)).toBeNull()
    })

    it('one call invalidates several targets of different kinds, each with its tombstone', async () => {
      const [a, b] = [validAnswer(), validAnswer()]
      const [ha, hb, hc] = [hash(), hash(), hash()]
      await cache.fill(ha, a, 60_000)
      await cache.fill(hb, b, 60_000)
      await cache.fill(hc, validAnswer(), 60_000)
      const removed = await cache.invalidate([
        { kind: 'token', tokenHash: ha },
        { kind: 'session', sessionId: b.entry.session.id },
      ])
      expect(removed).toBe(2)
      expect(await cache.get(ha)).toBeNull()
      expect(await cache.get(hb)).toBeNull()
      expect(await cache.get(hc)).not.toBeNull()
      const later = hash()
      expect(await cache.fill(later, b, 60_000)).toBe('tombstoned')
      // Refused by the owner's tombstone: nothing of it is left to read, whatever order its writes took.
      expect(await cache.get(later)).toBeNull()
    })

    it('a tombstone expires, after which fills land again', async () => {
      const h = hash()
      await cache.invalidate([{ kind: 'token', tokenHash: h }])
      await eventually(async () => (await cache.fill(h, validAnswer(), 60_000)) === 'written', 4000)
      expect(await cache.get(h)).not.toBeNull()
    })
  })
}
