import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startTestApp, type TestApp } from '../support/app.js'
import { makeTestCertificates, type TestCertificates } from '../support/certs.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { startPostgresServer, type PostgresServer } from '../support/postgres-server.js'

/**
 * TLS to Postgres (DATABASE_SSL_MODE, DATABASE_SSL_CA_FILE) against a private PostgreSQL started with ssl=on and a
 * certificate made at test time. The server also accepts plaintext, so "the service used TLS" is read from
 * pg_stat_ssl on the service's own connection; a wrong CA, or a server without TLS, is an error (503), never a
 * plaintext fallback.
 */

let certs: TestCertificates
let server: PostgresServer
let db: TestDatabase
let shared: TestDatabase
let t: TestApp | undefined

beforeAll(async () => {
  certs = makeTestCertificates()
  server = await startPostgresServer({ tls: { certFile: certs.server.certFile, keyFile: certs.server.keyFile } })
  db = await createTestDatabase(server.url)
  shared = await createTestDatabase()
}, 120_000)
afterAll(async () => {
  await db?.drop()
  await shared?.drop()
  await server?.close()
  certs?.cleanup()
})
afterEach(async () => {
  await t?.close()
  t = undefined
})

async function start(env: Record<string, string>, on = db) {
  t = await startTestApp({ db: on, env: { DATABASE_CONNECT_TIMEOUT_MS: '1000', ...env } })
  return t
}

/** Whether the app's own Postgres connection is encrypted, as the server sees it. */
async function usesTls(app: TestApp): Promise<boolean> {
  const { rows } = await app.app.internals.pgPool.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')
  return rows[0]?.ssl === true
}

describe('Postgres over TLS', () => {
  it('verify-full with the CA: the service validates over an encrypted connection', async () => {
    const app = await start({ DATABASE_SSL_MODE: 'verify-full', DATABASE_SSL_CA_FILE: certs.ca.certFile })
    const { token } = await db.insertSession()
    expect((await app.validate(token)).json()).toMatchObject({ valid: true, source: 'postgres' })
    expect(await usesTls(app)).toBe(true)
  })

  it('DATABASE_SSL_MODE wins over sslmode in DATABASE_URL (here sslmode=disable)', async () => {
    const app = await start({
      DATABASE_URL: `${server.url}?sslmode=disable`,
      DATABASE_SSL_MODE: 'verify-full',
      DATABASE_SSL_CA_FILE: certs.ca.certFile,
    })
    const { token } = await db.insertSession()
    expect((await app.validate(token)).json()).toMatchObject({ valid: true })
    expect(await usesTls(app)).toBe(true)
  })

  it('require: encrypted without verifying the server (libpq semantics)', async () => {
    const app = await start({ DATABASE_SSL_MODE: 'require' })
    const { token } = await db.insertSession()
    expect((await app.validate(token)).json()).toMatchObject({ valid: true })
    expect(await usesTls(app)).toBe(true)
  })

  it('verify-ca with a CA that did not sign the server certificate fails closed: 503, never plaintext', async () => {
    const app = await start({ DATABASE_SSL_MODE: 'verify-ca', DATABASE_SSL_CA_FILE: certs.otherCa.certFile })
    const { token } = await db.insertSession()
    const response = await app.validate(token)
    expect(response.statusCode).toBe(503)
    expect(response.json()).toMatchObject({ code: 'SESSION_STORE_UNAVAILABLE' })
    expect((await app.app.inject({ method: 'GET', url: '/health/redis' })).json()).toMatchObject({ postgres: { connected: false } })
  })

  it('a server without TLS (the shared test Postgres) is refused when TLS is required, not used in plaintext', async () => {
    const app = await start({ DATABASE_SSL_MODE: 'require' }, shared)
    const { token } = await shared.insertSession()
    const response = await app.validate(token)
    expect(response.statusCode).toBe(503)
    expect(app.logs.text()).toMatch(/does not support SSL/)
  })
})
