import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import type { WarmSource } from '../../src/domain/warm-source.js'
import { hashToken } from '../../src/domain/token.js'
import { startTestApp, type TestApp } from '../support/app.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { eventually, gate } from '../support/gate.js'
import { startRedisServer, type RedisServer } from '../support/redis-server.js'

/**
 * Cache warming (issue 18, part 3) against the real Postgres and Redis: which sessions a cold cache is filled with,
 * that a session revoked while warming is never written back, one instance at a time, a bounded rate, and a restart
 * that lost the data warmed again.
 */
let dbs: TestDatabase[] = []
let apps: TestApp[] = []
let servers: RedisServer[] = []
afterEach(async () => {
  for (const app of apps) await app.close()
  for (const server of servers) await server.close()
  for (const db of dbs) await db.drop()
  apps = []
  servers = []
  dbs = []
})

async function database(): Promise<TestDatabase> {
  const db = await createTestDatabase()
  dbs.push(db)
  return db
}

async function start(db: TestDatabase, env: Record<string, string>, more: Parameters<typeof startTestApp>[0] = { db }) {
  const app = await startTestApp({ ...more, db, env: { CACHE_WARM_SESSIONS: '1000', ...env } })
  apps.push(app)
  return app
}

function metric(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(labels ? `${name}{${labels}} ` : `${name} `))
  if (!line) throw new Error(`metric ${name}{${labels}} not found`)
  return Number(line.split(' ').at(-1))
}
async function metrics(app: TestApp): Promise<string> {
  return (await app.app.inject({ method: 'GET', url: '/metrics' })).body
}
async function runsDone(app: TestApp): Promise<number> {
  return metric(await metrics(app), 'cache_warm_runs_total', 'outcome="done"')
}

/** A session whose last activity was `agoMs` ago (null: never active). */
async function session(db: TestDatabase, agoMs: number | null, options: Parameters<TestDatabase['insertSession']>[0] = {}) {
  const s = await db.insertSession(options)
  await db.query('UPDATE $schema.user_sessions SET last_activity_at = $2 WHERE id = $1', [s.sessionId, agoMs === null ? null : new Date(Date.now() - agoMs)])
  return s
}

describe('cache warming', () => {
  it('a cold start fills the CACHE_WARM_SESSIONS most recently active live sessions, and marks the cache warm', async () => {
    const db = await database()
    // Live sessions, most recent first: recent[0] was active 1 s ago, recent[5] 6 s ago; `never` was never active.
    const recent = []
    for (let i = 0; i < 6; i++) recent.push(await session(db, (i + 1) * 1000))
    const never = await session(db, null)
    // Not live, however recent: revoked, expired, banned, deleted.
    const revoked = await session(db, 10, { revoked: true })
    const expired = await session(db, 10, { expiresInMs: -1000 })
    const banned = await session(db, 10, { userId: await db.insertUser({ bannedUntil: new Date(Date.now() + 3_600_000) }) })
    const deleted = await session(db, 10, { userId: await db.insertUser({ deletedAt: new Date() }) })

    const app = await start(db, { CACHE_WARM_SESSIONS: '4', CACHE_WARM_BATCH_SIZE: '3' })
    await eventually(async () => (await runsDone(app)) === 1, 10_000, 'a warming run done')
    const keys = Object.keys(await app.dump())
    const cached = (s: { token: string }) => keys.includes(app.keys.entry(hashToken(s.token)))
    expect(recent.map(cached)).toEqual([true, true, true, true, false, false])
    for (const s of [never, revoked, expired, banned, deleted]) expect(cached(s)).toBe(false)
    expect(keys).toContain(`${app.prefix}warm:marker`)
    expect(keys).not.toContain(`${app.prefix}warm:lock`)
    const text = await metrics(app)
    expect(metric(text, 'cache_warm_sessions_total', 'outcome="written"')).toBe(4)
    expect(metric(text, 'cache_warm_progress_ratio')).toBe(1)
    expect(app.logs.text()).toContain('cache is cold: warming the most recently active sessions from Postgres')
    expect(app.logs.entries().filter((e) => e.msg === 'cache warming: progress').map((e) => e.done)).toEqual([3, 4])
    // The first request for a warmed session is a hit; the answer is the session's own.
    expect((await app.validate(recent[0]!.token)).json()).toMatchObject({ valid: true, source: 'redis', session: { id: recent[0]!.sessionId } })
    expect((await app.validate(recent[5]!.token)).json()).toMatchObject({ valid: true, source: 'postgres' })
    // Nothing of a token in what warming wrote to the logs.
    for (const s of recent) expect(app.logs.text()).not.toContain(s.token)
  })

  it('a session revoked while warming (by /invalidate, or in SQL through the outbox) is never written back', async () => {
    const db = await database()
    const viaApi = await session(db, 1000)
    const viaSql = await session(db, 2000)
    const kept = await session(db, 3000)
    const read = gate()
    const release = gate()
    // The batch is read from Postgres while all three are live, then held until both revocations have landed.
    const wrap = (source: WarmSource): WarmSource => ({
      recentlyActive: (limit) => source.recentlyActive(limit),
      async records(ids) {
        const rows = await source.records(ids)
        read.open()
        await release.wait()
        return rows
      },
    })
    const app = await start(db, {}, { db, overrides: { wrapWarmSource: wrap } })
    try {
      await read.wait()
      expect((await app.invalidate({ sessionId: viaApi.sessionId, revoke: true })).statusCode).toBe(200)
      await db.query('UPDATE $schema.user_sessions SET revoked_at = now() WHERE id = $1', [viaSql.sessionId])
      // The outbox row of the SQL revocation has reached this instance's cache (its tombstones are written).
      const { rows } = await db.query('SELECT max(id)::int AS id FROM $schema.session_cache_outbox')
      const sqlRow = Number(rows[0].id)
      await eventually(() => (app.app.internals.revocation.status().lastAppliedId ?? 0) >= sqlRow, 10_000, 'the SQL revocation applied')
    } finally {
      // Never left held: closing the app waits for the warming run.
      release.open()
    }
    await eventually(async () => (await runsDone(app)) === 1, 10_000, 'the warming run done')

    const text = await metrics(app)
    expect(metric(text, 'cache_warm_sessions_total', 'outcome="written"')).toBe(1)
    expect(metric(text, 'cache_warm_sessions_total', 'outcome="tombstoned"')).toBe(2)
    const keys = Object.keys(await app.dump())
    expect(keys).toContain(app.keys.entry(hashToken(kept.token)))
    for (const s of [viaApi, viaSql]) {
      expect(keys).not.toContain(app.keys.entry(hashToken(s.token)))
      expect((await app.validate(s.token)).json()).toEqual({ valid: false, reason: 'revoked' })
    }
  })

  it('two instances starting on one cold cache: one warms, the other does not', async () => {
    const db = await database()
    for (let i = 0; i < 5; i++) await session(db, i * 1000)
    const prefix = `ssc-warm-${randomBytes(4).toString('hex')}:`
    // Slow enough (10 fills/s) that the second instance's start-up check falls inside the first one's run.
    const env = { REDIS_KEY_PREFIX: prefix, CACHE_WARM_RATE_PER_SECOND: '10' }
    const [a, b] = await Promise.all([start(db, env), start(db, env)])
    await eventually(async () => (await runsDone(a)) + (await runsDone(b)) === 1, 10_000, 'one run done')
    // A check later (as the periodic one) finds the marker: still one.
    await Promise.all([a.app.internals.warming.check('test'), b.app.internals.warming.check('test')])
    expect((await runsDone(a)) + (await runsDone(b))).toBe(1)
    const text = (await metrics(a)) + (await metrics(b))
    expect([...text.matchAll(/^cache_warm_sessions_total\{outcome="written"\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0)).toBe(5)
  })

  it('fills at most CACHE_WARM_RATE_PER_SECOND', async () => {
    const db = await database()
    const count = 12
    for (let i = 0; i < count; i++) await session(db, i * 1000)
    const app = await start(db, { CACHE_WARM_RATE_PER_SECOND: '20', CACHE_WARM_CONCURRENCY: '8', CACHE_WARM_BATCH_SIZE: '5' })
    await eventually(async () => (await runsDone(app)) === 1, 10_000, 'the warming run done')
    const text = await metrics(app)
    expect(metric(text, 'cache_warm_sessions_total', 'outcome="written"')).toBe(count)
    const rate = app.config.cache.warm.ratePerSecond
    // The first fill goes at once, each next one 1/rate later.
    expect(metric(text, 'cache_warm_last_duration_seconds')).toBeGreaterThanOrEqual((count - 1) / rate - 0.01)
  })

  it('a Redis restart that lost the data is found cold and warmed again', async () => {
    const server = await startRedisServer()
    servers.push(server)
    const db = await database()
    const s = await session(db, 1000)
    const app = await start(db, {}, { db, redisUrl: server.url })
    app.redis.on('error', () => undefined)
    await eventually(async () => (await runsDone(app)) === 1, 10_000, 'the first run done')
    await server.restart()
    // The restarted node is empty: the reconnect is a signal, the check finds no marker, and warming runs again.
    await eventually(async () => (await runsDone(app)) === 2, 10_000, 'warmed again after the restart')
    expect(await app.redis.exists(app.keys.entry(hashToken(s.token)))).toBe(1)
    expect((await app.validate(s.token)).json()).toMatchObject({ valid: true, source: 'redis' })
  })
})
