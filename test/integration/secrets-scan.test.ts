import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApp, type TestApp } from '../support/app.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { TEST_DATABASE_URL } from '../support/env.js'
import { ACL_PREFIX, renderAclFile } from '../support/redis-acl.js'
import { freePort, startRedisServer, type RedisServer } from '../support/redis-server.js'

/**
 * The end-to-end leak check. A whole workload (valid, revoked, expired, banned and deleted sessions, unknown and
 * malformed tokens, invalidations by token, session and user, wrong keys, metrics, health, an instance whose Postgres
 * is down) runs against a private redis-server with the shipped ACL, with logs captured at debug. Then every key and
 * value in that Redis (all of them, not just a prefix) and every captured log line are searched for each token, each
 * piece of personal data, each API key, each password and the cache encryption keys: none may appear.
 */

const hex = (n: number) => randomBytes(n).toString('hex')
const SERVICE_KEY = `studio-${hex(12)}`
const ROTATED_KEY = `rotated-${hex(12)}`
const METRICS_KEY = `scraper-${hex(12)}`
const WRONG_KEY = `wrong-${hex(12)}`
const CACHE_KEY_BYTES = randomBytes(32).toString('base64')
const PG_PASSWORD = `pgpw-${hex(10)}`

let db: TestDatabase
let server: RedisServer
let acl: ReturnType<typeof renderAclFile>
let admin: Redis
const apps: TestApp[] = []
const tokens: string[] = []
const personal: string[] = []

beforeAll(async () => {
  db = await createTestDatabase()
  acl = renderAclFile()
  server = await startRedisServer({ args: ['--aclfile', acl.file], auth: { username: 'default', password: acl.passwords.admin } })
  admin = new Redis(acl.adminUrl(server.port), { maxRetriesPerRequest: 1 })
})
afterAll(async () => {
  for (const app of apps) await app.close().catch(() => undefined)
  admin?.disconnect()
  await server?.close()
  acl?.cleanup()
  await db?.drop()
})

/** The shared test Postgres trusts local connections, so a password in the URL is never checked but must never leak. */
function databaseUrl(port?: number): string {
  const url = new URL(TEST_DATABASE_URL)
  url.password = PG_PASSWORD
  if (port !== undefined) url.port = String(port)
  return url.toString()
}

async function instance(env: Record<string, string>) {
  const app = await startTestApp({
    db,
    redisUrl: acl.serviceUrl(server.port),
    inspect: { url: acl.adminUrl(server.port) },
    env: {
      REDIS_KEY_PREFIX: ACL_PREFIX,
      DATABASE_URL: databaseUrl(),
      SERVICE_API_KEYS: `studio:${SERVICE_KEY},${ROTATED_KEY}`,
      METRICS_API_KEYS: `prometheus:${METRICS_KEY}`,
      CACHE_ENCRYPTION_KEYS: `c1:${CACHE_KEY_BYTES}`,
      ...env,
    },
  })
  apps.push(app)
  return app
}

async function user(state: Partial<{ bannedUntil: Date; deletedAt: Date }> = {}) {
  const mark = hex(5)
  const fields = { email: `person.${mark}@private.example`, firstName: `First${mark}`, lastName: `Last${mark}`, username: `handle${mark}` }
  personal.push(...Object.values(fields))
  return db.insertUser({ ...fields, ...state })
}

async function session(options: Parameters<TestDatabase['insertSession']>[0] = {}) {
  const s = await db.insertSession({ ...options, token: `tok_${hex(24)}` })
  tokens.push(s.token)
  return s
}

describe('after a full workload', () => {
  it('no Redis key or value and no log line holds a token, personal data, an API key, a password or the cache key', async () => {
    const a = await instance({ L1_CACHE_TTL_MS: '30000', SLIDING_TTL_ENABLED: 'true', SLIDING_TTL_MIN_INTERVAL_SECONDS: '1', REQUIRE_API_KEY_FOR_VALIDATE: 'true' })
    const b = await instance({})
    const key = { authorization: `Bearer ${SERVICE_KEY}` }
    const rotated = { authorization: `Bearer ${ROTATED_KEY}` }

    const alice = await user()
    const valid = [await session({ userId: alice }), await session({ userId: alice }), await session({ userId: await user() })]
    const revoked = await session({ userId: await user(), revoked: true })
    const expired = await session({ userId: await user(), expiresInMs: -60_000 })
    const banned = await session({ userId: await user({ bannedUntil: new Date(Date.now() + 3_600_000) }) })
    const deleted = await session({ userId: await user({ deletedAt: new Date() }) })
    const unknown = Array.from({ length: 3 }, () => `tok_${hex(24)}`)
    tokens.push(...unknown)

    for (const round of [1, 2]) {
      for (const s of [...valid, revoked, expired, banned, deleted]) {
        expect((await a.validate(s.token, key)).statusCode).toBe(200)
        expect((await b.validate(s.token)).statusCode).toBe(200)
      }
      for (const token of unknown) await b.validate(token)
      await a.settle()
      await b.settle()
      if (round === 1) expect((await b.validate(valid[0]!.token)).json()).toMatchObject({ source: 'redis' })
    }
    // Refused callers and refused input, each carrying something secret-looking.
    await a.validate(valid[0]!.token, { authorization: `Bearer ${WRONG_KEY}` })
    await a.validate(valid[0]!.token)
    const malformed = `tok_${hex(8)} with spaces`
    tokens.push(malformed)
    await b.validate(malformed)
    await b.app.inject({ method: 'POST', url: '/validate', payload: `{"token":"${valid[1]!.token}"`, headers: { 'content-type': 'application/json' } })
    await b.app.inject({ method: 'POST', url: '/validate', payload: valid[1]!.token, headers: { 'content-type': 'text/plain' } })
    await b.invalidate({ token: valid[2]!.token }, { authorization: `Bearer ${WRONG_KEY}` })
    // Invalidations of every kind, with both keys.
    expect((await b.invalidate({ token: valid[2]!.token, revoke: true }, key)).statusCode).toBe(200)
    expect((await a.invalidate({ sessionId: valid[1]!.sessionId }, rotated)).statusCode).toBe(200)
    expect((await b.invalidate({ userId: alice, revoke: true }, key)).statusCode).toBe(200)
    for (const s of valid) await b.validate(s.token)
    // Sessions that stay valid, so live entries with personal data are in Redis when it is scanned.
    const kept = [await session({ userId: await user() }), await session({ userId: await user() })]
    for (const s of kept) await a.validate(s.token, key)
    await a.settle()
    await b.settle()
    for (const s of kept) expect((await b.validate(s.token)).json()).toMatchObject({ valid: true, source: 'redis' })
    // Operations routes, scraped with and without the metrics key.
    expect((await a.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${METRICS_KEY}` } })).statusCode).toBe(200)
    expect((await a.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${SERVICE_KEY}` } })).statusCode).toBe(401)
    expect((await a.app.inject({ method: 'GET', url: '/health/redis' })).statusCode).toBe(200)

    // An instance whose Postgres is unreachable (its URL still carries the password): 503s and error logs.
    const down = await instance({ DATABASE_URL: databaseUrl(await freePort()), DATABASE_CONNECT_TIMEOUT_MS: '200' })
    expect((await down.validate(`tok_${hex(24)}`)).statusCode).toBe(503)
    expect((await down.invalidate({ sessionId: revoked.sessionId, revoke: true }, key)).statusCode).toBe(503)
    await down.app.inject({ method: 'GET', url: '/health/redis' })
    for (const app of apps) await app.settle()

    // --- every key and value in this Redis
    const keys = await admin.keys('*')
    expect(keys.length).toBeGreaterThan(10)
    const stored: string[] = []
    for (const k of keys) {
      const type = await admin.type(k)
      // Values and index members are bytes (src/cache/codec.ts, keys.ts): latin1 keeps every one of them.
      const value =
        type === 'string' ? [(await admin.getBuffer(k))?.toString('latin1') ?? '']
        : type === 'zset' ? (await admin.zrangeBuffer(k, 0, -1)).map((m) => m.toString('latin1'))
        : [`<${type}>`]
      stored.push(k, ...value)
    }
    const redisText = stored.join('\n')

    // --- every log line of every instance, closed first so shutdown lines are in too
    for (const app of apps.splice(0)) await app.close()
    const logText = [a, b, down].map((app) => app.logs.text()).join('\n')
    expect(logText).toContain('sessions invalidated')
    expect(logText).toContain('"keyId":"studio"')
    expect(logText).toMatch(/"keyId":"key-[0-9a-f]{8}"/)
    expect(logText).toContain('request failed')

    const secrets: Record<string, string[]> = {
      token: tokens,
      'personal data': personal,
      'API key': [SERVICE_KEY, ROTATED_KEY, METRICS_KEY, WRONG_KEY],
      password: [acl.passwords.service, acl.passwords.admin, PG_PASSWORD],
      'cache encryption key': [CACHE_KEY_BYTES, Buffer.from(CACHE_KEY_BYTES, 'base64').toString('hex')],
    }
    for (const [what, values] of Object.entries(secrets)) {
      for (const secret of values) {
        expect(redisText.includes(secret), `${what} ${secret} in Redis`).toBe(false)
        expect(logText.includes(secret), `${what} ${secret} in the logs`).toBe(false)
      }
    }
    // Case-insensitive for personal data: an email or name must not hide in another case either.
    for (const value of personal) {
      expect(redisText.toLowerCase()).not.toContain(value.toLowerCase())
      expect(logText.toLowerCase()).not.toContain(value.toLowerCase())
    }
  })
})
