import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApp } from '../support/app.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js'
import { metricValue as metric } from '../support/metrics.js'

const HOUR_AGO = () => new Date(Date.now() - 3_600_000)

// last_activity_at is a convenience: it must never slow or fail a validation, nor grow without bound.
describe('last_activity_at recording', () => {
  let db: TestDatabase
  beforeAll(async () => {
    db = await createTestDatabase()
  })
  afterAll(async () => {
    await db?.drop()
  })

  it('when Postgres is slow, uses past the bound and the stuck batch are dropped and counted, and cached answers do not wait', async () => {
    const url = new URL(db.serviceUrl)
    const proxy: TcpProxy = await startTcpProxy({ host: url.hostname, port: Number(url.port || 5432) })
    url.host = `127.0.0.1:${proxy.port}`
    const app = await startTestApp({
      db,
      env: { DATABASE_URL: url.toString(), SESSION_ACTIVITY_MAX_PENDING: '2', DATABASE_STATEMENT_TIMEOUT_MS: '300' },
    })
    try {
      const sessions = await Promise.all(Array.from({ length: 5 }, () => db.insertSession()))
      for (const s of sessions) await app.validate(s.token)
      await app.settle()
      // What those first validations queued is written now, so that what follows starts from nothing pending.
      await app.app.internals.postgres.activity!.flush()
      const recorder = app.app.internals.postgres.activity!
      expect(recorder.pending).toBe(0)
      // A second instance-level interval for these sessions: forget them by starting a new app on the same cache.
      const slow = await startTestApp({
        db,
        env: { DATABASE_URL: url.toString(), REDIS_KEY_PREFIX: app.prefix, SESSION_ACTIVITY_MAX_PENDING: '2', DATABASE_STATEMENT_TIMEOUT_MS: '300' },
      })
      try {
        for (const s of sessions) await db.query('UPDATE $schema.user_sessions SET last_activity_at = $1 WHERE id = $2', [HOUR_AGO(), s.sessionId])
        proxy.setDelay(2000)
        const started = performance.now()
        const answers = await Promise.all(sessions.map((s) => slow.validate(s.token)))
        const tookMs = performance.now() - started
        for (const a of answers) expect(a.json()).toMatchObject({ valid: true, source: 'redis' })
        // Nothing on the answer's path went to Postgres: well inside one proxied round trip.
        expect(tookMs).toBeLessThan(2000)
        expect(await metric(slow.app, 'session_activity_total', { outcome: 'queued' })).toBe(2)
        expect(await metric(slow.app, 'session_activity_total', { outcome: 'dropped' })).toBe(3)
        expect(slow.app.internals.postgres.activity!.pending).toBe(2)
        // The flush's statement outlives its timeout through the slowed proxy: its batch is dropped, not retried.
        await slow.app.internals.postgres.activity!.flush()
        expect(await metric(slow.app, 'session_activity_total', { outcome: 'dropped' })).toBe(5)
        expect(await metric(slow.app, 'session_activity_total', { outcome: 'written' })).toBe(0)
        expect(slow.app.internals.postgres.activity!.pending).toBe(0)
        proxy.resume()
        for (const s of sessions) expect((await db.sessionRow(s.sessionId))!.last_activity_at!.getTime()).toBeLessThan(Date.now() - 3_500_000)
      } finally {
        proxy.resume()
        await slow.close()
      }
    } finally {
      await app.close()
      await proxy.close()
    }
  })

  it('what is pending when the instance closes is written before it exits', async () => {
    const app = await startTestApp({ db })
    const s = await db.insertSession()
    await db.query('UPDATE $schema.user_sessions SET last_activity_at = $1 WHERE id = $2', [HOUR_AGO(), s.sessionId])
    expect((await app.validate(s.token)).json()).toMatchObject({ valid: true })
    expect(app.app.internals.postgres.activity!.pending).toBe(1)
    await app.close()
    expect((await db.sessionRow(s.sessionId))!.last_activity_at!.getTime()).toBeGreaterThan(Date.now() - 60_000)
  })

  it('two instances recording the same session write its row once per interval between them', async () => {
    const a = await startTestApp({ db })
    const b = await startTestApp({ db, env: { REDIS_KEY_PREFIX: a.prefix } })
    try {
      const s = await db.insertSession()
      await db.query('UPDATE $schema.user_sessions SET last_activity_at = $1 WHERE id = $2', [HOUR_AGO(), s.sessionId])
      await a.validate(s.token)
      await a.settle()
      await b.validate(s.token)
      await a.app.internals.postgres.activity!.flush()
      const first = (await db.sessionRow(s.sessionId))!.last_activity_at!.getTime()
      await b.app.internals.postgres.activity!.flush()
      expect(await metric(a.app, 'session_activity_total', { outcome: 'written' })).toBe(1)
      expect(await metric(b.app, 'session_activity_total', { outcome: 'written' })).toBe(0)
      expect((await db.sessionRow(s.sessionId))!.last_activity_at!.getTime()).toBe(first)
    } finally {
      await a.close()
      await b.close()
    }
  })
})
