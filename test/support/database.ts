import { randomBytes, randomUUID } from 'node:crypto'
import pg from 'pg'
import { hashToken } from '../../src/domain/token.js'
import { migrate } from '../../src/store/migrate.js'
import { applyRuntimeRole } from '../../src/store/runtime-role.js'
import { TEST_DATABASE_URL } from './env.js'
import { createStudioSchema } from './studio-schema.js'

export interface TestDatabaseOptions {
  /**
   * plain: the tables as this project's migration creates them on an empty database. studio: the Studio's own schema
   * (studio-schema.ts: its trigger, its row-level security, its constraints), with the migration applied on top.
   */
  shape?: 'plain' | 'studio'
  /**
   * Who the service connects as. owner: the test's superuser, as before. runtime: a LOGIN role of its own, granted by
   * ops/postgres/runtime-role.sql (as production should run). bare: a role with only SELECT on the two tables, as a
   * misprovisioned deployment would be.
   */
  role?: 'owner' | 'runtime' | 'bare'
}

/**
 * A schema of its own for one test file, migrated, dropped at the end: runs never see each other's rows. `url` is the
 * owner's connection (what the Studio's own writes use); `serviceUrl` is the one the service runs with.
 */
export async function createTestDatabase(url = TEST_DATABASE_URL, options: TestDatabaseOptions = {}) {
  const shape = options.shape ?? 'plain'
  const roleKind = options.role ?? 'owner'
  const tag = randomBytes(5).toString('hex')
  const schema = `ssc_t_${tag}`
  const pool = new pg.Pool({ connectionString: url, max: 4 })
  const s = `"${schema}"`
  const client = await pool.connect()
  let role: string | undefined
  try {
    if (shape === 'studio') await createStudioSchema(client, schema)
    await migrate(client, schema)
    if (roleKind !== 'owner') {
      role = `ssc_t_${roleKind}_${tag}`
      await client.query(`CREATE ROLE "${role}" LOGIN`)
      if (roleKind === 'runtime') await applyRuntimeRole(client, role, schema)
      else await client.query(`GRANT USAGE ON SCHEMA ${s} TO "${role}"; GRANT SELECT ON ${s}.users, ${s}.user_sessions TO "${role}"`)
    }
  } finally {
    client.release()
  }
  const serviceUrl = (() => {
    if (!role) return url
    const u = new URL(url)
    u.username = role
    u.password = ''
    return u.toString()
  })()

  async function insertUser(fields: Partial<{ email: string; firstName: string; lastName: string; username: string; bannedUntil: Date; deletedAt: Date }> = {}) {
    const { rows } = await pool.query<{ id: string }>(
      `INSERT INTO ${s}.users (email, first_name, last_name, username, banned_until, deleted_at)
       VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
      [
        fields.email ?? `user-${randomUUID()}@example.test`,
        fields.firstName ?? 'Ada',
        fields.lastName ?? 'Lovelace',
        // The Studio's usernames are unique; the plain schema's are not, and tests there expect 'ada'.
        fields.username ?? (shape === 'studio' ? `ada_${randomBytes(6).toString('hex')}` : 'ada'),
        fields.bannedUntil ?? null,
        fields.deletedAt ?? null,
      ],
    )
    return rows[0]!.id
  }

  /**
   * Inserts a session the way the Studio signs in (only the token's hash is stored) and returns the raw token too.
   * On the Studio's schema a session must expire after it was created, so an already-expired one (which the Studio
   * never inserts: its sessions expire by time passing) is given a creation time before its expiry.
   */
  async function insertSession(options: { userId?: string; expiresInMs?: number; revoked?: boolean; token?: string } = {}) {
    const userId = options.userId ?? (await insertUser())
    const token = options.token ?? `tok_${randomBytes(24).toString('base64url')}`
    const expiresAt = new Date(Date.now() + (options.expiresInMs ?? 3_600_000))
    const createdAt = expiresAt.getTime() <= Date.now() + 1000 ? new Date(expiresAt.getTime() - 86_400_000) : new Date()
    const { rows } = await pool.query<{ id: string }>(
      `INSERT INTO ${s}.user_sessions (user_id, token, ip_address, user_agent, expires_at, last_activity_at, created_at, revoked_at)
       VALUES ($1, $2, $3, $4, $5, now(), $6, $7) RETURNING id`,
      [userId, hashToken(token), '127.0.0.1', 'vitest', expiresAt, createdAt, options.revoked ? new Date() : null],
    )
    return { token, sessionId: rows[0]!.id, userId, expiresAt }
  }

  async function sessionRow(sessionId: string) {
    const { rows } = await pool.query<{ revoked_at: Date | null; token: string; last_activity_at: Date | null }>(
      `SELECT revoked_at, token, last_activity_at FROM ${s}.user_sessions WHERE id = $1`,
      [sessionId],
    )
    return rows[0] ?? null
  }

  return {
    schema,
    shape,
    url,
    /** The connection string the service under test uses (its role). */
    serviceUrl,
    /** The service's own role, when it is not the owner. */
    role,
    pool,
    insertUser,
    insertSession,
    sessionRow,
    query: (text: string, values: unknown[] = []) => pool.query(text.replaceAll('$schema', s), values),
    async drop() {
      await pool.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`)
      if (role) await pool.query(`DROP OWNED BY "${role}"; DROP ROLE IF EXISTS "${role}"`)
      await pool.end()
    },
  }
}

export type TestDatabase = Awaited<ReturnType<typeof createTestDatabase>>
