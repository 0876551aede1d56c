import type pg from 'pg'
import { activitySql } from './pg-activity.js'
import { classifyPgFailure, sqlState } from './pg-errors.js'
import { outboxSql } from './pg-outbox.js'
import { sessionSql } from './pg-session-store.js'
import type { StoreAccessProblem as AccessProblem } from '../service/store-access.js'

const NO_ID = '00000000-0000-0000-0000-000000000000'

/**
 * Proves, without changing any data, that the service's Postgres role can do its work: each statement the service runs
 * is executed once in a transaction that is rolled back, with arguments that match no row (Postgres checks privileges
 * before it looks for rows), and the row-level security catalog is read to prove the role sees every row (a policy
 * that hides rows raises no error: it answers "no such session", which would log users out).
 *
 * Returns the role checked and the problems found (none: all good). Throws when Postgres cannot be reached: that proves nothing either way.
 */
export async function checkStoreAccess(
  pool: pg.Pool,
  schema: string,
  options: { activity: boolean },
): Promise<{ role: string; problems: AccessProblem[] }> {
  const session = sessionSql(schema)
  const outbox = outboxSql(schema)
  const statements: Array<[check: string, text: string, values: unknown[]]> = [
    ['read sessions and users (SELECT)', session.find, ['']],
    ['revoke a session (UPDATE revoked_at)', session.revoke('session'), [NO_ID]],
    ['revoke by user (UPDATE revoked_at)', session.revoke('user'), [NO_ID]],
    ['read token hashes (SELECT)', session.tokenHashes('user'), [NO_ID]],
    ['read the revocation outbox (SELECT)', outbox.readAfter, [Number.MAX_SAFE_INTEGER, 1]],
    ['read the outbox position (SELECT)', outbox.position, []],
    ['prune the outbox (DELETE, UPDATE session_cache_outbox_state)', outbox.prune, [0, 1]],
  ]
  if (options.activity) statements.push(['record activity (UPDATE last_activity_at)', activitySql(schema).record, [[], [], 60]])
  // An UPDATE that matches no row runs no row trigger: one real row is updated to its own values (rolled back below)
  // so that the table's BEFORE UPDATE triggers run too. The Studio's assigns a column the table may lack (42703).
  // A row another transaction holds is skipped, not waited for; revocation triggers watch for changes, not writes.
  const s = `"${schema}"`
  statements.push([
    'update a session row, its triggers included (UPDATE revoked_at, last_activity_at)',
    `UPDATE ${s}.user_sessions SET revoked_at = revoked_at, last_activity_at = last_activity_at
      WHERE id = (SELECT id FROM ${s}.user_sessions LIMIT 1 FOR UPDATE SKIP LOCKED)`,
    [],
  ])

  const client = await pool.connect()
  // pg-pool stops listening for a client's errors while it is checked out: a connection reset mid-check would
  // otherwise be an uncaught 'error' event. The query in flight fails with it anyway, and is handled below.
  let lost: Error | undefined
  const onError = (err: Error) => {
    lost = err
  }
  client.on('error', onError)
  const problems: AccessProblem[] = []
  let role = ''
  let broken: unknown
  try {
    await client.query('BEGIN')
    await client.query("SET LOCAL lock_timeout = '1s'")
    role = (await client.query<{ role: string }>('SELECT current_user AS role')).rows[0]?.role ?? ''
    for (const [check, text, values] of statements) {
      await client.query('SAVEPOINT access_check')
      try {
        await client.query(text, values)
      } catch (err) {
        if (classifyPgFailure(err) !== 'permanent') throw err
        problems.push({ check, sqlstate: sqlState(err) ?? null, detail: (err as Error).message })
      }
      await client.query('ROLLBACK TO SAVEPOINT access_check')
    }
    problems.push(...(await rowSecurityProblems(client, schema)))
    await client.query('ROLLBACK')
  } catch (err) {
    broken = err
    throw err
  } finally {
    client.removeListener('error', onError)
    // A connection that failed mid-transaction is not given back to the pool for another caller to inherit.
    const failed = lost ?? (broken instanceof Error ? broken : undefined)
    client.release(failed)
  }
  return { role, problems }
}

interface RowSecurity {
  table: string
  active: boolean
  read_all: boolean
  update_all: boolean
  restricted: boolean
}

/**
 * Row-level security, from the catalog: where it is active for this role (not the owner, no BYPASSRLS), a permissive
 * policy for this role (or PUBLIC) must let it read every row (`USING (true)`), and update every row of user_sessions,
 * and no restrictive policy may narrow that.
 */
async function rowSecurityProblems(client: pg.PoolClient, schema: string): Promise<AccessProblem[]> {
  const applies = `(p.polroles = '{0}' OR EXISTS (SELECT 1 FROM unnest(p.polroles) r WHERE pg_has_role(current_user, r, 'USAGE')))`
  const permissive = (cmds: string, withCheck: boolean) =>
    `EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polpermissive AND p.polcmd IN (${cmds}) AND ${applies}
       AND pg_get_expr(p.polqual, p.polrelid) = 'true'
       ${withCheck ? "AND (p.polwithcheck IS NULL OR pg_get_expr(p.polwithcheck, p.polrelid) = 'true')" : ''})`
  const { rows } = await client.query<RowSecurity>(
    `SELECT c.relname AS table, row_security_active(c.oid) AS active,
            ${permissive("'r', '*'", false)} AS read_all,
            ${permissive("'w', '*'", true)} AS update_all,
            EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND NOT p.polpermissive AND ${applies}
                      AND pg_get_expr(p.polqual, p.polrelid) IS DISTINCT FROM 'true') AS restricted
       FROM pg_class c
      WHERE c.oid IN (to_regclass($1), to_regclass($2))`,
    [`"${schema}".users`, `"${schema}".user_sessions`],
  )
  const problems: AccessProblem[] = []
  for (const row of rows) {
    if (!row.active) continue
    const table = `${schema}.${row.table}`
    if (!row.read_all || row.restricted) {
      problems.push({
        check: `see every row of ${table} (row-level security)`,
        sqlstate: null,
        detail: `row-level security on ${table} shows this role only some rows: no policy for it reads USING (true)`,
      })
    }
    if (row.table === 'user_sessions' && !row.update_all) {
      problems.push({
        check: `update every row of ${table} (row-level security)`,
        sqlstate: null,
        detail: `row-level security on ${table} lets this role update only some rows: no UPDATE policy for it USING (true)`,
      })
    }
  }
  return problems
}
