import { randomBytes, randomUUID } from 'node:crypto'
import pg from 'pg'
import { hashToken } from '../../src/domain/token.js'
import { migrate } from '../../src/store/migrate.js'
import { TEST_DATABASE_URL } from './env.js'

/**
 * A schema of its own for one test file, migrated, dropped at the end: runs never see each other's rows.
 */
export async function createTestDatabase(url = TEST_DATABASE_URL) {
  const schema = `ssc_t_${randomBytes(5).toString('hex')}`
  const pool = new pg.Pool({ connectionString: url, max: 4 })
  const client = await pool.connect()
  try {
    await migrate(client, schema)
  } finally {
    client.release()
  }
  const s = `"${schema}"`

  async function insertUser(fields: Partial<{ email: string; firstName: string; lastName: string; username: string; bannedUntil: Date; deletedAt: Date }> = {}) {
    const { rows } = await pool.query<{ id: string }>(
      `INSERT INTO ${s}.users (email, first_name, last_name, username, banned_until, deleted_at)
       VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
      [
        fields.email ?? `user-${randomUUID()}@example.test`,
        fields.firstName ?? 'Ada',
        fields.lastName ?? 'Lovelace',
        fields.username ?? 'ada',
        fields.bannedUntil ?? null,
        fields.deletedAt ?? null,
      ],
    )
    return rows[0]!.id
  }

  /** Inserts a session the way the Studio does (only the token's hash is stored) and returns the raw token too. */
  async function insertSession(options: { userId?: string; expiresInMs?: number; revoked?: boolean; token?: string } = {}) {
    const userId = options.userId ?? (await insertUser())
    const token = options.token ?? `tok_${randomBytes(24).toString('base64url')}`
    const expiresAt = new Date(Date.now() + (options.expiresInMs ?? 3_600_000))
    const { rows } = await pool.query<{ id: string }>(
      `INSERT INTO ${s}.user_sessions (user_id, token, expires_at, revoked_at) VALUES ($1, $2, $3, $4) RETURNING id`,
      [userId, hashToken(token), expiresAt, options.revoked ? new Date() : null],
    )
    return { token, sessionId: rows[0]!.id, userId, expiresAt }
  }

  async function sessionRow(sessionId: string) {
    const { rows } = await pool.query<{ revoked_at: Date | null; token: string }>(
      `SELECT revoked_at, token FROM ${s}.user_sessions WHERE id = $1`,
      [sessionId],
    )
    return rows[0] ?? null
  }

  return {
    schema,
    url,
    pool,
    insertUser,
    insertSession,
    sessionRow,
    query: (text: string, values: unknown[] = []) => pool.query(text.replaceAll('$schema', s), values),
    async drop() {
      await pool.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`)
      await pool.end()
    },
  }
}

export type TestDatabase = Awaited<ReturnType<typeof createTestDatabase>>
