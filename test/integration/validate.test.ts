import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { SessionCache, SessionStore } from '../../src/domain/ports.js'
import { hashToken } from '../../src/domain/token.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { startTestApp, type TestApp } from '../support/app.js'
import { eventually, gate } from '../support/gate.js'
import { TEST_REDIS_URL } from '../support/env.js'
import { startTcpProxy } from '../support/tcp-proxy.js'

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

/** Wraps the real store to count (and optionally hold) token lookups. */
function countingStore(hold?: Promise<void>) {
  const counter = { lookups: 0 }
  const wrap = (store: SessionStore): SessionStore => ({
    ...store,
    async findByTokenHash(hash) {
      counter.lookups++
      if (hold) await hold
      return store.findByTokenHash(hash)
    },
  })
  return { counter, wrap }
}

describe('POST /validate', () => {
  it('answers a valid session from Postgres first, then from Redis, with the session and its user', async () => {
    t = await startTestApp({ db })
    const { token, sessionId, userId, expiresAt } = await db.insertSession()

    const first = await t.validate(token)
    expect(first.statusCode).toBe(200)
    expect(first.json()).toMatchObject({
      valid: true,
      source: 'postgres',
      session: { id: sessionId, userId, expiresAt: expiresAt.toISOString() },
      user: { id: userId, firstName: 'Ada', lastName: 'Lovelace', username: 'ada' },
    })
    await t.settle()

    const second = await t.validate(token)
    expect(second.json()).toMatchObject({ valid: true, source: 'redis', session: { id: sessionId } })
    expect(second.json().user).toEqual(first.json().user)
  })

  it.each([
    ['an expired session', { expiresInMs: -1000 }, 'expired'],
    ['a revoked session', { revoked: true }, 'revoked'],
  ] as const)('answers %s as not valid with its reason, from Postgres and then from the cache', async (_name, options, reason) => {
    t = await startTestApp({ db })
    const { token } = await db.insertSession(options)
    expect((await t.validate(token)).json()).toEqual({ valid: false, reason })
    await t.settle()
    expect((await t.validate(token)).json()).toEqual({ valid: false, reason })
  })

  it('answers an unknown token as not_found', async () => {
    t = await startTestApp({ db })
    expect((await t.validate('never-issued-token')).json()).toEqual({ valid: false, reason: 'not_found' })
  })

  it('answers sessions of banned and deleted users as not valid, and of a user whose ban has ended as valid', async () => {
    t = await startTestApp({ db })
    const banned = await db.insertSession({ userId: await db.insertUser({ bannedUntil: new Date(Date.now() + 86_400_000) }) })
    const deleted = await db.insertSession({ userId: await db.insertUser({ deletedAt: new Date() }) })
    const pardoned = await db.insertSession({ userId: await db.insertUser({ bannedUntil: new Date(Date.now() - 1000) }) })
    expect((await t.validate(banned.token)).json()).toEqual({ valid: false, reason: 'user_banned' })
    expect((await t.validate(deleted.token)).json()).toEqual({ valid: false, reason: 'user_deleted' })
    expect((await t.validate(pardoned.token)).json()).toMatchObject({ valid: true })
  })

  it('keys the cache on the SHA-256 of the token and never stores or logs the token itself', async () => {
    t = await startTestApp({ db })
    const { token } = await db.insertSession()
    await t.validate(token)
    await t.settle()
    await t.validate(token)
    await t.invalidate({ token })
    const dump = await t.dump()
    expect(Object.keys(dump)).toContain(t.keys.tokenTombstone(hashToken(token)))
    expect(JSON.stringify(dump)).not.toContain(token)
    expect(t.logs.lines.length).toBeGreaterThan(0)
    expect(t.logs.text()).not.toContain(token)
  })

  it('caps an entry’s TTL at the session’s expiry, and gives every key it writes a TTL: entries, indexes, negative entries, tombstones', async () => {
    t = await startTestApp({
      db,
      env: { CACHE_TTL_SECONDS: '300', NEGATIVE_CACHE_TTL_SECONDS: '10', NEGATIVE_CACHE_MIN_MISSES: '1', CACHE_TOMBSTONE_TTL_SECONDS: '30' },
    })
    const soon = await db.insertSession({ expiresInMs: 5000 })
    const later = await db.insertSession()
    const revoked = await db.insertSession({ revoked: true })
    const gone = await db.insertSession()
    const userGone = await db.insertSession()
    const unknown = 'never-issued-token'
    for (const token of [soon.token, later.token, revoked.token, gone.token, userGone.token, unknown]) await t.validate(token)
    await t.settle()
    // Invalidations leave tombstones: by session id for the token and the session, by user id for the user.
    expect((await t.invalidate({ sessionId: gone.sessionId })).json()).toMatchObject({ invalidated: 1 })
    expect((await t.invalidate({ userId: userGone.userId })).json()).toMatchObject({ invalidated: 1 })
    await t.settle()

    const soonTtl = await t.redis.pttl(t.keys.entry(hashToken(soon.token)))
    const laterTtl = await t.redis.pttl(t.keys.entry(hashToken(later.token)))
    expect(soonTtl).toBeGreaterThan(0)
    expect(soonTtl).toBeLessThanOrEqual(5000)
    expect(laterTtl).toBeGreaterThan(290_000)
    expect(laterTtl).toBeLessThanOrEqual(300_000)

    // Every kind of key is there, each with a TTL within its own bound, so the check below covers all of them.
    const bounds: Record<string, number> = {
      [t.keys.entry(hashToken(revoked.token))]: 10_000,
      [t.keys.entry(hashToken(unknown))]: 10_000,
      [t.keys.sessionIndex(later.sessionId)]: 300_000,
      [t.keys.userIndex(later.userId)]: 300_000,
      [t.keys.tokenTombstone(hashToken(gone.token))]: 30_000,
      [t.keys.sessionTombstone(gone.sessionId)]: 30_000,
      [t.keys.userTombstone(userGone.userId)]: 30_000,
    }
    const keys = Object.keys(await t.dump())
    expect(keys).toEqual(expect.arrayContaining(Object.keys(bounds)))
    for (const [key, bound] of Object.entries(bounds)) {
      const ttl = await t.redis.pttl(key)
      expect(ttl, key).toBeGreaterThan(0)
      expect(ttl, key).toBeLessThanOrEqual(bound)
    }
    // And no key at all lives without one (PTTL -1).
    for (const key of keys) expect(await t.redis.pttl(key), key).toBeGreaterThan(0)
  })

  it('checks a cached session’s own expiry on every hit, even while the entry is still in Redis', async () => {
    let skewMs = 0
    t = await startTestApp({ db, overrides: { now: () => Date.now() + skewMs } })
    const { token, expiresAt } = await db.insertSession({ expiresInMs: 60_000 })
    await t.validate(token)
    await t.settle()
    expect((await t.validate(token)).json()).toMatchObject({ valid: true, source: 'redis' })
    skewMs = expiresAt.getTime() - Date.now() + 1000
    expect(await t.redis.exists(t.keys.entry(hashToken(token)))).toBe(1)
    expect((await t.validate(token)).json()).toEqual({ valid: false, reason: 'expired' })
  })

  it('when 100 requests miss on one token at once, Postgres is asked once', async () => {
    const release = gate()
    const store = countingStore(release.wait())
    t = await startTestApp({ db, overrides: { wrapStore: store.wrap } })
    const { token, sessionId } = await db.insertSession()
    const pending = Array.from({ length: 100 }, () => t.validate(token))
    await eventually(() => store.counter.lookups >= 1, 5000, 'first lookup')
    // Let every request reach the cache and miss before the one Postgres read is allowed to finish.
    await new Promise((r) => setTimeout(r, 200))
    release.open()
    const answers = await Promise.all(pending)
    expect(store.counter.lookups).toBe(1)
    for (const answer of answers) expect(answer.json()).toMatchObject({ valid: true, session: { id: sessionId } })
    const metrics = (await t.app.inject({ method: 'GET', url: '/metrics' })).body
    expect(metrics).toMatch(/^session_single_flight_joins_total 99$/m)
  })

  it('a second wave of misses, arriving after the answer but before its cache fill lands, makes no new query', async () => {
    const fillRelease = gate()
    const store = countingStore()
    const holdFills = (cache: SessionCache): SessionCache => ({
      ...cache,
      async fill(hash, answer, ttlMs) {
        await fillRelease.wait()
        return cache.fill(hash, answer, ttlMs)
      },
    })
    t = await startTestApp({ db, overrides: { wrapStore: store.wrap, wrapCache: holdFills } })
    const { token } = await db.insertSession()
    await Promise.all(Array.from({ length: 20 }, () => t.validate(token)))
    const second = await Promise.all(Array.from({ length: 20 }, () => t.validate(token)))
    expect(store.counter.lookups).toBe(1)
    for (const answer of second) expect(answer.json()).toMatchObject({ valid: true, source: 'postgres' })
    fillRelease.open()
    await t.settle()
    expect((await t.validate(token)).json()).toMatchObject({ source: 'redis' })
  })

  it('a request 5 ms after a miss was answered is served from Redis, even 4 ms away from Redis: a fill is one round trip', async () => {
    // Every byte to and from Redis takes ONE_WAY_MS. The second request's GET reaches Redis GAP_MS + ONE_WAY_MS after
    // the answer; a fill of one script (started with the answer) reached it ONE_WAY_MS after it started, long before.
    // A fill of two dependent round trips (index claims, then the entry) would reach it 3 × ONE_WAY_MS after: later
    // than that GET, which would miss and join the Postgres read (source 'postgres').
    const ONE_WAY_MS = 4
    const GAP_MS = 5
    expect(3 * ONE_WAY_MS).toBeGreaterThan(GAP_MS + ONE_WAY_MS)
    const url = new URL(TEST_REDIS_URL)
    const proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port || 6379) })
    try {
      url.host = `127.0.0.1:${proxy.port}`
      t = await startTestApp({ db, redisUrl: url.toString() })
      proxy.setDelay(ONE_WAY_MS)
      // Several sessions, so one lucky timing cannot pass it: every one of them must be in Redis 5 ms after its answer.
      for (let i = 0; i < 5; i++) {
        const { token } = await db.insertSession()
        expect((await t.validate(token)).json()).toMatchObject({ valid: true, source: 'postgres' })
        await new Promise((r) => setTimeout(r, GAP_MS))
        expect((await t.validate(token)).json(), `session ${i}`).toMatchObject({ valid: true, source: 'redis' })
      }
    } finally {
      await t?.close()
      t = undefined as unknown as TestApp
      await proxy.close()
    }
  })

  it('caches an unknown token negatively at its second miss: repeats then make two Postgres queries per negative TTL', async () => {
    const store = countingStore()
    t = await startTestApp({ db, env: { NEGATIVE_CACHE_TTL_SECONDS: '1' }, overrides: { wrapStore: store.wrap } })
    const key = t.keys.entry(hashToken('unknown-token-1'))
    expect((await t.validate('unknown-token-1')).json()).toEqual({ valid: false, reason: 'not_found' })
    await t.settle()
    // A token asked once costs no Redis write: nothing was cached for it.
    expect(await t.redis.exists(key)).toBe(0)
    for (let i = 0; i < 5; i++) {
      expect((await t.validate('unknown-token-1')).json()).toEqual({ valid: false, reason: 'not_found' })
      await t.settle()
    }
    expect(store.counter.lookups).toBe(2)
    const ttl = await t.redis.pttl(key)
    expect(ttl).toBeGreaterThan(0)
    expect(ttl).toBeLessThanOrEqual(1000)
    await eventually(async () => (await t.redis.exists(key)) === 0, 3000, 'negative entry expiry')
    await t.validate('unknown-token-1')
    expect(store.counter.lookups).toBe(3)
  })

  it('with NEGATIVE_CACHE_MIN_MISSES=1, caches an unknown token at its first miss', async () => {
    const store = countingStore()
    t = await startTestApp({ db, env: { NEGATIVE_CACHE_MIN_MISSES: '1' }, overrides: { wrapStore: store.wrap } })
    for (let i = 0; i < 3; i++) {
      expect((await t.validate('unknown-token-2')).json()).toEqual({ valid: false, reason: 'not_found' })
      await t.settle()
    }
    expect(store.counter.lookups).toBe(1)
    expect(await t.redis.exists(t.keys.entry(hashToken('unknown-token-2')))).toBe(1)
  })

  it('with sliding TTL on, an entry lives SLIDING_TTL_IDLE_SECONDS, a hit extends it (throttled), never past the session’s expiry', async () => {
    const idleMs = 2000
    t = await startTestApp({
      db,
      env: { SLIDING_TTL_ENABLED: 'true', CACHE_TTL_SECONDS: '10', SLIDING_TTL_MIN_INTERVAL_SECONDS: '1', SLIDING_TTL_IDLE_SECONDS: String(idleMs / 1000) },
    })
    const active = await db.insertSession()
    const ending = await db.insertSession({ expiresInMs: 1500 })
    const key = (token: string) => t.keys.entry(hashToken(token))
    await t.validate(active.token)
    await t.validate(ending.token)
    await t.settle()
    // A fill lives the idle window, not the whole cache TTL.
    expect(await t.redis.pttl(key(active.token))).toBeLessThanOrEqual(idleMs)
    await new Promise((r) => setTimeout(r, 1200))
    const before = await t.redis.pttl(key(active.token))
    expect((await t.validate(active.token)).json()).toMatchObject({ source: 'redis' })
    expect((await t.validate(ending.token)).json()).toMatchObject({ source: 'redis' })
    await t.settle()
    const after = await t.redis.pttl(key(active.token))
    expect(before).toBeLessThan(idleMs - 1000)
    expect(after).toBeGreaterThan(idleMs - 300)
    expect(await t.redis.pttl(key(ending.token))).toBeLessThanOrEqual(ending.expiresAt.getTime() - Date.now() + 50)
  })

  it('without sliding TTL, a hit leaves the entry’s TTL alone', async () => {
    t = await startTestApp({ db, env: { CACHE_TTL_SECONDS: '3' } })
    const { token } = await db.insertSession()
    await t.validate(token)
    await t.settle()
    await new Promise((r) => setTimeout(r, 1200))
    await t.validate(token)
    await t.settle()
    expect(await t.redis.pttl(t.keys.entry(hashToken(token)))).toBeLessThan(2000)
  })
})
