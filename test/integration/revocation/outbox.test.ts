import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { hashToken } from '../../../src/domain/token.js'
import { migrate } from '../../../src/store/migrate.js'
import { outboxChannel } from '../../../src/store/outbox-channel.js'
import { createPgOutbox } from '../../../src/store/pg-outbox.js'
import { startTestApp, type TestApp } from '../../support/app.js'
import { createTestDatabase, type TestDatabase } from '../../support/database.js'
import { TEST_DATABASE_URL } from '../../support/env.js'
import { eventually } from '../../support/gate.js'
import { startTcpProxy } from '../../support/tcp-proxy.js'

let db: TestDatabase
const apps: TestApp[] = []

beforeAll(async () => {
  db = await createTestDatabase()
})
afterAll(async () => {
  await db.drop()
})
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close()
})

async function outboxRows(): Promise<Array<{ id: string; event: string; token_hashes: string[]; session_ids: string[]; user_ids: string[] }>> {
  const { rows } = await db.query('SELECT id, event, token_hashes, session_ids, user_ids FROM $schema.session_cache_outbox ORDER BY id')
  return rows
}

/** Counts NOTIFYs on the schema's channel from a connection of the test's own. */
async function listen() {
  const client = new pg.Client({ connectionString: db.url })
  await client.connect()
  const heard: string[] = []
  client.on('notification', (m) => {
    if (m.payload !== undefined) heard.push(m.payload)
  })
  await client.query(`LISTEN "${outboxChannel(db.schema)}"`)
  return {
    heard,
    /** A round trip, so every NOTIFY committed before it has arrived. */
    async sync() {
      await client.query('SELECT 1')
    },
    close: () => client.end(),
  }
}

describe('the triggers (migration 002)', () => {
  it('routine writes (activity, a new session, a refresh, a profile edit, an unban, a ban in the past) write nothing and notify nobody', async () => {
    const listener = await listen()
    try {
      const before = (await outboxRows()).length
      const s = await db.insertSession()
      await db.query('UPDATE $schema.user_sessions SET last_activity_at = now() WHERE id = $1', [s.sessionId])
      await db.query('UPDATE $schema.user_sessions SET refresh_token = $2, last_activity_at = now() WHERE id = $1', [s.sessionId, randomBytes(8).toString('hex')])
      await db.query('UPDATE $schema.user_sessions SET expires_at = expires_at + interval \'1 hour\' WHERE id = $1', [s.sessionId])
      await db.query("UPDATE $schema.users SET first_name = 'Grace' WHERE id = $1", [s.userId])
      await db.query("UPDATE $schema.users SET banned_until = now() - interval '1 day' WHERE id = $1", [s.userId])
      await db.query('UPDATE $schema.users SET banned_until = NULL WHERE id = $1', [s.userId])
      await listener.sync()
      expect((await outboxRows()).length).toBe(before)
      expect(listener.heard).toEqual([])
    } finally {
      await listener.close()
    }
  })

  it('a bulk cleanup of expired sessions writes no outbox row; a bulk delete of live ones writes one row and one NOTIFY', async () => {
    const userId = await db.insertUser()
    for (let i = 0; i < 300; i++) await db.insertSession({ userId, expiresInMs: -3_600_000 })
    const live = await Promise.all(Array.from({ length: 40 }, () => db.insertSession({ userId })))
    const listener = await listen()
    try {
      const before = (await outboxRows()).length
      const expired = await db.query('DELETE FROM $schema.user_sessions WHERE user_id = $1 AND expires_at < now()', [userId])
      expect(expired.rowCount).toBe(300)
      await listener.sync()
      expect((await outboxRows()).length).toBe(before)
      expect(listener.heard).toEqual([])

      await db.query('DELETE FROM $schema.user_sessions WHERE user_id = $1', [userId])
      await listener.sync()
      const rows = (await outboxRows()).slice(before)
      expect(rows).toHaveLength(1)
      expect(rows[0]).toMatchObject({ event: 'session_deleted' })
      expect([...rows[0]!.token_hashes].sort()).toEqual(live.map((s) => hashToken(s.token)).sort())
      expect(listener.heard).toEqual([rows[0]!.id])
    } finally {
      await listener.close()
    }
  })

  it('a ban names the user and the hashes of their live sessions only; a revoke, a delete, an earlier expiry each name their session', async () => {
    const userId = await db.insertUser()
    const [a, b] = [await db.insertSession({ userId }), await db.insertSession({ userId })]
    await db.insertSession({ userId, expiresInMs: -3_600_000 })
    await db.insertSession({ userId, revoked: true })
    const before = (await outboxRows()).length
    await db.query("UPDATE $schema.users SET banned_until = now() + interval '1 day' WHERE id = $1", [userId])
    await db.query('UPDATE $schema.user_sessions SET revoked_at = now() WHERE id = $1', [a.sessionId])
    await db.query("UPDATE $schema.user_sessions SET expires_at = now() - interval '1 second' WHERE id = $1", [b.sessionId])
    const rows = (await outboxRows()).slice(before)
    expect(rows.map((r) => r.event)).toEqual(['user_banned', 'session_revoked', 'session_expired'])
    expect([...rows[0]!.token_hashes].sort()).toEqual([hashToken(a.token), hashToken(b.token)].sort())
    expect(rows[0]!.user_ids).toEqual([userId])
    expect(rows[1]).toMatchObject({ token_hashes: [hashToken(a.token)], session_ids: [a.sessionId] })
    expect(rows[2]).toMatchObject({ token_hashes: [hashToken(b.token)], session_ids: [b.sessionId] })
  })
})

describe('the migration on an existing Studio database', () => {
  it('adds the outbox, the triggers and revoked_at, keeps every row, and a second run changes nothing', async () => {
    const schema = `ssc_studio_${randomBytes(4).toString('hex')}`
    const pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 2 })
    const s = `"${schema}"`
    try {
      // The Studio's tables as they exist before this service: no revoked_at, rows already there.
      await pool.query(`CREATE SCHEMA ${s};
        CREATE TABLE ${s}.users (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email text NOT NULL UNIQUE, first_name text,
          last_name text, username text, banned_until timestamptz, deleted_at timestamptz, created_at timestamptz NOT NULL DEFAULT now());
        CREATE TABLE ${s}.user_sessions (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), user_id uuid NOT NULL REFERENCES ${s}.users(id) ON DELETE CASCADE,
          token text NOT NULL UNIQUE, refresh_token text UNIQUE, ip_address inet, user_agent text, expires_at timestamptz NOT NULL,
          last_activity_at timestamptz DEFAULT now(), created_at timestamptz NOT NULL DEFAULT now());
        INSERT INTO ${s}.users (email) SELECT 'u' || g || '@example.test' FROM generate_series(1, 50) g;
        INSERT INTO ${s}.user_sessions (user_id, token, expires_at)
          SELECT id, md5(random()::text || id::text), now() + interval '1 day' FROM ${s}.users;`)
      const snapshot = async () => (await pool.query(`SELECT id, token, expires_at FROM ${s}.user_sessions ORDER BY id`)).rows
      const before = await snapshot()
      for (let run = 0; run < 2; run++) {
        const client = await pool.connect()
        try {
          await migrate(client, schema)
        } finally {
          client.release()
        }
      }
      expect(await snapshot()).toEqual(before)
      const { rows: triggers } = await pool.query(
        `SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND NOT t.tgisinternal ORDER BY tgname`,
        [schema],
      )
      expect(triggers.map((r) => r.tgname)).toEqual([
        'session_cache_session_ended', 'session_cache_sessions_deleted', 'session_cache_user_ended', 'session_cache_users_deleted',
      ])
      const { rows: revokedAt } = await pool.query(
        `SELECT count(*)::int AS n FROM ${s}.user_sessions WHERE revoked_at IS NULL`,
      )
      expect(revokedAt[0].n).toBe(50)
      expect((await pool.query(`SELECT count(*)::int AS n FROM ${s}.session_cache_outbox`)).rows[0].n).toBe(0)
    } finally {
      await pool.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`)
      await pool.end()
    }
  })
})

describe('pruning', () => {
  it('deletes rows older than the retention in bounded batches and records the highest id it pruned', async () => {
    const outbox = createPgOutbox(db.pool, db.schema, () => undefined)
    for (let i = 0; i < 5; i++) {
      await db.query("INSERT INTO $schema.session_cache_outbox (event, created_at) VALUES ('test', now() - interval '2 hours')")
    }
    await db.query("INSERT INTO $schema.session_cache_outbox (event) VALUES ('test')")
    const { rows } = await db.query("SELECT max(id)::int AS old FROM $schema.session_cache_outbox WHERE created_at < now() - interval '1 hour'")
    const cutoff = Date.now() - 3_600_000
    expect(await outbox.prune(cutoff, 3)).toBe(3)
    expect(await outbox.prune(cutoff, 3)).toBeGreaterThanOrEqual(2)
    expect(await outbox.prune(cutoff, 3)).toBe(0)
    const position = await outbox.position()
    expect(position.prunedThrough).toBe(rows[0].old)
    expect(position.maxId).toBeGreaterThan(rows[0].old)
  })
})

describe('the feed on an instance', () => {
  it('shows in /health/redis and /metrics: listening, the applied position, the lag of what it applied', async () => {
    const t = await startTestApp({ db })
    apps.push(t)
    await eventually(() => t.app.internals.revocation.status().listener === 'listening', 5000, 'listening')
    const s = await db.insertSession()
    await db.query('UPDATE $schema.user_sessions SET revoked_at = now() WHERE id = $1', [s.sessionId])
    const [{ id }] = (await db.query('SELECT max(id)::int AS id FROM $schema.session_cache_outbox')).rows
    await eventually(() => (t.app.internals.revocation.status().lastAppliedId ?? 0) >= id, 2000, 'row applied')
    const health = (await t.app.inject({ method: 'GET', url: '/health/redis' })).json()
    expect(health.revocationFeed).toMatchObject({ state: 'listening', lastAppliedId: id, pendingEvents: 0, distrustedUntil: null })
    expect(health.revocationFeed.lagSeconds).toBeLessThan(1)
    const metrics = (await t.app.inject({ method: 'GET', url: '/metrics' })).body
    expect(metrics).toMatch(/^session_revocation_listener_connected 1$/m)
    expect(metrics).toMatch(new RegExp(`^session_revocation_last_applied_id ${id}$`, 'm'))
    expect(Number(/^session_revocation_lag_seconds_count\{path="notify"\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1)
  })

  it('a revocation committed while no instance ran reaches the cache when one starts (recent rows are replayed)', async () => {
    const env = { REDIS_KEY_PREFIX: `ssc-replay-${randomBytes(4).toString('hex')}:` }
    const first = await startTestApp({ db, env })
    const s = await db.insertSession()
    await first.validate(s.token)
    await first.settle()
    // The instance goes away; its Redis entry stays (app.close, not the harness's close, which deletes the keys).
    await first.app.close()
    first.redis.disconnect()
    await db.query('UPDATE $schema.user_sessions SET revoked_at = now() WHERE id = $1', [s.sessionId])
    const second = await startTestApp({ db, env })
    apps.push(second)
    await eventually(async () => (await second.redis.exists(second.keys.entry(hashToken(s.token)))) === 0, 3000, 'entry removed by replay')
    expect((await second.validate(s.token)).json()).toEqual({ valid: false, reason: 'revoked' })
  })

  it('after a gap (rows pruned before it applied them), it answers from Postgres until every older entry has expired', async () => {
    // The LISTEN connection is refused and the poll is far away: the instance hears nothing until the test lets it.
    const url = new URL(db.url)
    const proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port || 5432) })
    proxy.blackhole('refuse')
    url.host = `127.0.0.1:${proxy.port}`
    try {
      const t = await startTestApp({ db, env: { DATABASE_LISTEN_URL: url.toString(), REVOCATION_POLL_INTERVAL_MS: '60000' } })
      apps.push(t)
      const s = await db.insertSession()
      await t.validate(s.token)
      await t.settle()
      expect((await t.validate(s.token)).json()).toMatchObject({ valid: true, source: 'redis' })
      // Revoked, and the row pruned (by another instance, say) before this one could read it.
      await db.query('UPDATE $schema.user_sessions SET revoked_at = now() WHERE id = $1', [s.sessionId])
      await db.query(`UPDATE $schema.session_cache_outbox_state SET pruned_through = (SELECT max(id) FROM $schema.session_cache_outbox)`)
      await db.query('DELETE FROM $schema.session_cache_outbox')
      // The stale entry is still in Redis: nothing removed it.
      expect((await t.validate(s.token)).json()).toMatchObject({ valid: true, source: 'redis' })
      proxy.resume()
      await eventually(() => !t.app.internals.revocation.feed.trusted(), 5000, 'gap found')
      expect(await t.redis.exists(t.keys.entry(hashToken(s.token)))).toBe(1)
      expect((await t.validate(s.token)).json()).toEqual({ valid: false, reason: 'revoked' })
      const health = (await t.app.inject({ method: 'GET', url: '/health/redis' })).json()
      const { ttlSeconds, tombstoneTtlSeconds } = t.config.cache
      const until = Date.parse(health.revocationFeed.distrustedUntil)
      expect(until - Date.now()).toBeGreaterThan((ttlSeconds + tombstoneTtlSeconds) * 1000)
      expect(health.status).toBe('degraded')
      expect((await t.app.inject({ method: 'GET', url: '/metrics' })).body).toMatch(/^session_revocation_gaps_total 1$/m)
    } finally {
      await proxy.close()
    }
  })
})
