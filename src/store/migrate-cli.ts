import pg from 'pg'
import { loadConfig } from '../config.js'
import { migrate } from './migrate.js'

/** npm run migrate: applies the migration to DATABASE_URL and exits. */
const config = loadConfig()
const client = new pg.Client({ connectionString: config.database.url })
try {
  await client.connect()
  await migrate(client, config.database.schema)
  console.warn(`migration applied to schema "${config.database.schema}"`)
} finally {
  await client.end()
}
