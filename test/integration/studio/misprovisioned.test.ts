import { afterEach, describe, expect, it } from 'vitest'
import { migrate } from '../../../src/store/migrate.js'
import { applyRuntimeRole } from '../../../src/store/runtime-role.js'
import { startTestApp, type TestApp } from '../../support/app.js'
import { createTestDatabase, type TestDatabase } from '../../support/database.js'
import { eventually } from '../../support/gate.js'
import { studioStatements } from '../../support/studio-statements.js'
import { startTcpProxy, type TcpProxy } from '../../support/tcp-proxy.js'
import { metricValue as metric } from '../../support/metrics.js'

const ready = async (app: TestApp) => (await app.app.inject({ method: 'GET', url: '/health/ready' })).statusCode
const health = async (app: TestApp) => {
  const res = await app.app.inject({ method: 'GET', url: '/health/redis' })
  return { status: res.statusCode, body: res.json() as { status: string; postgres: { access?: { state: string; problems: Array<{ check: string; sqlstate: string | null }> } } } }
}
const asOwner = async (db: TestDatabase, work: (client: import('pg').PoolClient) => Promise<void>) => {
  const client = await db.pool.connect()
  try {
    await work(client)
  } finally {
    client.release()
  }
}
/** The log lines at error level (pino's 50) whose message says how to fix the role. */
const fixLines = (app: TestApp) => app.logs.entries().filter((e) => e.level === 50 && String(e.msg).includes('ops/postgres/runtime-role.sql'))

// A role that cannot do the service's work must never answer: not ready, a 500 with its own code, one error line
// that names what is missing and the script that grants it, an alert's metric; and it heals once an operator fixes it.
describe('when the service role is misprovisioned', () => {
  let db: TestDatabase | undefined
  let app: TestApp | undefined
  let proxy: TcpProxy | undefined
  afterEach(async () => {
    await app?.close()
    await proxy?.close()
    await db?.drop()
    app = undefined
    proxy = undefined
    db = undefined
  })

  it('with only SELECT on the two tables under the Studio RLS: not ready, a live session is a 500 SESSION_STORE_MISCONFIGURED (never valid:false), then healed by the role script', async () => {
    db = await createTestDatabase(undefined, { shape: 'studio', role: 'bare' })
    const { token } = await studioStatements(db).signin(await db.insertUser())
    app = await startTestApp({ db, env: { DATABASE_ACCESS_RECHECK_MS: '500' } })

    expect(await ready(app)).toBe(503)
    const h = await health(app)
    expect(h.status).toBe(503)
    expect(h.body.status).toBe('unhealthy')
    expect(h.body.postgres.access?.state).toBe('misconfigured')
    const checks = h.body.postgres.access!.problems.map((p) => p.check)
    expect(checks).toEqual(
      expect.arrayContaining([
        `see every row of ${db.schema}.users (row-level security)`,
        `see every row of ${db.schema}.user_sessions (row-level security)`,
        'read the revocation outbox (SELECT)',
        'revoke a session (UPDATE revoked_at)',
      ]),
    )
    expect(h.body.postgres.access!.problems.find((p) => p.check === 'revoke a session (UPDATE revoked_at)')?.sqlstate).toBe('42501')

    const res = await app.validate(token)
    expect(res.statusCode).toBe(500)
    expect(res.json().code).toBe('SESSION_STORE_MISCONFIGURED')
    expect(res.headers['retry-after']).toBeUndefined()
    expect(await metric(app.app, 'session_store_misconfigured')).toBe(1)
    const lines = fixLines(app)
    expect(lines).toHaveLength(1)
    expect(String(lines[0]!.fix)).toContain(`-v role=${db.role} -v schema=${db.schema}`)

    await asOwner(db, (client) => applyRuntimeRole(client, db!.role!, db!.schema))
    await eventually(async () => (await ready(app!)) === 200, 5000, 'ready once the role is granted')
    expect((await app.validate(token)).json()).toMatchObject({ valid: true })
    expect(await metric(app.app, 'session_store_misconfigured')).toBe(0)
    expect(fixLines(app)).toHaveLength(1)
  })

  it("on the Studio's schema without migration 003: not ready, the missing column named (42703); npm run migrate heals it and revoke then works", async () => {
    db = await createTestDatabase(undefined, { shape: 'studio', role: 'runtime' })
    const studio = studioStatements(db)
    const { token, sessionId } = await studio.signin(await db.insertUser())
    await db.query('ALTER TABLE $schema.user_sessions DROP COLUMN updated_at')
    // The fixture reproduces the Studio's own bug: its refresh fails the same way.
    await expect(studio.refresh(sessionId)).rejects.toMatchObject({ code: '42703' })
    app = await startTestApp({ db, env: { DATABASE_ACCESS_RECHECK_MS: '500' } })

    expect(await ready(app)).toBe(503)
    const problems = (await health(app)).body.postgres.access!.problems
    expect(problems).toEqual([expect.objectContaining({ check: expect.stringContaining('its triggers included'), sqlstate: '42703' })])

    await asOwner(db, (client) => migrate(client, db!.schema))
    await eventually(async () => (await ready(app!)) === 200, 5000, 'ready once migrated')
    const res = await app.invalidate({ sessionId, revoke: true })
    expect(res.statusCode).toBe(200)
    expect((await db.sessionRow(sessionId))?.revoked_at).toBeInstanceOf(Date)
    expect((await app.validate(token)).json()).toEqual({ valid: false, reason: 'revoked' })
    await studio.refresh((await studio.signin(await db.insertUser())).sessionId)
  })

  it('a grant revoked at run time: the revoke is a 500 SESSION_STORE_MISCONFIGURED without Retry-After, logged with its SQLSTATE and counted, and the instance stops being ready', async () => {
    db = await createTestDatabase(undefined, { shape: 'studio', role: 'runtime' })
    const { sessionId } = await studioStatements(db).signin(await db.insertUser())
    app = await startTestApp({ db, env: { DATABASE_ACCESS_RECHECK_MS: '500' } })
    expect(await ready(app)).toBe(200)

    await db.query(`REVOKE UPDATE (revoked_at) ON $schema.user_sessions FROM "${db.role}"`)
    const res = await app.invalidate({ sessionId, revoke: true })
    expect(res.statusCode).toBe(500)
    expect(res.json().code).toBe('SESSION_STORE_MISCONFIGURED')
    expect(res.headers['retry-after']).toBeUndefined()
    expect((await db.sessionRow(sessionId))?.revoked_at).toBeNull()
    expect(await metric(app.app, 'postgres_query_errors_total', { query: 'revoke_by_session', kind: 'permanent', sqlstate: '42501' })).toBe(1)
    const logged = app.logs.entries().find((e) => e.level === 50 && e.query === 'revoke_by_session')
    expect(logged).toMatchObject({ sqlstate: '42501', fix: 'ops/postgres/runtime-role.sql' })
    await eventually(async () => (await ready(app!)) === 503, 5000, 'not ready after the permanent failure')

    await asOwner(db, (client) => applyRuntimeRole(client, db!.role!, db!.schema))
    await eventually(async () => (await ready(app!)) === 200, 5000, 'ready again once re-granted')
    expect((await app.invalidate({ sessionId, revoke: true })).statusCode).toBe(200)
  })

  it('a policy dropped while Postgres is away is found when Postgres comes back, not by the timer', async () => {
    db = await createTestDatabase(undefined, { shape: 'studio', role: 'runtime' })
    const { token } = await studioStatements(db).signin(await db.insertUser())
    const url = new URL(db.serviceUrl)
    proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port || 5432) })
    url.host = `127.0.0.1:${proxy.port}`
    // The timer cannot be what finds it: it only runs while access is unproven, and its period is far away.
    app = await startTestApp({
      db,
      env: { DATABASE_URL: url.toString(), DATABASE_ACCESS_RECHECK_MS: '600000', DATABASE_CONNECT_TIMEOUT_MS: '300', DATABASE_STATEMENT_TIMEOUT_MS: '300' },
    })
    expect(app.app.internals.postgres.access.state).toBe('ok')

    proxy.blackhole('refuse')
    // A restore onto another server with the Studio's policies but not the service's, say.
    await db.query(`DROP POLICY "session_cache_read_${db.role}" ON $schema.user_sessions`)
    const away = await app.validate(token)
    expect(away.statusCode).toBe(503)
    expect(away.json().code).toBe('SESSION_STORE_UNAVAILABLE')
    proxy.resume()

    await eventually(() => app!.app.internals.postgres.access.state === 'misconfigured', 5000, 'found misconfigured after the reconnect')
    const res = await app.validate(token)
    expect(res.statusCode).toBe(500)
    expect(res.json().code).toBe('SESSION_STORE_MISCONFIGURED')
    expect(await ready(app)).toBe(503)
  })
})
