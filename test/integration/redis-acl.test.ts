import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { DROP_OWNER } from '../../src/cache/scripts.js'
import { startTestApp, type TestApp } from '../support/app.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { eventually } from '../support/gate.js'
import { ACL_PREFIX, renderAclFile } from '../support/redis-acl.js'
import { startRedisServer, type RedisServer } from '../support/redis-server.js'

/**
 * Redis AUTH and the least-privilege ACL: a private redis-server started with the shipped ops/redis/users.acl. The
 * service, logged in as its `ssc` user, does everything it does (fills, hits, sliding extension, invalidation with
 * pub/sub to an L1 tier, the health report) without a single ACL denial in Redis's ACL LOG; that user is refused
 * every other command, key and channel; a wrong password or a prefix outside the ACL leaves Redis untouched and the
 * answers to Postgres.
 */

const SERVICE_KEY = `acl-test:${randomBytes(16).toString('hex')}`
const bearer = { authorization: `Bearer ${SERVICE_KEY.slice(SERVICE_KEY.indexOf(':') + 1)}` }

let db: TestDatabase
let server: RedisServer
let acl: ReturnType<typeof renderAclFile>
let admin: Redis
const apps: TestApp[] = []

beforeAll(async () => {
  db = await createTestDatabase()
  acl = renderAclFile()
  server = await startRedisServer({
    args: ['--aclfile', acl.file],
    auth: { username: 'default', password: acl.passwords.admin },
  })
  admin = new Redis(acl.adminUrl(server.port), { maxRetriesPerRequest: 1 })
})
afterAll(async () => {
  admin?.disconnect()
  await server?.close()
  acl?.cleanup()
  await db?.drop()
})
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close()
  await admin.flushall()
  await admin.acl('LOG', 'RESET')
})

async function start(env: Record<string, string> = {}, redisUrl = acl.serviceUrl(server.port)) {
  const app = await startTestApp({
    db,
    redisUrl,
    env: { REDIS_KEY_PREFIX: ACL_PREFIX, SERVICE_API_KEYS: SERVICE_KEY, ...env },
    inspect: { url: acl.adminUrl(server.port) },
  })
  apps.push(app)
  return app
}

/** ACL LOG entries (denials), as [username, reason, object] triples. */
async function denials(): Promise<string[][]> {
  const log = (await admin.call('ACL', 'LOG')) as unknown[][]
  return log.map((entry) => {
    const fields = new Map<string, unknown>()
    for (let i = 0; i < entry.length; i += 2) fields.set(String(entry[i]), entry[i + 1])
    return [String(fields.get('username')), String(fields.get('reason')), String(fields.get('object'))]
  })
}

describe('the shipped ACL (ops/redis/users.acl) with the service logged in as `ssc`', () => {
  it('serves the whole workload with no ACL denial: fill, hit, sliding extension, invalidation with pub/sub, health', async () => {
    // A holds an L1 tier (so it SUBSCRIBEs); B has none and extends entries on access (the EXTEND script).
    const a = await start({ L1_CACHE_TTL_MS: '30000' })
    const b = await start({ SLIDING_TTL_ENABLED: 'true', SLIDING_TTL_MIN_INTERVAL_SECONDS: '1' })
    await eventually(() => a.app.internals.local?.active === true, 5000, 'L1 subscribed')
    const { token, sessionId } = await db.insertSession()

    expect((await a.validate(token)).json()).toMatchObject({ valid: true, source: 'postgres' })
    await a.settle()
    expect((await b.validate(token)).json()).toMatchObject({ valid: true, source: 'redis' })
    await b.settle()
    expect((await a.validate(token)).json()).toMatchObject({ valid: true, source: 'l1' })
    expect((await a.validate('never-issued-token')).json()).toEqual({ valid: false, reason: 'not_found' })
    await a.settle()
    expect((await b.validate('never-issued-token')).json()).toEqual({ valid: false, reason: 'not_found' })

    const invalidated = await b.invalidate({ sessionId, revoke: true }, bearer)
    expect(invalidated.json()).toEqual({ invalidated: 1, revoked: 1 })
    // The script's PUBLISH reached A's subscriber: its L1 no longer answers for the session.
    await eventually(async () => (await a.validate(token)).json().valid === false, 5000, 'L1 eviction')
    expect((await b.invalidate({ token: 'never-issued-token' }, bearer)).statusCode).toBe(200)

    for (const app of [a, b]) {
      const health = (await app.app.inject({ method: 'GET', url: '/health/redis' })).json()
      expect(health).toMatchObject({ status: 'healthy', redis: { connected: true } })
    }
    await a.settle()
    await b.settle()

    expect(await denials()).toEqual([])
    // Everything the service wrote is under its prefix.
    const keys = await admin.keys('*')
    expect(keys.length).toBeGreaterThan(0)
    for (const key of keys) expect(key.startsWith(ACL_PREFIX), key).toBe(true)
  })

  it('refuses the service user every other command, every key outside ssc:, and every other channel', async () => {
    const ssc = new Redis(acl.serviceUrl(server.port), { maxRetriesPerRequest: 0, lazyConnect: true })
    await ssc.connect()
    try {
      const refused: Array<[string, () => Promise<unknown>]> = [
        ['FLUSHALL', () => ssc.flushall()],
        ['FLUSHDB', () => ssc.flushdb()],
        ['KEYS', () => ssc.keys('*')],
        ['SCAN', () => ssc.scan(0)],
        ['CONFIG GET', () => ssc.config('GET', 'maxmemory')],
        ['CONFIG SET', () => ssc.config('SET', 'maxmemory', '1')],
        ['DEBUG', () => ssc.call('DEBUG', 'SLEEP', '0')],
        ['SHUTDOWN', () => ssc.call('SHUTDOWN', 'NOSAVE')],
        ['ACL LIST', () => ssc.call('ACL', 'LIST')],
        ['CLIENT KILL', () => ssc.call('CLIENT', 'KILL', 'ID', '1')],
        ['CLIENT LIST', () => ssc.call('CLIENT', 'LIST')],
        ['SCRIPT FLUSH', () => ssc.call('SCRIPT', 'FLUSH')],
        ['MONITOR', () => ssc.call('MONITOR')],
        ['SELECT 1', () => ssc.select(1)],
        ['SLOWLOG RESET', () => ssc.call('SLOWLOG', 'RESET')],
        ['GET outside the prefix', () => ssc.get('other:key')],
        ['SET outside the prefix', () => ssc.set('other:key', '1')],
        ['DEL outside the prefix', () => ssc.del('other:key')],
        ['PUBLISH on another channel', () => ssc.publish('other:channel', 'x')],
        ['PUBLISH on another channel under the prefix', () => ssc.publish(`${ACL_PREFIX}other`, 'x')],
        // A script cannot reach past the prefix either: Redis checks each command a script runs, key names the script
        // builds itself included (here the cache's own invalidation script, pointed at another prefix).
        ['EVAL building a key outside the prefix', () => ssc.eval("return redis.call('SET', 'other:' .. ARGV[1], '1')", 0, 'x')],
        ['an invalidation script aimed at another prefix', () => ssc.eval(DROP_OWNER, 2, 'other:t:uid:{u1}', 'other:ui:{u1}', 'ui', '1000', `${ACL_PREFIX}invalidations`, 'uid:u1')],
      ]
      for (const [what, attempt] of refused) {
        const error = await attempt().then(
          () => undefined,
          (err: Error) => err,
        )
        // DEBUG is refused before the ACL is consulted (enable-debug-command is off by default).
        expect(error?.message, what).toMatch(/NOPERM|no permissions|can't (access|run|publish)|DEBUG command not allowed/)
      }
      const subscriber = new Redis(acl.serviceUrl(server.port), { maxRetriesPerRequest: 0 })
      try {
        await expect(subscriber.subscribe('other:channel')).rejects.toThrow(/NOPERM/)
      } finally {
        subscriber.disconnect()
      }
      // What the service does use is allowed, under the prefix.
      expect(await ssc.set(`${ACL_PREFIX}probe`, '1', 'PX', 1000)).toBe('OK')
      expect(await ssc.get(`${ACL_PREFIX}probe`)).toBe('1')
      expect(await ssc.info('server')).toContain('redis_version')
      expect(await admin.get('other:key')).toBeNull()
    } finally {
      ssc.disconnect()
    }
  })

  it('with a wrong password: no connection is authenticated, answers come from Postgres, and the password is never logged', async () => {
    const wrong = `wrong-${randomBytes(8).toString('hex')}`
    // A refused AUTH fails at once whatever the connect timeout; a generous one lets a busy machine's attempt get that
    // far (at 200 ms it could time out first, and the log named no WRONGPASS).
    const connectTimeoutMs = 2000
    const t = await start(
      { REDIS_COMMAND_TIMEOUT_MS: '100', REDIS_CONNECT_TIMEOUT_MS: String(connectTimeoutMs), HEALTH_TIMEOUT_MS: '500' },
      `redis://ssc:${wrong}@127.0.0.1:${server.port}`,
    )
    const { token } = await db.insertSession()
    expect((await t.validate(token)).json()).toMatchObject({ valid: true, source: 'postgres' })
    await t.settle()
    expect((await t.validate(token)).json()).toMatchObject({ valid: true, source: 'postgres' })
    const health = (await t.app.inject({ method: 'GET', url: '/health/redis' })).json()
    expect(health).toMatchObject({ status: 'degraded', redis: { connected: false } })
    expect(await admin.keys('*')).toEqual([])
    await eventually(() => /WRONGPASS/.test(t.logs.text()), 5 * connectTimeoutMs, 'WRONGPASS in the log')
    for (const secret of [wrong, acl.passwords.service, acl.passwords.admin, token]) expect(t.logs.text()).not.toContain(secret)
  })

  it('with REDIS_USERNAME/REDIS_PASSWORD instead of credentials in the URL, it logs in as the ACL user', async () => {
    const t = await start(
      { REDIS_USERNAME: 'ssc', REDIS_PASSWORD: acl.passwords.service },
      `redis://nobody:not-this-one@127.0.0.1:${server.port}`,
    )
    const { token } = await db.insertSession()
    await t.validate(token)
    await t.settle()
    expect((await t.validate(token)).json()).toMatchObject({ valid: true, source: 'redis' })
    expect(await denials()).toEqual([])
    expect(t.logs.text()).not.toContain(acl.passwords.service)
  })

  it('with a key prefix the ACL does not grant: nothing is written anywhere, and every answer still comes from Postgres', async () => {
    const t = await start({ REDIS_KEY_PREFIX: 'rogue:', CACHE_WRITE_RETRIES: '0' })
    const { token } = await db.insertSession()
    for (let i = 0; i < 3; i++) {
      expect((await t.validate(token)).json()).toMatchObject({ valid: true, source: 'postgres' })
      await t.settle()
    }
    expect(await admin.keys('*')).toEqual([])
    const refusedKeys = (await denials()).filter(([user, reason]) => user === 'ssc' && reason === 'key')
    expect(refusedKeys.length).toBeGreaterThan(0)
    for (const [, , object] of refusedKeys) expect(object?.startsWith('rogue:'), object).toBe(true)
  })
})
