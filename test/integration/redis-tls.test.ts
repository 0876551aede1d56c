import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { startTestApp, type TestApp } from '../support/app.js'
import { eventually } from '../support/gate.js'
import { makeTestCertificates, type TestCertificates } from '../support/certs.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { startRedisServer, type RedisServer } from '../support/redis-server.js'

/**
 * TLS to Redis against a private redis-server listening only on --tls-port, with certificates made at test time by
 * openssl. The server requires client certificates (tls-auth-clients yes). With the right CA and client certificate
 * the service works end to end; with a wrong CA, a wrong host name, no client certificate or a plaintext URL it never
 * gets a working connection (no key written, no client registered on the server), and answers from Postgres.
 */

let db: TestDatabase
let certs: TestCertificates
let server: RedisServer
let inspector: Redis
let t: TestApp | undefined

// A refused certificate fails the handshake at once whatever the connect timeout; a generous one lets the handshake
// reach that refusal on a busy machine (at 300 ms the attempt could time out first, and the log named no certificate).
const CONNECT_TIMEOUT_MS = 2000
const FAST_FAIL = { REDIS_CONNECT_TIMEOUT_MS: String(CONNECT_TIMEOUT_MS), REDIS_COMMAND_TIMEOUT_MS: '150', HEALTH_TIMEOUT_MS: '600', CACHE_WRITE_RETRIES: '0' }

beforeAll(async () => {
  db = await createTestDatabase()
  certs = makeTestCertificates()
  const client = { ca: certs.ca.cert, cert: certs.client.cert, key: certs.client.key }
  server = await startRedisServer({
    tls: { certFile: certs.server.certFile, keyFile: certs.server.keyFile, caFile: certs.ca.certFile, authClients: 'yes', client },
  })
  inspector = new Redis(server.url, { tls: client, maxRetriesPerRequest: 1 })
})
afterAll(async () => {
  inspector?.disconnect()
  await server?.close()
  certs?.cleanup()
  await db?.drop()
})
afterEach(async () => {
  await t?.close()
  t = undefined
  await inspector.flushall()
})

const tlsEnv = (overrides: Record<string, string> = {}) => ({
  REDIS_TLS_CA_FILE: certs.ca.certFile,
  REDIS_TLS_CERT_FILE: certs.client.certFile,
  REDIS_TLS_KEY_FILE: certs.client.keyFile,
  ...overrides,
})

async function start(env: Record<string, string>, redisUrl = server.url) {
  t = await startTestApp({ db, redisUrl, env, inspect: { url: server.url, options: { tls: { ca: certs.ca.cert, cert: certs.client.cert, key: certs.client.key } } } })
  return t
}

/** Names of the clients connected to the server, other than the inspector. */
async function serviceClients(): Promise<string[]> {
  const list = (await inspector.call('CLIENT', 'LIST')) as string
  return [...list.matchAll(/ name=(\S*) /g)].map((m) => m[1]!).filter((name) => name === 'studio-session-cache')
}

describe('Redis over TLS (rediss://)', () => {
  it('verifies the server against REDIS_TLS_CA_FILE, presents the client certificate, and serves from the cache', async () => {
    const app = await start(tlsEnv())
    const { token } = await db.insertSession()
    expect((await app.validate(token)).json()).toMatchObject({ valid: true, source: 'postgres' })
    await app.settle()
    expect((await app.validate(token)).json()).toMatchObject({ valid: true, source: 'redis' })
    const health = (await app.app.inject({ method: 'GET', url: '/health/redis' })).json()
    expect(health).toMatchObject({ status: 'healthy', redis: { connected: true } })
    expect(Object.keys(await app.dump()).length).toBeGreaterThan(0)
    expect((await serviceClients()).length).toBeGreaterThan(0)
  })

  // Environments as functions: the certificates exist only once beforeAll has run.
  it.each([
    { what: 'a CA that did not sign the server certificate', env: () => tlsEnv({ REDIS_TLS_CA_FILE: certs.otherCa.certFile }), error: /certificate/i },
    { what: 'no CA file (the system CAs do not know the test CA)', env: () => tlsEnv({ REDIS_TLS_CA_FILE: '' }), error: /certificate/i },
    { what: 'a server name the certificate does not carry', env: () => tlsEnv({ REDIS_TLS_SERVERNAME: 'elsewhere.test' }), error: /altnames|Hostname/i },
  ])('fails closed with $what: no connection, nothing written, answers from Postgres', async ({ env, error }) => {
    const app = await start({ ...FAST_FAIL, ...env() })
    const { token } = await db.insertSession()
    for (let i = 0; i < 2; i++) {
      expect((await app.validate(token)).json()).toMatchObject({ valid: true, source: 'postgres' })
      await app.settle()
    }
    const health = (await app.app.inject({ method: 'GET', url: '/health/redis' })).json()
    expect(health).toMatchObject({ status: 'degraded', redis: { connected: false } })
    // The reason is logged by the first attempt that gets that far: a few connect timeouts and reconnect backoffs.
    await eventually(() => error.test(app.logs.text()), 5 * CONNECT_TIMEOUT_MS, `${String(error)} in the log`)
    expect(await inspector.keys('*')).toEqual([])
    expect(await serviceClients()).toEqual([])
  })

  it('fails closed without a client certificate when the server requires one', async () => {
    const app = await start({ ...FAST_FAIL, REDIS_TLS_CA_FILE: certs.ca.certFile })
    const { token } = await db.insertSession()
    expect((await app.validate(token)).json()).toMatchObject({ valid: true, source: 'postgres' })
    await app.settle()
    expect((await app.app.inject({ method: 'GET', url: '/health/redis' })).json()).toMatchObject({ redis: { connected: false } })
    expect(await inspector.keys('*')).toEqual([])
    expect(await serviceClients()).toEqual([])
  })

  it('never speaks plaintext to a TLS port: redis:// to it fails, and TLS settings with redis:// are refused at start-up', async () => {
    const app = await start(FAST_FAIL, `redis://127.0.0.1:${server.port}`)
    const { token } = await db.insertSession()
    expect((await app.validate(token)).json()).toMatchObject({ valid: true, source: 'postgres' })
    await app.settle()
    expect(await inspector.keys('*')).toEqual([])
    expect(() =>
      loadConfig(
        { NODE_ENV: 'test', DATABASE_URL: db.url, REDIS_URL: `redis://127.0.0.1:${server.port}`, REDIS_TLS_CA_FILE: certs.ca.certFile },
        { source: {} },
      ),
    ).toThrow(/REDIS_TLS_\* is set but REDIS_URL is not rediss:\/\/: refusing to connect in plaintext/)
  })
})
