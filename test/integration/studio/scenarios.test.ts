import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApp, type TestApp } from '../../support/app.js'
import { createTestDatabase, type TestDatabase } from '../../support/database.js'
import { studioStatements } from '../../support/studio-statements.js'
import { metricValue as metric } from '../../support/metrics.js'

const outboxRows = async (db: TestDatabase) => Number((await db.query('SELECT count(*) AS n FROM $schema.session_cache_outbox')).rows[0].n)

// The Studio's own schema and statements, with the service connected as the owner and as the role that
// ops/postgres/runtime-role.sql provisions: every answer is the same, and so is what is left in Postgres.
describe.each(['owner', 'runtime'] as const)("on the Studio's schema, the service connected as the %s role", (role) => {
  let db: TestDatabase
  let app: TestApp
  let studio: ReturnType<typeof studioStatements>

  beforeAll(async () => {
    db = await createTestDatabase(undefined, { shape: 'studio', role })
    studio = studioStatements(db)
    app = await startTestApp({ db, env: { NEGATIVE_CACHE_MIN_MISSES: '1' } })
  })
  afterAll(async () => {
    await app?.close()
    await db?.drop()
  })

  it('the role is proven able to do its work, and the instance is ready', async () => {
    expect(app.app.internals.postgres.access.state).toBe('ok')
    expect((await app.app.inject({ method: 'GET', url: '/health/ready' })).statusCode).toBe(200)
    if (role === 'runtime') expect(db.serviceUrl).toContain(`${db.role}@`)
  })

  it('a session the Studio signed in is valid, first from Postgres, then from Redis, with its user', async () => {
    const userId = await db.insertUser({ firstName: 'Grace', lastName: 'Hopper' })
    const { token, sessionId } = await studio.signin(userId)
    const first = await app.validate(token)
    expect(first.statusCode).toBe(200)
    expect(first.json()).toMatchObject({ valid: true, source: 'postgres', session: { id: sessionId, userId }, user: { id: userId, firstName: 'Grace' } })
    await app.settle()
    expect((await app.validate(token)).json()).toMatchObject({ valid: true, source: 'redis', session: { id: sessionId } })
  })

  it.each([
    ['expired', async () => (await db.insertSession({ expiresInMs: -60_000 })).token],
    ['revoked', async () => (await db.insertSession({ revoked: true })).token],
    ['user_banned', async () => (await db.insertSession({ userId: await db.insertUser({ bannedUntil: new Date(Date.now() + 86_400_000) }) })).token],
    ['user_deleted', async () => (await db.insertSession({ userId: await db.insertUser({ deletedAt: new Date() }) })).token],
    ['not_found', async () => 'a-token-the-studio-never-issued'],
  ])('a %s session is a 200 with valid:false and that reason', async (reason, make) => {
    const res = await app.validate(await make())
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ valid: false, reason })
  })

  it('/invalidate with revoke answers 200, sets revoked_at through the Studio trigger, and the session is then revoked', async () => {
    const { token, sessionId } = await studio.signin(await db.insertUser())
    await app.validate(token)
    await app.settle()
    const res = await app.invalidate({ sessionId, revoke: true })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toMatchObject({ revoked: 1 })
    const row = await db.sessionRow(sessionId)
    expect(row?.revoked_at).toBeInstanceOf(Date)
    // The Studio's BEFORE UPDATE trigger ran (it sets updated_at, the column migration 003 added for it).
    const { rows } = await db.query('SELECT updated_at FROM $schema.user_sessions WHERE id = $1', [sessionId])
    expect(rows[0].updated_at).toBeInstanceOf(Date)
    expect((await app.validate(token)).json()).toEqual({ valid: false, reason: 'revoked' })
  })

  it("the Studio's refresh succeeds after the migration: the old token is not_found, the new one valid", async () => {
    const { token, sessionId } = await studio.signin(await db.insertUser())
    await app.validate(token)
    await app.settle()
    const fresh = await studio.refresh(sessionId)
    // The old token's entry is removed by the outbox (token changed); Postgres no longer knows its hash.
    await expect.poll(async () => (await app.validate(token)).json(), { timeout: 2000, interval: 20 }).toEqual({ valid: false, reason: 'not_found' })
    expect((await app.validate(fresh)).json()).toMatchObject({ valid: true, session: { id: sessionId } })
  })

  it("the Studio's cleanup of expired sessions deletes them without an outbox row; their tokens are then not_found", async () => {
    const { token } = await db.insertSession({ expiresInMs: -60_000 })
    expect((await app.validate(token)).json()).toEqual({ valid: false, reason: 'expired' })
    await app.settle()
    const before = await outboxRows(db)
    const { rowCount } = await studio.cleanupExpired()
    expect(rowCount).toBeGreaterThanOrEqual(1)
    expect(await outboxRows(db)).toBe(before)
    // The negative entry in Redis still says expired until it expires: also not valid, and never valid again.
    const after = (await app.validate(token)).json()
    expect(after.valid).toBe(false)
    expect(['expired', 'not_found']).toContain(after.reason)
  })

  it('a session in use gets last_activity_at written once per interval, in one batch, with no outbox row', async () => {
    const userId = await db.insertUser()
    const sessions = [await studio.signin(userId), await studio.signin(userId), await studio.signin(userId)]
    const hourAgo = new Date(Date.now() - 3_600_000)
    for (const s of sessions) {
      await db.query('UPDATE $schema.user_sessions SET last_activity_at = $1 WHERE id = $2', [hourAgo, s.sessionId])
    }
    const outboxBefore = await outboxRows(db)
    const writtenBefore = await metric(app.app, 'session_activity_total', { outcome: 'written' })
    const errorsBefore = await metric(app.app, 'postgres_query_errors_total')
    // From Postgres, then from Redis: both count as use.
    for (const s of sessions) await app.validate(s.token)
    await app.settle()
    for (const s of sessions) expect((await app.validate(s.token)).json()).toMatchObject({ valid: true, source: 'redis' })
    const usedAt = Date.now()
    await app.app.internals.postgres.activity!.flush()
    for (const s of sessions) {
      const at = (await db.sessionRow(s.sessionId))!.last_activity_at!.getTime()
      expect(at).toBeGreaterThan(hourAgo.getTime() + 3_500_000)
      expect(at).toBeLessThanOrEqual(usedAt)
    }
    expect(await metric(app.app, 'session_activity_total', { outcome: 'written' })).toBe(writtenBefore + 3)
    expect(await outboxRows(db)).toBe(outboxBefore)
    expect(await metric(app.app, 'postgres_query_errors_total')).toBe(errorsBefore)

    // Used again within the interval: nothing more is queued or written.
    const queued = await metric(app.app, 'session_activity_total', { outcome: 'queued' })
    for (const s of sessions) await app.validate(s.token)
    await app.app.internals.postgres.activity!.flush()
    expect(await metric(app.app, 'session_activity_total', { outcome: 'queued' })).toBe(queued)
    expect(await metric(app.app, 'session_activity_total', { outcome: 'written' })).toBe(writtenBefore + 3)
  })
})

describe('last_activity_at from an L1 answer, and with recording off', () => {
  let db: TestDatabase

  beforeAll(async () => {
    db = await createTestDatabase(undefined, { shape: 'studio', role: 'runtime' })
  })
  afterAll(async () => {
    await db?.drop()
  })

  it('an answer from L1 records the use like any other', async () => {
    const app = await startTestApp({ db, env: { L1_CACHE_TTL_MS: '60000' } })
    try {
      const { token, sessionId } = await studioStatements(db).signin(await db.insertUser())
      await app.validate(token)
      await app.app.internals.postgres.activity!.flush()
      const old = new Date(Date.now() - 3_600_000)
      await db.query('UPDATE $schema.user_sessions SET last_activity_at = $1 WHERE id = $2', [old, sessionId])
      // A new instance-level interval: forget that this session was just recorded.
      const app2 = await startTestApp({ db, env: { L1_CACHE_TTL_MS: '60000', REDIS_KEY_PREFIX: app.prefix } })
      try {
        await app2.validate(token)
        await app2.settle()
        expect((await app2.validate(token)).json()).toMatchObject({ valid: true, source: 'l1' })
        await app2.app.internals.postgres.activity!.flush()
        expect((await db.sessionRow(sessionId))!.last_activity_at!.getTime()).toBeGreaterThan(old.getTime() + 3_500_000)
      } finally {
        await app2.close()
      }
    } finally {
      await app.close()
    }
  })

  it('SESSION_ACTIVITY_INTERVAL_SECONDS=0 writes nothing', async () => {
    const app = await startTestApp({ db, env: { SESSION_ACTIVITY_INTERVAL_SECONDS: '0' } })
    try {
      expect(app.app.internals.postgres.activity).toBeUndefined()
      const { token, sessionId } = await studioStatements(db).signin(await db.insertUser())
      const old = new Date(Date.now() - 3_600_000)
      await db.query('UPDATE $schema.user_sessions SET last_activity_at = $1 WHERE id = $2', [old, sessionId])
      expect((await app.validate(token)).json()).toMatchObject({ valid: true })
      await app.settle()
      expect((await db.sessionRow(sessionId))!.last_activity_at!.getTime()).toBe(old.getTime())
      expect(await metric(app.app, 'session_activity_total', { outcome: 'queued' })).toBe(0)
    } finally {
      await app.close()
    }
  })
})
