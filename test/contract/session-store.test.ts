import pino from 'pino'
import type { SessionRecord } from '../../src/domain/session.js'
import { createPgPool, createPgSessionStore } from '../../src/store/pg-session-store.js'
import { createTestDatabase } from '../support/database.js'
import { createMemorySessionStore } from '../fakes/memory-session-store.js'
import { sessionStoreContract, type SeedSession } from './session-store.contract.js'

sessionStoreContract('Postgres (platform tables)', async () => {
  const db = await createTestDatabase()
  const pool = createPgPool(
    { url: db.url, schema: db.schema, poolMax: 4, connectTimeoutMs: 2000, statementTimeoutMs: 2000, idleTimeoutMs: 10_000 },
    pino({ level: 'silent' }),
  )
  const store = createPgSessionStore(pool, db.schema, () => undefined)
  return {
    store,
    async seed(s: SeedSession) {
      await db.query(
        `INSERT INTO $schema.users (id, email, first_name, last_name, username, banned_until, deleted_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
        [s.userId, s.user?.email ?? `${s.userId}@example.test`, s.user?.firstName ?? null, s.user?.lastName ?? null,
          s.user?.username ?? null, s.user?.bannedUntil ?? null, s.user?.deletedAt ?? null],
      )
      await db.query(
        `INSERT INTO $schema.user_sessions (id, user_id, token, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5)`,
        [s.sessionId, s.userId, s.tokenHash, s.expiresAt, s.revoked ? new Date() : null],
      )
    },
    async close() {
      await pool.end()
      await db.drop()
    },
  }
})

sessionStoreContract('in-memory fake', async () => {
  const fake = createMemorySessionStore()
  return {
    store: fake.store,
    async seed(s: SeedSession) {
      const record: SessionRecord = {
        session: { id: s.sessionId, userId: s.userId, createdAt: new Date().toISOString(), expiresAt: s.expiresAt.toISOString(), lastActivityAt: new Date().toISOString() },
        user: { id: s.userId, email: s.user?.email ?? `${s.userId}@example.test`, firstName: s.user?.firstName ?? null, lastName: s.user?.lastName ?? null, username: s.user?.username ?? null },
        revokedAt: s.revoked ? new Date() : null,
        userBannedUntil: s.user?.bannedUntil ?? null,
        userDeletedAt: s.user?.deletedAt ?? null,
      }
      fake.put(s.tokenHash, record)
    },
    close: async () => undefined,
  }
})
