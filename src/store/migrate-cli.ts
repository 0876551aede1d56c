import pg from 'pg'
import { loadConfig } from '../config.js'
import { migrate } from './migrate.js'
import { pgConnectionOptions } from './pg-session-store.js'

/** npm run migrate: applies the migration to DATABASE_URL and exits. */
// The migration never touches the cache, so it runs without CACHE_ENCRYPTION_KEYS (Railway's pre-deploy step, say).
const config = loadConfig({}, { requireCacheKeys: false, requireServiceKeys: false })
const client = new pg.Client(pgConnectionOptions(config.database.url ?? '', config.database.ssl))
try {
  await client.connect()
  await migrate(client, config.database.schema)
  console.warn(`migration applied to schema "${config.database.schema}"`)
} finally {
  await client.end()
}
