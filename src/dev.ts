import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { ConfigError, loadConfig } from './config.js'
import { startEmbeddedPostgres } from './dev/embedded-postgres.js'
import { seedDemo } from './dev/seed.js'
import { start } from './server.js'
import { migrate } from './store/migrate.js'

/**
 * `npm run dev`: the service on an embedded default. Without DATABASE_URL an embedded PostgreSQL is started, migrated
 * and seeded with demo sessions whose tokens are printed with a ready curl line. Redis defaults to 127.0.0.1:6379;
 * if it is not there the service says so and serves from Postgres. `npm start` never does any of this.
 */
const say = (line: string) => process.stdout.write(`${line}\n`)
const devDefaults = { NODE_ENV: 'development', LOG_PRETTY: 'true', HOST: '127.0.0.1' }

try {
  const base = loadConfig({}, { requireDatabaseUrl: false, defaults: devDefaults })
  let embedded: Awaited<ReturnType<typeof startEmbeddedPostgres>> | undefined
  if (!base.database.url) {
    const projectDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
    embedded = await startEmbeddedPostgres(path.resolve(projectDir, base.dev.embeddedPostgresDir), say)
    say(`embedded PostgreSQL listening on 127.0.0.1:${embedded.port}`)
  }
  const config = loadConfig(embedded ? { DATABASE_URL: embedded.url } : {}, { defaults: devDefaults })

  const client = new pg.Client({ connectionString: config.database.url })
  await client.connect()
  let tokens
  try {
    await migrate(client, config.database.schema)
    tokens = await seedDemo(client, config.database.schema)
  } finally {
    await client.end()
  }

  await start(config, { afterClose: async () => embedded?.stop() })
  const base_url = `http://${config.host}:${config.port}`
  say('\nDemo session tokens (dev only):')
  for (const t of tokens) say(`  ${t.label.padEnd(30)} expect ${t.expect.padEnd(12)} ${t.token}`)
  say('\nTry:')
  say(`  curl -s ${base_url}/validate -H 'content-type: application/json' -d '{"token":"${tokens[0]!.token}"}'`)
  say(`  curl -s ${base_url}/health/redis`)
  say(`  curl -s ${base_url}/metrics | grep session_\n`)
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : err)
  process.exit(1)
}
