import type pg from 'pg'
import { platformSessionsMigration } from './migrations/001-platform-sessions.js'
import { revocationOutboxMigration } from './migrations/002-revocation-outbox.js'
import { studioTriggerColumnMigration } from './migrations/003-studio-trigger-column.js'

/** Any fixed number works; it only has to be the same for every instance, so that two migrations never interleave. */
const MIGRATION_LOCK_ID = 727_105_001

/** Applies the migration in one transaction under an advisory lock; safe to run from several instances at once. */
export async function migrate(client: pg.ClientBase, schema: string): Promise<void> {
  await client.query('BEGIN')
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_ID])
    await client.query(platformSessionsMigration(schema))
    await client.query(revocationOutboxMigration(schema))
    await client.query(studioTriggerColumnMigration(schema))
    await client.query('COMMIT')
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined)
    throw err
  }
}
