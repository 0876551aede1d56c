import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SessionStore } from '../../src/domain/ports.js'
import { hashToken } from '../../src/domain/token.js'

export interface SeedSession {
  tokenHash: string
  sessionId: string
  userId: string
  expiresAt: Date
  revoked?: boolean
  user?: { bannedUntil?: Date; deletedAt?: Date; email?: string; firstName?: string | null; lastName?: string | null; username?: string | null }
}

export interface StoreUnderTest {
  store: SessionStore
  /** Adds a user (if new) and a session; ids are chosen by the contract so every adapter can be compared. */
  seed(session: SeedSession): Promise<void>
  close(): Promise<void>
}

function session(overrides: Partial<SeedSession> = {}): SeedSession {
  return {
    tokenHash: hashToken(randomUUID()),
    sessionId: randomUUID(),
    userId: randomUUID(),
    expiresAt: new Date(Date.now() + 3_600_000),
    ...overrides,
  }
}

/** What every SessionStore must do: answer a token hash with the session, its user and all a verdict needs. */
export function sessionStoreContract(name: string, make: () => Promise<StoreUnderTest>) {
  describe(`SessionStore contract: ${name}`, () => {
    let subject: StoreUnderTest
    beforeAll(async () => {
      subject = await make()
    })
    afterAll(async () => {
      await subject.close()
    })

    it('an unknown token hash finds nothing', async () => {
      expect(await subject.store.findByTokenHash(hashToken(randomUUID()))).toBeNull()
    })

    it('a known token hash finds the session with its user', async () => {
      const s = session({ user: { email: `${randomUUID()}@example.test`, firstName: 'Ada', lastName: 'Lovelace', username: 'ada' } })
      await subject.seed(s)
      const record = await subject.store.findByTokenHash(s.tokenHash)
      expect(record).toMatchObject({
        session: { id: s.sessionId, userId: s.userId, expiresAt: s.expiresAt.toISOString() },
        user: { id: s.userId, email: s.user!.email, firstName: 'Ada', lastName: 'Lovelace', username: 'ada' },
        revokedAt: null,
        userBannedUntil: null,
        userDeletedAt: null,
      })
      expect(Date.parse(record!.session.createdAt)).not.toBeNaN()
    })

    it('reports revocation, bans and deletion as they are stored', async () => {
      const banned = new Date(Date.now() + 60_000)
      const deleted = new Date(Date.now() - 60_000)
      const s = session({ revoked: true, user: { bannedUntil: banned, deletedAt: deleted } })
      await subject.seed(s)
      const record = await subject.store.findByTokenHash(s.tokenHash)
      expect(record?.revokedAt).toBeInstanceOf(Date)
      expect(record?.userBannedUntil?.getTime()).toBe(banned.getTime())
      expect(record?.userDeletedAt?.getTime()).toBe(deleted.getTime())
    })

    it('revokes by token, by session id and by user id, counting only sessions not revoked yet', async () => {
      const byToken = session()
      const bySession = session()
      const userId = randomUUID()
      const [u1, u2] = [session({ userId }), session({ userId })]
      for (const s of [byToken, bySession, u1, u2]) await subject.seed(s)

      expect(await subject.store.revoke({ kind: 'token', tokenHash: byToken.tokenHash })).toEqual({ revoked: 1, tokenHashes: [byToken.tokenHash] })
      // Already revoked: nothing changes, but the hash is still handed back for the cache to drop.
      expect(await subject.store.revoke({ kind: 'token', tokenHash: byToken.tokenHash })).toEqual({ revoked: 0, tokenHashes: [byToken.tokenHash] })
      expect(await subject.store.revoke({ kind: 'session', sessionId: bySession.sessionId })).toEqual({ revoked: 1, tokenHashes: [bySession.tokenHash] })
      const byUser = await subject.store.revoke({ kind: 'user', userId })
      expect(byUser.revoked).toBe(2)
      expect(byUser.tokenHashes.sort()).toEqual([u1.tokenHash, u2.tokenHash].sort())
      expect(await subject.store.revoke({ kind: 'user', userId: randomUUID() })).toEqual({ revoked: 0, tokenHashes: [] })
      for (const s of [byToken, bySession, u1, u2]) {
        expect((await subject.store.findByTokenHash(s.tokenHash))?.revokedAt).toBeInstanceOf(Date)
      }
    })

    it("resolves a session's or a user's token hashes, leaving out sessions expired long ago", async () => {
      const userId = randomUUID()
      const [live, other] = [session({ userId }), session({ userId })]
      const stale = session({ userId, expiresAt: new Date(Date.now() - 3_600_000) })
      for (const s of [live, other, stale]) await subject.seed(s)
      expect((await subject.store.tokenHashes({ kind: 'user', userId })).sort()).toEqual([live.tokenHash, other.tokenHash].sort())
      expect(await subject.store.tokenHashes({ kind: 'session', sessionId: live.sessionId })).toEqual([live.tokenHash])
      expect(await subject.store.tokenHashes({ kind: 'session', sessionId: stale.sessionId })).toEqual([])
      expect(await subject.store.tokenHashes({ kind: 'session', sessionId: randomUUID() })).toEqual([])
    })

    it('answers a ping when it is reachable', async () => {
      await expect(subject.store.ping()).resolves.toBeUndefined()
    })
  })
}
