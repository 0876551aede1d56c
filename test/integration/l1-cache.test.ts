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
