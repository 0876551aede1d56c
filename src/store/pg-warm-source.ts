import type pg from 'pg'
import type { WarmSource } from '../domain/warm-source.js'
import { toSessionRecord, type SessionRow } from './pg-session-store.js'
import { timedQuery, type QueryObserver } from './timed-query.js'

/**
 * The sessions cache warming loads, from the Studio's platform tables. Two steps, so that the sort runs once: the ids
 * of the most recently active live sessions (one query, ids only), then their records in batches by primary key, each
 * read just before it is filled (a record read long before its fill would be refused by the fill deadline anyway).
 * The sort has no index to use in the Studio's schema (none on last_activity_at): for a large user_sessions table an
 * index on (last_activity_at DESC NULLS LAST) WHERE revoked_at IS NULL keeps it cheap (docs/operations.md).
 */
export function createPgWarmSource(pool: pg.Pool, schema: string, observe: QueryObserver): WarmSource {
  const s = `"${schema}"`
  const query = timedQuery(pool, schema, observe)
  const recentSql = `
    SELECT s.id
      FROM ${s}.user_sessions s
      JOIN ${s}.users u ON u.id = s.user_id
     WHERE s.revoked_at IS NULL AND s.expires_at > now()
       AND u.deleted_at IS NULL AND (u.banned_until IS NULL OR u.banned_until <= now())
     ORDER BY s.last_activity_at DESC NULLS LAST, s.id
     LIMIT $1`
  const recordsSql = `
    SELECT s.token, s.id, s.user_id, s.created_at, s.expires_at, s.last_activity_at, s.revoked_at,
           u.email, u.first_name, u.last_name, u.username, u.banned_until, u.deleted_at
      FROM ${s}.user_sessions s
      JOIN ${s}.users u ON u.id = s.user_id
     WHERE s.id = ANY($1::uuid[])`

  return {
    async recentlyActive(limit) {
      const { rows } = await query<{ id: string }>('warm_recent', recentSql, [limit])
      return rows.map((row) => row.id)
    },
    async records(sessionIds) {
      const { rows } = await query<SessionRow & { token: string }>('warm_records', recordsSql, [sessionIds])
      return rows.map((row) => ({ tokenHash: row.token, record: toSessionRecord(row) }))
    },
  }
}
