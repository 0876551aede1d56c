import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { SessionCache, SessionStore } from '../../../src/domain/ports.js'
import { hashToken } from '../../../src/domain/token.js'
import { startTestApp, type TestApp } from '../../support/app.js'
import { createTestDatabase, type TestDatabase } from '../../support/database.js'
import { eventually, gate } from '../../support/gate.js'

let db: TestDatabase
let t: TestApp | undefined

beforeAll(async () => {
  db = await createTestDatabase()
})
afterAll(async () => {
  await db.drop()
})
afterEach(async () => {
  await t?.close()
  t = undefined
})

async function metric(app: TestApp, line: RegExp): Promise<number> {
  const body = (await app.app.inject({ method: 'GET', url: '/metrics' })).body
  const match = body.split('\n').find((l) => line.test(l))
  return match ? Number(match.split(' ').at(-1)) : 0
}

describe('races the outbox must win', () => {
  it('an outbox event (a ban in SQL) arriving while a cache fill is held between its read and its write: the fill is refused', async () => {
    const release = gate()
    const outcomes: string[] = []
    let held = 0
    const holdFills = (cache: SessionCache): SessionCache => ({
      ...cache,
      async fill(hash, answer, ttlMs) {
        held++
        await release.wait()
        const outcome = await cache.fill(hash, answer, ttlMs)
        outcomes.push(outcome)
        return outcome
      },
    })
    t = await startTestApp({ db, overrides: { wrapCache: holdFills } })
    const session = await db.insertSession()
    expect((await t.validate(session.token)).json()).toMatchObject({ valid: true, source: 'postgres' })
    await eventually(() => held === 1, 5000, 'fill held')

    const before = await metric(t, /^session_revocation_events_applied_total\{path="notify"\}/)
    await db.query("UPDATE $schema.users SET banned_until = now() + interval '1 day' WHERE id = $1", [session.userId])
    await eventually(async () => (await metric(t!, /^session_revocation_events_applied_total\{path="notify"\}/)) > before, 2000, 'event applied')
    release.open()
    await t.settle()

    expect(outcomes).toEqual(['tombstoned'])
    expect(await t.redis.exists(t.keys.entry(hashToken(session.token)))).toBe(0)
    expect((await t.validate(session.token)).json()).toEqual({ valid: false, reason: 'user_banned' })
  })

  it('a fill that would land past its deadline (half a tombstone’s life after its read) is dropped, not written', async () => {
    // The clock jumps past the deadline between the read and the fill: no sleep, no wall-clock guess.
    let offsetMs = 0
    const now = () => Date.now() + offsetMs
    const env = { CACHE_TOMBSTONE_TTL_SECONDS: '10' }
    const jumpAfterRead = (store: SessionStore): SessionStore => ({
      ...store,
      async findByTokenHash(hash) {
        const record = await store.findByTokenHash(hash)
        offsetMs += t!.config.cache.tombstoneTtlSeconds * 500 + 1
        return record
      },
    })
    t = await startTestApp({ db, env, overrides: { now, wrapStore: jumpAfterRead } })
    const session = await db.insertSession()
    expect((await t.validate(session.token)).json()).toMatchObject({ valid: true, source: 'postgres' })
    await t.settle()
    expect(await t.redis.exists(t.keys.entry(hashToken(session.token)))).toBe(0)
    expect(await metric(t, /^session_cache_writes_total\{kind="fill",outcome="skipped"\}/)).toBe(1)
    expect(await metric(t, /^session_cache_writes_total\{kind="fill",outcome="failed"\}/)).toBe(0)
    expect(t.logs.text()).not.toContain('cache write failed after retries')
  })

  it('an L1 hit re-checks the session’s own expiry: past expiresAt it answers expired, however long L1 would keep it', async () => {
    let offsetMs = 0
    t = await startTestApp({ db, env: { L1_CACHE_TTL_MS: '30000' }, overrides: { now: () => Date.now() + offsetMs } })
    await eventually(() => t!.app.internals.local?.active === true, 5000, 'L1 subscribed')
    const session = await db.insertSession({ expiresInMs: 60_000 })
    await t.validate(session.token)
    expect((await t.validate(session.token)).json()).toMatchObject({ valid: true, source: 'l1' })
    offsetMs = 61_000
    expect(t.app.internals.local!.get(hashToken(session.token))).toBeDefined()
    expect((await t.validate(session.token)).json()).toEqual({ valid: false, reason: 'expired' })
  })

  it('an invalidation the cache refused is retried in the background until it lands, without the caller asking again', async () => {
    let failures = 2
    const failTwice = (cache: SessionCache): SessionCache => ({
      ...cache,
      async invalidate(targets) {
        // The request's own calls fail (not the revocation feed's replay of earlier outbox rows).
        if (failures > 0 && targets.length === 1 && targets[0]!.kind === 'session') {
          failures--
          throw new Error('redis refused')
        }
        return cache.invalidate(targets)
      },
    })
    t = await startTestApp({ db, overrides: { wrapCache: failTwice } })
    const session = await db.insertSession()
    await t.validate(session.token)
    await t.settle()
    expect((await t.validate(session.token)).json()).toMatchObject({ source: 'redis' })
    // The call's first attempt fails (503); the background retry fails once more, then lands.
    const res = await t.invalidate({ sessionId: session.sessionId })
    expect(res.statusCode).toBe(503)
    expect(res.json()).toMatchObject({ code: 'SESSION_CACHE_UNAVAILABLE' })
    await t.settle()
    expect(failures).toBe(0)
    expect(await t.redis.exists(t.keys.sessionIndex(session.sessionId))).toBe(0)
    expect(await t.redis.exists(t.keys.sessionTombstone(session.sessionId))).toBe(1)
    expect(await metric(t, /^session_cache_writes_total\{kind="invalidate",outcome="written"\}/)).toBeGreaterThanOrEqual(1)
  })
})
