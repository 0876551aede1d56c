import type pg from 'pg'
import type { RevocationOutbox } from '../domain/ports.js'
import type { OutboxPosition, RevocationEvent } from '../domain/revocation.js'
import type { InvalidationTarget } from '../domain/session.js'
import { timedQuery, type QueryObserver } from './timed-query.js'

interface OutboxRow {
  id: string
  token_hashes: string[]
  session_ids: string[]
  user_ids: string[]
  written_at_ms: number
}

const COLUMNS = `id, token_hashes, session_ids, user_ids, (extract(epoch FROM created_at) * 1000)::float8 AS written_at_ms`

function toEvent(row: OutboxRow): RevocationEvent {
  const targets: InvalidationTarget[] = [
    ...row.token_hashes.map((tokenHash) => ({ kind: 'token', tokenHash }) as const),
    ...row.session_ids.map((sessionId) => ({ kind: 'session', sessionId }) as const),
    ...row.user_ids.map((userId) => ({ kind: 'user', userId }) as const),
  ]
  return { id: Number(row.id), targets, writtenAtMs: row.written_at_ms }
}

/** The outbox's statements, by name; the start-up access check (access-check.ts) runs these same texts. */
export function outboxSql(schema: string) {
  const s = `"${schema}"`
  return {
    readAfter: `SELECT ${COLUMNS} FROM ${s}.session_cache_outbox WHERE id > $1 ORDER BY id LIMIT $2`,
    readById: `SELECT ${COLUMNS} FROM ${s}.session_cache_outbox WHERE id = $1`,
    position: `SELECT (SELECT max(id) FROM ${s}.session_cache_outbox) AS max_id, pruned_through FROM ${s}.session_cache_outbox_state`,
    lastIdBefore: `SELECT max(id) AS id FROM ${s}.session_cache_outbox WHERE created_at < to_timestamp($1::float8 / 1000)`,
    // One statement: the rows go and the high-water mark moves together, so a reader never sees one without the
    // other. Several instances may prune at once; greatest() keeps the mark from moving back.
    prune: `WITH doomed AS (
           SELECT id FROM ${s}.session_cache_outbox WHERE created_at < to_timestamp($1::float8 / 1000) ORDER BY id LIMIT $2
         ), gone AS (
           DELETE FROM ${s}.session_cache_outbox o USING doomed d WHERE o.id = d.id RETURNING o.id
         ), mark AS (
           UPDATE ${s}.session_cache_outbox_state SET pruned_through = greatest(pruned_through, (SELECT max(id) FROM gone))
            WHERE (SELECT max(id) FROM gone) IS NOT NULL RETURNING 1
         )
         SELECT count(*) AS pruned FROM gone`,
  }
}

/** The revocation outbox over the pooled connections (reads and pruning; the LISTEN connection is separate). */
export function createPgOutbox(pool: pg.Pool, schema: string, observe: QueryObserver): RevocationOutbox {
  const sql = outboxSql(schema)
  const query = timedQuery(pool, schema, observe)

  return {
    async readAfter(afterId, limit) {
      const { rows } = await query<OutboxRow>(
        'outbox_after',
        sql.readAfter,
        [afterId, limit],
      )
      return rows.map(toEvent)
    },

    async readById(id) {
      const { rows } = await query<OutboxRow>('outbox_by_id', sql.readById, [id])
      return rows[0] ? toEvent(rows[0]) : null
    },

    async position(): Promise<OutboxPosition> {
      const { rows } = await query<{ max_id: string | null; pruned_through: string }>(
        'outbox_position',
        sql.position,
        [],
      )
      const prunedThrough = Number(rows[0]?.pruned_through ?? 0)
      return { maxId: Math.max(Number(rows[0]?.max_id ?? 0), prunedThrough), prunedThrough }
    },

    async lastIdBefore(atMs) {
      const { rows } = await query<{ id: string | null }>(
        'outbox_last_before',
        sql.lastIdBefore,
        [atMs],
      )
      return Number(rows[0]?.id ?? 0)
    },

    async prune(beforeMs, limit) {
      const { rows } = await query<{ pruned: string }>('outbox_prune', sql.prune, [beforeMs, limit])
      return Number(rows[0]?.pruned ?? 0)
    },
  }
}
