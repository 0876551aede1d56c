import type pg from 'pg'
import type { ActivityStore } from '../domain/ports.js'
import { timedQuery, type QueryObserver } from './timed-query.js'

/**
 * One statement records many sessions' last use. A row is written only when its stored last_activity_at is older than
 * one interval before this use, so several instances recording the same session write it about once per interval
 * between them. Rows another transaction holds (the Studio refreshing that session, which sets last_activity_at
 * itself) are skipped, not waited for, and rows are locked in id order: two instances' flushes never deadlock.
 * Only last_activity_at changes, which the revocation triggers do not watch: no outbox row, no NOTIFY.
 */
export function activitySql(schema: string) {
  const s = `"${schema}"`
  return {
    record: `WITH used AS (
        SELECT * FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, at)
      ), due AS (
        SELECT s.id, used.at FROM ${s}.user_sessions s JOIN used ON used.id = s.id
         WHERE s.last_activity_at IS NULL OR s.last_activity_at < used.at - make_interval(secs => $3)
         ORDER BY s.id
         FOR UPDATE OF s SKIP LOCKED
      )
      UPDATE ${s}.user_sessions s SET last_activity_at = due.at FROM due WHERE s.id = due.id`,
  }
}

export function createPgActivityStore(pool: pg.Pool, schema: string, observe: QueryObserver): ActivityStore {
  const sql = activitySql(schema)
  const query = timedQuery(pool, schema, observe)
  return {
    async recordActivity(uses, minIntervalSeconds) {
      const ids: string[] = []
      const ats: Date[] = []
      for (const [id, atMs] of uses) {
        ids.push(id)
        ats.push(new Date(atMs))
      }
      const result = await query('activity_record', sql.record, [ids, ats, minIntervalSeconds])
      return result.rowCount ?? 0
    },
  }
}
