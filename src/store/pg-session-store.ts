import pg from 'pg'
import type { SessionStore } from '../domain/ports.js'
import type { InvalidationTarget, SessionRecord } from '../domain/session.js'
import type { Log } from '../service/observer.js'
import { timedQuery, type QueryObserver } from './timed-query.js'

export interface PgSslOptions {
  mode: 'disable' | 'require' | 'verify-ca' | 'verify-full'
  ca?: string
  cert?: string
  key?: string
}

export interface PgStoreOptions {
  url: string
  schema: string
  poolMax: number
  connectTimeoutMs: number
  statementTimeoutMs: number
  idleTimeoutMs: number
  /** Explicit TLS settings (DATABASE_SSL_*); they win over any ssl parameter in the URL. */
  ssl?: PgSslOptions
}

const URL_SSL_PARAMS = ['ssl', 'sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'sslpassword', 'uselibpqcompat']

/**
 * The connection string and `ssl` option for pg, libpq's sslmode names mapped onto Node's TLS options. pg lets ssl
 * parameters in the connection string override the `ssl` option, so when the mode is explicit they are removed from
 * the URL. With TLS asked for, a server that cannot do it fails the connection: pg never falls back to plaintext.
 */
export function pgConnectionOptions(url: string, ssl: PgSslOptions | undefined): { connectionString: string; ssl?: pg.ClientConfig['ssl'] } {
  if (!ssl) return { connectionString: url }
  const parsed = new URL(url)
  for (const param of URL_SSL_PARAMS) parsed.searchParams.delete(param)
  const connectionString = parsed.toString()
  const material = { ...(ssl.ca ? { ca: ssl.ca } : {}), ...(ssl.cert ? { cert: ssl.cert, key: ssl.key } : {}) }
  switch (ssl.mode) {
    case 'disable':
      return { connectionString, ssl: false }
    case 'require':
      // Encrypted, but the server is not authenticated (libpq's meaning): documented as not protecting from MITM.
      return { connectionString, ssl: { ...material, rejectUnauthorized: false } }
    case 'verify-ca':
      return { connectionString, ssl: { ...material, rejectUnauthorized: true, checkServerIdentity: () => undefined } }
    case 'verify-full':
      return { connectionString, ssl: { ...material, rejectUnauthorized: true } }
  }
}

/** A session row joined with its user's, as the store's reads select it. */
export interface SessionRow {
  id: string
  user_id: string
  created_at: Date
  expires_at: Date
  last_activity_at: Date | null
  revoked_at: Date | null
  email: string
  first_name: string | null
  last_name: string | null
  username: string | null
  banned_until: Date | null
  deleted_at: Date | null
}

export type { QueryObserver } from './timed-query.js'

/** What the service knows of a session from its row: the answer's fields and every reason it may have ended. */
export function toSessionRecord(row: SessionRow): SessionRecord {
  return {
    session: {
      id: row.id,
      userId: row.user_id,
      createdAt: row.created_at.toISOString(),
      expiresAt: row.expires_at.toISOString(),
      lastActivityAt: row.last_activity_at ? row.last_activity_at.toISOString() : null,
    },
    user: { id: row.user_id, email: row.email, firstName: row.first_name, lastName: row.last_name, username: row.username },
    revokedAt: row.revoked_at,
    userBannedUntil: row.banned_until,
    userDeletedAt: row.deleted_at,
  }
}

/** Creates the pg.Pool the store runs on. Exported so the composition root owns (and closes) it. */
export function createPgPool(options: PgStoreOptions, log: Log): pg.Pool {
  const pool = new pg.Pool({
    ...pgConnectionOptions(options.url, options.ssl),
    max: options.poolMax,
    connectionTimeoutMillis: options.connectTimeoutMs,
    idleTimeoutMillis: options.idleTimeoutMs,
    // statement_timeout bounds the server's work; query_timeout bounds our wait even if the server never answers.
    statement_timeout: options.statementTimeoutMs,
    query_timeout: options.statementTimeoutMs + 500,
    application_name: 'studio-session-cache',
    keepAlive: true,
  })
  // An idle client that loses its connection emits here; without a listener the process would crash.
  pool.on('error', (err) => log.warn({ err: { message: err.message } }, 'postgres idle client error'))
  return pool
}

const TARGET_WHERE = { token: 'token = $1', session: 'id = $1', user: 'user_id = $1' } as const

/**
 * The store's statements, by name. The start-up access check (access-check.ts) runs these same texts in a rolled-back
 * transaction, so what it proves is what the service runs.
 */
export function sessionSql(schema: string) {
  const s = `"${schema}"`
  return {
    find: `
    SELECT s.id, s.user_id, s.created_at, s.expires_at, s.last_activity_at, s.revoked_at,
           u.email, u.first_name, u.last_name, u.username, u.banned_until, u.deleted_at
      FROM ${s}.user_sessions s
      JOIN ${s}.users u ON u.id = s.user_id
     WHERE s.token = $1`,
    // One statement: revokes what is live and returns the hash of every session the target still has unexpired
    // (revoked now or earlier), so the cache can drop entries its own index may have lost.
    revoke: (kind: InvalidationTarget['kind']) => `WITH targeted AS (
           SELECT id, token, revoked_at IS NULL AS live FROM ${s}.user_sessions
            WHERE ${TARGET_WHERE[kind]} AND expires_at > now() - interval '1 minute'
         ), changed AS (
           UPDATE ${s}.user_sessions u SET revoked_at = now() FROM targeted t
            WHERE u.id = t.id AND t.live RETURNING u.id
         )
         SELECT t.token, (c.id IS NOT NULL) AS changed FROM targeted t LEFT JOIN changed c ON c.id = t.id`,
    tokenHashes: (kind: InvalidationTarget['kind']) =>
      `SELECT token FROM ${s}.user_sessions WHERE ${TARGET_WHERE[kind]} AND expires_at > now() - interval '1 minute'`,
  }
}

/** SessionStore over the Studio's platform tables. A failure throws (503, or 500 when no retry can fix it). */
export function createPgSessionStore(pool: pg.Pool, schema: string, observe: QueryObserver): SessionStore {
  const sql = sessionSql(schema)
  const targetValue = (target: InvalidationTarget) =>
    target.kind === 'token' ? target.tokenHash : target.kind === 'session' ? target.sessionId : target.userId

  const query = timedQuery(pool, schema, observe)

  return {
    async findByTokenHash(tokenHash) {
      const { rows } = await query<SessionRow>('find_session', sql.find, [tokenHash])
      const row = rows[0]
      if (!row) return null
      return toSessionRecord(row)
    },

    async revoke(target: InvalidationTarget) {
      const { rows } = await query<{ token: string; changed: boolean }>(
        `revoke_by_${target.kind}`,
        sql.revoke(target.kind),
        [targetValue(target)],
      )
      return { revoked: rows.filter((r) => r.changed).length, tokenHashes: rows.map((r) => r.token) }
    },

    async tokenHashes(target: InvalidationTarget) {
      if (target.kind === 'token') return [target.tokenHash]
      const { rows } = await query<{ token: string }>(
        `token_hashes_by_${target.kind}`,
        sql.tokenHashes(target.kind),
        [targetValue(target)],
      )
      return rows.map((r) => r.token)
    },

    async ping() {
      await query('ping', 'SELECT 1', [])
    },

    async close() {
      // The pool belongs to the composition root, which closes it.
    },
  }
}
