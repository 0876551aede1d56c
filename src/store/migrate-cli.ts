import pg from 'pg'
import { loadConfig } from '../config.js'
import { migrate } from './migrate.js'
import { pgConnectionOptions } from './pg-session-store.js'
import { applyRuntimeRole } from './runtime-role.js'

/**
 * npm run migrate: applies the migration and exits.
 *
 * With MIGRATION_DATABASE_URL, it connects as that role (the owner of the tables), migrates, then grants
 * DATABASE_URL's role exactly what the running service needs (ops/postgres/runtime-role.sql), so that one deploy step
 * leaves the service able to run as a least-privilege role. Without it, DATABASE_URL's role migrates (and so owns the
 * tables: fine for development, not what production should run as).
 */
// The migration never touches the cache nor serves HTTP: it runs without CACHE_ENCRYPTION_KEYS or SERVICE_API_KEYS
// (Railway's pre-deploy step, say).
const config = loadConfig({}, { requireCacheKeys: false, requireServiceKeys: false })
const { database } = config
const ownerUrl = database.migrationUrl ?? database.url ?? ''
const client = new pg.Client(pgConnectionOptions(ownerUrl, database.ssl))
try {
  await client.connect()
  await migrate(client, database.schema)
  console.warn(`migration applied to schema "${database.schema}"`)
  if (database.migrationUrl) {
    const runtimeRole = decodeURIComponent(new URL(database.url ?? '').username)
    const owner = (await client.query<{ role: string }>('SELECT current_user AS role')).rows[0]?.role
    if (!runtimeRole) {
      throw new Error('MIGRATION_DATABASE_URL is set but DATABASE_URL names no user: which role should the service run as?')
    } else if (runtimeRole === owner) {
      console.warn(`DATABASE_URL's role "${runtimeRole}" is the migration's: nothing to grant (it owns the tables)`)
    } else {
      await applyRuntimeRole(client, runtimeRole, database.schema)
      console.warn(`role "${runtimeRole}" granted what the service needs on "${database.schema}" (ops/postgres/runtime-role.sql)`)
    }
  }
} finally {
  await client.end()
}
