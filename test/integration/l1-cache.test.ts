import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { SessionCache } from '../../src/domain/ports.js'
import { hashToken } from '../../src/domain/token.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { startTestApp, type TestApp } from '../support/app.js'
import { eventually, gate } from '../support/gate.js'

let db: TestDatabase
const apps: TestApp[] = []

beforeAll(async () => {
  db = await createTestDatabase()
})
afterAll(async () => {
  await db.drop()
})
afterEach(async () => {
  for (const t of apps.splice(0)) await t.close()
})

async function l1App(env: Record<string, string> = {}, prefixFrom?: TestApp, wrapCache?: (c: SessionCache) => SessionCache) {
  const t = await startTestApp({
    db,
    overrides: wrapCache ? { wrapCache } : {},
    env: { L1_CACHE_TTL_MS: '30000', ...(prefixFrom ? { REDIS_KEY_PREFIX: prefixFrom.prefix } : {}), ...env },
  })
  apps.push(t)
  await eventually(() => t.app.internals.local?.active === true, 5000, 'L1 subscribed')
  return t
}

describe('the L1 tier (L1_CACHE_TTL_MS > 0)', () => {
  it('is off by default', async () => {
    const t = await startTestApp({ db })
    apps.push(t)
    expect(t.app.internals.local).toBeUndefined()
  })

  it('answers a repeat from process memory, and still checks the session’s expiry there', async () => {
    const t = await l1App()
    const { token } = await db.insertSession()
    expect((await t.validate(token)).json()).toMatchObject({ valid: true, source: 'postgres' })
    expect((await t.validate(token)).json()).toMatchObject({ valid: true, source: 'l1' })
    const metrics = (await t.app.inject({ method: 'GET', url: '/metrics' })).body
    expect(metrics).toMatch(/^session_validations_total\{result="valid",source="l1"\} 1$/m)
    const health = (await t.app.inject({ method: 'GET', url: '/health/redis' })).json()
    expect(health.sessionCache.l1).toEqual({ enabled: true, active: true, size: 1 })
  })

  it('when this instance invalidates, its own L1 forgets the session before the 200', async () => {
    const t = await l1App()
    const { token } = await db.insertSession()
    await t.validate(token)
    expect((await t.validate(token)).json()).toMatchObject({ source: 'l1' })
    await t.invalidate({ token, revoke: true })
    expect((await t.validate(token)).json()).toEqual({ valid: false, reason: 'revoked' })
  })

  it('when another instance invalidates a user, this instance’s L1 drops that user’s sessions', async () => {
    const a = await l1App()
    const b = await l1App({}, a)
    const userId = await db.insertUser()
    const s1 = await db.insertSession({ userId })
    const s2 = await db.insertSession({ userId })
    const other = await db.insertSession()
    for (const s of [s1, s2, other]) {
      await b.validate(s.token)
      expect((await b.validate(s.token)).json()).toMatchObject({ source: 'l1' })
    }
    expect((await a.invalidate({ userId, revoke: true })).json()).toMatchObject({ revoked: 2 })
    await eventually(() => b.app.internals.local!.get(hashToken(s1.token)) === undefined, 2000, 'eviction on b')
    expect((await b.validate(s1.token)).json()).toEqual({ valid: false, reason: 'revoked' })
    expect((await b.validate(s2.token)).json()).toEqual({ valid: false, reason: 'revoked' })
    expect((await b.validate(other.token)).json()).toMatchObject({ valid: true, source: 'l1' })
  })

  it('when an invalidation lands while a Redis read is in flight, the answer read before it is not kept in L1', async () => {
    const release = gate()
    let held = 0
    const holdSecondGet = (cache: SessionCache): SessionCache => ({
      ...cache,
      async get(hash) {
        const answer = await cache.get(hash)
        if (answer && ++held === 1) await release.wait()
        return answer
      },
    })
    const t = await l1App({}, undefined, holdSecondGet)
    const { token } = await db.insertSession()
    await t.validate(token)
    await t.settle()
    // Now in Redis and in L1; drop it from L1 only, so the next read goes to Redis.
    t.app.internals.local!.evict([{ kind: 'token', tokenHash: hashToken(token) }])
    const inFlight = t.validate(token) // reads Redis (a hit), then is held
    await eventually(() => held === 1, 5000, 'read held')
    await t.invalidate({ token, revoke: true })
    release.open()
    expect((await inFlight).json()).toMatchObject({ valid: true, source: 'redis' })
    expect(t.app.internals.local!.get(hashToken(token))).toBeUndefined()
    expect((await t.validate(token)).json()).toEqual({ valid: false, reason: 'revoked' })
  })

  describe('refresh-ahead (L1_CACHE_REFRESH_AHEAD_PERCENT)', () => {
    const ttlMs = 1000
    const aheadPercent = 50
    /** Counts the Redis reads that found an answer: with a warm L1 only the background refreshes do. */
    function countingHits() {
      const counter = { hits: 0 }
      const wrap = (cache: SessionCache): SessionCache => ({
        ...cache,
        async get(hash) {
          const answer = await cache.get(hash)
          if (answer) counter.hits++
          return answer
        },
      })
      return { counter, wrap }
    }
    /** Asks for the token every tenth of the refresh-ahead window for three L1 lives; returns the answers' sources. */
    async function askForThreeLives(t: TestApp, token: string) {
      const sources: string[] = []
      const every = (ttlMs * aheadPercent) / 100 / 10
      for (let i = 0; i < (3 * ttlMs) / every; i++) {
        const body = (await t.validate(token)).json()
        expect(body).toMatchObject({ valid: true })
        sources.push(body.source)
        await new Promise((r) => setTimeout(r, every))
      }
      return sources
    }

    it('a session asked for near the end of its L1 life is re-read from Redis in the background, so no request waits on Redis', async () => {
      const { counter, wrap } = countingHits()
      const t = await l1App({ L1_CACHE_TTL_MS: String(ttlMs), L1_CACHE_REFRESH_AHEAD_PERCENT: String(aheadPercent) }, undefined, wrap)
      const { token } = await db.insertSession()
      expect((await t.validate(token)).json()).toMatchObject({ source: 'postgres' })
      await t.settle()
      const sources = await askForThreeLives(t, token)
      expect(new Set(sources)).toEqual(new Set(['l1']))
      // Each life ends in a refresh: at least one per life after the first.
      expect(counter.hits).toBeGreaterThanOrEqual(2)
    })

    it('with it off, the same requests go to Redis each time an L1 answer runs out', async () => {
      const { counter, wrap } = countingHits()
      const t = await l1App({ L1_CACHE_TTL_MS: String(ttlMs), L1_CACHE_REFRESH_AHEAD_PERCENT: '0' }, undefined, wrap)
      const { token } = await db.insertSession()
      await t.validate(token)
      await t.settle()
      const sources = await askForThreeLives(t, token)
      expect(sources.filter((s) => s === 'redis').length).toBeGreaterThanOrEqual(2)
      expect(counter.hits).toBe(sources.filter((s) => s === 'redis').length)
    })

    it('when an invalidation lands while a refresh is in flight, the refreshed answer is not kept', async () => {
      const release = gate()
      let held = 0
      let refreshed = false
      const holdRefresh = (cache: SessionCache): SessionCache => ({
        ...cache,
        async get(hash) {
          const answer = await cache.get(hash)
          if (answer && ++held === 1) {
            await release.wait()
            refreshed = true
          }
          return answer
        },
      })
      // Every L1 hit past the first tenth of the answer's life asks for a refresh.
      const t = await l1App({ L1_CACHE_TTL_MS: String(ttlMs), L1_CACHE_REFRESH_AHEAD_PERCENT: '90' }, undefined, holdRefresh)
      const { token } = await db.insertSession()
      await t.validate(token)
      await t.settle()
      await new Promise((r) => setTimeout(r, ttlMs / 10 + 20))
      expect((await t.validate(token)).json()).toMatchObject({ valid: true, source: 'l1' })
      await eventually(() => held === 1, 5000, 'refresh read held')
      // Without revoke: no outbox row, so no later eviction by the revocation feed could hide a kept answer. The refresh
      // is released only once this instance has heard its own invalidations back over pub/sub: a message published
      // after them for another L1 entry (a fence; one subscriber hears a channel in order) has evicted that entry.
      const local = t.app.internals.local!
      const fence = await db.insertSession()
      await t.validate(fence.token)
      expect(local.get(hashToken(fence.token))).toBeDefined()
      await t.invalidate({ token })
      await t.redis.publish(t.app.internals.keys.invalidationChannel, `tok:${hashToken(fence.token)}`)
      await eventually(() => local.get(hashToken(fence.token)) === undefined, 5000, 'the fence heard')
      release.open()
      await eventually(() => refreshed, 5000, 'refresh read returned')
      await new Promise((r) => setImmediate(r))
      expect(t.app.internals.local!.get(hashToken(token))).toBeUndefined()
      expect((await t.validate(token)).json()).toMatchObject({ valid: true, source: 'postgres' })
    })
  })

  it('when the invalidation feed is lost, the L1 empties and stops answering until it is subscribed again', async () => {
    const t = await l1App()
    const { token } = await db.insertSession()
    await t.validate(token)
    expect((await t.validate(token)).json()).toMatchObject({ source: 'l1' })
    // Kill this instance's subscriber connection from the server side.
    const clients = await t.redis.client('LIST')
    const subscriberIds = String(clients)
      .split('\n')
      .filter((line) => line.includes('cmd=subscribe') || line.includes('sub=1'))
      .map((line) => /id=(\d+)/.exec(line)?.[1])
      .filter((id): id is string => id !== undefined)
    expect(subscriberIds.length).toBeGreaterThan(0)
    for (const id of subscriberIds) await t.redis.client('KILL', 'ID', id)
    await eventually(() => t.app.internals.local!.size === 0, 2000, 'L1 emptied')
    expect((await t.validate(token)).json()).not.toMatchObject({ source: 'l1' })
    await eventually(() => t.app.internals.local!.active, 5000, 'resubscribed')
  })
})
