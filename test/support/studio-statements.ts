import { randomBytes } from 'node:crypto'
import { hashToken } from '../../src/domain/token.js'
import type { TestDatabase } from './database.js'

/**
 * The statements the Studio itself runs on user_sessions and users (its apps/studio/pages/api/auth/ and
 * lib/api/auth/), as its own connection runs them: the owner's, outside this service. A token is 64 random hex
 * characters; the table stores its SHA-256 hex.
 */
export function studioStatements(db: TestDatabase) {
  const newToken = () => randomBytes(32).toString('hex')
  return {
    async signin(userId: string, expiresInMs = 7 * 86_400_000) {
      const token = newToken()
      const { rows } = await db.query(
        `INSERT INTO $schema.user_sessions (user_id, token, ip_address, user_agent, expires_at, last_activity_at)
         VALUES ($1, $2, $3, $4, $5, NOW()) RETURNING id`,
        [userId, hashToken(token), '203.0.113.7', 'Mozilla/5.0 (vitest)', new Date(Date.now() + expiresInMs)],
      )
      return { token, sessionId: (rows[0] as { id: string }).id, userId }
    },
    /** Rotates the token (and extends the session): the old token must stop working. Returns the new raw token. */
    async refresh(sessionId: string, expiresInMs = 7 * 86_400_000) {
      const token = newToken()
      await db.query('UPDATE $schema.user_sessions SET token = $1, expires_at = $2, last_activity_at = NOW() WHERE id = $3', [
        hashToken(token),
        new Date(Date.now() + expiresInMs),
        sessionId,
      ])
      return token
    },
    signout: (rawToken: string) => db.query('DELETE FROM $schema.user_sessions WHERE token = $1', [hashToken(rawToken)]),
    deleteById: (sessionId: string) => db.query('DELETE FROM $schema.user_sessions WHERE id = $1', [sessionId]),
    revokeOthers: (userId: string, keepSessionId: string) =>
      db.query('DELETE FROM $schema.user_sessions WHERE user_id = $1 AND id != $2', [userId, keepSessionId]),
    revokeAll: (userId: string) => db.query('DELETE FROM $schema.user_sessions WHERE user_id = $1', [userId]),
    cleanupExpired: () => db.query('DELETE FROM $schema.user_sessions WHERE expires_at < NOW()'),
    cleanupInactive: () => db.query("DELETE FROM $schema.user_sessions WHERE last_activity_at < NOW() - INTERVAL '30 days'"),
    ban: (userId: string, until: Date) => db.query('UPDATE $schema.users SET banned_until = $1 WHERE id = $2', [until, userId]),
    softDelete: (userId: string) => db.query('UPDATE $schema.users SET deleted_at = NOW() WHERE id = $1', [userId]),
  }
}
