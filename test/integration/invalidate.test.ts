import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { SessionCache, SessionStore } from '../../src/domain/ports.js'
import { hashToken } from '../../src/domain/token.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { startTestApp, type TestApp } from '../support/app.js'
import { eventually, gate } from '../support/gate.js'

let db: TestDatabase
let t: TestApp

beforeAll(async () => {
  db = await createTestDatabase()
})
afterAll(async () => {
  await db.drop()
})
afterEach(async () => {
  await t?.close()
})

async function cached(token: string) {
  await t.validate(token)
  await t.settle()
  expect((await t.validate(token)).json()).toMatchObject({ valid: true, source: 'redis' })
}

describe('POST /invalidate', () => {
  it('by token, without revoke: removes the entry; the next validation reads Postgres again and is still valid', async () => {
    t = await startTestApp({ db })
    const { token, sessionId } = await db.insertSession()
    await cached(token)
    const res = await t.invalidate({ token })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ invalidated: 1, revoked: 0 })
    expect(await t.redis.exists(t.keys.entry(hashToken(token)))).toBe(0)
    expect((await t.validate(token)).json()).toMatchObject({ valid: true, source: 'postgres' })
    expect((await db.sessionRow(sessionId))?.revoked_at).toBeNull()
  })

  it('by token, with revoke (logout): sets revoked_at and the session is never valid again', async () => {
    t = await startTestApp({ db })
    const { token, sessionId } = await db.insertSession()
    await cached(token)
    expect((await t.invalidate({ token, revoke: true })).json()).toEqual({ invalidated: 1, revoked: 1 })
    expect((await db.sessionRow(sessionId))?.revoked_at).toBeInstanceOf(Date)
    expect((await t.validate(token)).json()).toEqual({ valid: false, reason: 'revoked' })
    await t.settle()
    expect((await t.validate(token)).json()).toEqual({ valid: false, reason: 'revoked' })
  })

  it('by session id, with revoke: removes the entry and its index, and revokes the row', async () => {
    t = await startTestApp({ db })
    const { token, sessionId } = await db.insertSession()
    await cached(token)
    // The index holds the token's first 96 bits (src/cache/keys.ts), which name its entry.
    const member = (await t.redis.getBuffer(t.keys.sessionIndex(sessionId)))!
    expect(member).toEqual(t.keys.indexMember(hashToken(token)))
    expect(t.keys.entryOfMember(member)).toBe(t.keys.entry(hashToken(token)))
    expect((await t.invalidate({ sessionId, revoke: true })).json()).toEqual({ invalidated: 1, revoked: 1 })
    expect(await t.redis.exists(t.keys.sessionIndex(sessionId))).toBe(0)
    expect((await t.validate(token)).json()).toEqual({ valid: false, reason: 'revoked' })
  })

  it('by session id after the Studio already deleted the row, with the outbox not heard: the cache index finds it', async () => {
    // The listener and the poll stopped: only the call itself can find the entry, through the cache's own index.
    t = await startTestApp({ db })
    await t.app.internals.revocation.close()
    const { token, sessionId } = await db.insertSession()
    await cached(token)
    await db.query('DELETE FROM $schema.user_sessions WHERE id = $1', [sessionId])
    expect((await t.invalidate({ sessionId })).json()).toEqual({ invalidated: 1, revoked: 0 })
    expect((await t.validate(token)).json()).toEqual({ valid: false, reason: 'not_found' })
  })

  it("by user id: removes every one of the user's entries and nobody else's, without scanning the keyspace", async () => {
    t = await startTestApp({ db })
    const userId = await db.insertUser()
    const a = await db.insertSession({ userId })
    const b = await db.insertSession({ userId })
    const other = await db.insertSession()
    for (const s of [a, b, other]) await cached(s.token)
    expect(await t.redis.zrange(t.keys.userIndex(userId), 0, -1)).toHaveLength(2)
    expect((await t.invalidate({ userId, revoke: true })).json()).toEqual({ invalidated: 2, revoked: 2 })
    expect(await t.redis.exists(t.keys.userIndex(userId))).toBe(0)
    expect((await t.validate(a.token)).json()).toEqual({ valid: false, reason: 'revoked' })
    expect((await t.validate(b.token)).json()).toEqual({ valid: false, reason: 'revoked' })
    expect((await t.validate(other.token)).json()).toMatchObject({ valid: true, source: 'redis' })
  })

  it('by user id after the Studio deleted the user (its sessions cascade): the entries are gone, by the outbox or the call', async () => {
    t = await startTestApp({ db })
    const userId = await db.insertUser()
    const a = await db.insertSession({ userId })
    const b = await db.insertSession({ userId })
    await cached(a.token)
    await cached(b.token)
    await db.query('DELETE FROM $schema.users WHERE id = $1', [userId])
    // The delete reaches the cache through the outbox too; whichever comes first removes the two entries.
    const res = await t.invalidate({ userId })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toMatchObject({ revoked: 0 })
    expect([0, 1, 2]).toContain(res.json().invalidated)
    for (const s of [a, b]) expect(await t.redis.exists(t.keys.entry(hashToken(s.token)))).toBe(0)
    expect((await t.validate(a.token)).json()).toEqual({ valid: false, reason: 'not_found' })
    expect((await t.validate(b.token)).json()).toEqual({ valid: false, reason: 'not_found' })
  })

  it('by user id with the Studio rows deleted and the outbox not heard: the cache index finds them', async () => {
    // A poll far away and the listener cut: only the call itself can find the entries, through the cache's own index.
    t = await startTestApp({ db })
    await t.app.internals.revocation.close()
    const userId = await db.insertUser()
    const a = await db.insertSession({ userId })
    const b = await db.insertSession({ userId })
    await cached(a.token)
    await cached(b.token)
    await db.query('DELETE FROM $schema.users WHERE id = $1', [userId])
    expect((await t.invalidate({ userId })).json()).toEqual({ invalidated: 2, revoked: 0 })
    expect((await t.validate(a.token)).json()).toEqual({ valid: false, reason: 'not_found' })
  })

  it('of something never cached answers zero and changes nothing in Postgres', async () => {
    t = await startTestApp({ db })
    const { sessionId } = await db.insertSession()
    expect((await t.invalidate({ sessionId })).json()).toEqual({ invalidated: 0, revoked: 0 })
    expect((await db.sessionRow(sessionId))?.revoked_at).toBeNull()
  })

  it('counts what it removed and revoked in the metrics', async () => {
    t = await startTestApp({ db })
    const { token } = await db.insertSession()
    await cached(token)
    await t.invalidate({ token, revoke: true })
    const body = (await t.app.inject({ method: 'GET', url: '/metrics' })).body
    expect(body).toMatch(/^session_invalidations_total\{kind="token"\} 1$/m)
    expect(body).toMatch(/^session_revocations_total\{kind="token"\} 1$/m)
  })
})

/** Holds the first Postgres lookup after it has read its row, until the test releases it. */
function holdFirstRead() {
  const release = gate()
  let reads = 0
  const wrap = (store: SessionStore): SessionStore => ({
    ...store,
    async findByTokenHash(hash) {
      const record = await store.findByTokenHash(hash)
      if (++reads === 1) await release.wait()
      return record
    },
  })
  return { wrap, reads: () => reads, release: release.open }
}

describe('an invalidation racing a cache fill', () => {
  /** Holds every cache fill until the test opens the gate: the fill has read Postgres but not yet written Redis. */
  function heldFills() {
    const release = gate()
    const state = { held: 0, outcomes: [] as string[] }
    const wrap = (cache: SessionCache): SessionCache => ({
      ...cache,
      async fill(hash, answer, ttlMs) {
        state.held++
        await release.wait()
        const outcome = await cache.fill(hash, answer, ttlMs)
        state.outcomes.push(outcome)
        return outcome
      },
    })
    return { release, state, wrap }
  }

  it.each([
    ['token', (s: { token: string }) => ({ token: s.token })],
    ['session id', (s: { sessionId: string }) => ({ sessionId: s.sessionId })],
    ['user id', (s: { userId: string }) => ({ userId: s.userId })],
  ])('when an invalidation by %s lands between the read and the write, the fill is refused', async (_kind, body) => {
    const fills = heldFills()
    t = await startTestApp({ db, overrides: { wrapCache: fills.wrap } })
    const session = await db.insertSession()

    expect((await t.validate(session.token)).json()).toMatchObject({ valid: true, source: 'postgres' })
    await eventually(() => fills.state.held === 1, 5000, 'fill held')
    expect((await t.invalidate({ ...body(session), revoke: true })).json()).toMatchObject({ invalidated: 0, revoked: 1 })
    fills.release.open()
    await t.settle()

    expect(fills.state.outcomes).toEqual(['tombstoned'])
    expect(await t.redis.exists(t.keys.entry(hashToken(session.token)))).toBe(0)
    expect((await t.validate(session.token)).json()).toEqual({ valid: false, reason: 'revoked' })
  })

  it('a request that starts after an invalidation is answered by a fresh read, not by one that began before it', async () => {
    const held = holdFirstRead()
    t = await startTestApp({ db, overrides: { wrapStore: held.wrap } })
    const session = await db.insertSession()
    const early = t.validate(session.token)
    await eventually(() => held.reads() === 1, 5000, 'first read in flight')
    expect((await t.invalidate({ token: session.token, revoke: true })).json()).toMatchObject({ revoked: 1 })
    // Without the epoch, this request would join the held read and answer valid:true after the revocation's 200.
    expect((await t.validate(session.token)).json()).toEqual({ valid: false, reason: 'revoked' })
    expect(held.reads()).toBe(2)
    held.release()
    expect((await early).json()).toMatchObject({ valid: true, source: 'postgres' })
  })

  it('on another instance too (no L1): once it hears of the invalidation, a new request there does not join its older read', async () => {
    const held = holdFirstRead()
    const b = await startTestApp({ db, overrides: { wrapStore: held.wrap } })
    t = await startTestApp({ db, env: { REDIS_KEY_PREFIX: b.prefix } })
    try {
      expect(b.app.internals.local).toBeUndefined()
      const session = await db.insertSession()
      const early = b.validate(session.token)
      await eventually(() => held.reads() === 1, 5000, 'read in flight on b')
      const heard = b.app.internals.validator.epoch
      expect((await t.invalidate({ token: session.token, revoke: true })).json()).toMatchObject({ revoked: 1 })
      // b hears it by pub/sub (the invalidation script publishes in the same step as the deletion).
      await eventually(() => b.app.internals.validator.epoch > heard, 2000, 'b heard the invalidation')
      expect((await b.validate(session.token)).json()).toEqual({ valid: false, reason: 'revoked' })
      expect(held.reads()).toBe(2)
      held.release()
      await early
    } finally {
      await b.close()
    }
  })

  it('the per-user index holds live sessions only: members whose entries expired are dropped on the next fill', async () => {
    t = await startTestApp({ db, env: { CACHE_TTL_SECONDS: '1', REVOCATION_OUTBOX_RETENTION_SECONDS: '61' } })
    const userId = await db.insertUser()
    const index = t.keys.userIndex(userId)
    for (let i = 0; i < 3; i++) {
      await t.validate((await db.insertSession({ userId })).token)
      await t.settle()
    }
    expect(await t.redis.zcard(index)).toBe(3)
    // Their entries expire (the cache TTL from their read); the next login's fill trims the index to what lives.
    const ttlMs = t.config.cache.ttlSeconds * 1000
    await eventually(async () => (await t.redis.zcount(index, Date.now() - 50, '+inf')) === 0, ttlMs + 2000, 'entries expired')
    await t.validate((await db.insertSession({ userId })).token)
    await t.settle()
    expect(await t.redis.zcard(index)).toBe(1)
  })

  it('when the revocation lands while the Postgres read is in flight, the stale answer is never cached', async () => {
    const held = holdFirstRead()
    t = await startTestApp({ db, overrides: { wrapStore: held.wrap } })
    const session = await db.insertSession()
    const inFlight = t.validate(session.token)
    await eventually(() => held.reads() === 1, 5000, 'read in flight')
    expect((await t.invalidate({ sessionId: session.sessionId, revoke: true })).json()).toMatchObject({ revoked: 1 })
    held.release()
    // The request began before the revocation, so it may still see the session as it was read...
    expect((await inFlight).json()).toMatchObject({ valid: true, source: 'postgres' })
    await t.settle()
    // ...but that answer must not be cached: every later validation sees the revocation.
    expect(await t.redis.exists(t.keys.entry(hashToken(session.token)))).toBe(0)
    expect((await t.validate(session.token)).json()).toEqual({ valid: false, reason: 'revoked' })
  })
})
