import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SessionStore } from '../../../src/domain/ports.js'
import { hashToken } from '../../../src/domain/token.js'
import { startTestApp, type TestApp } from '../../support/app.js'
import { createTestDatabase, type TestDatabase } from '../../support/database.js'
import { gate } from '../../support/gate.js'
import { startRedisServer, type RedisServer } from '../../support/redis-server.js'
import { ask, cacheOnBoth, revocationMatrix } from '../../support/revocation-matrix.js'

// 10 keys sampled per eviction (default 5): the oldest keys are found sooner (the pressure test below relies on it).
const LRU = ['--maxmemory', '16mb', '--maxmemory-policy', 'allkeys-lru', '--maxmemory-samples', '10']

// Under allkeys-lru the index keys (written once, never read on a hit) go before the entry (read on every hit). Here
// every index key of the session is gone, as eviction would leave it: no invalidation may miss the entry.
let redis: RedisServer
revocationMatrix({
  name: 'every index key evicted (maxmemory + allkeys-lru), the entry kept',
  async setup() {
    redis = await startRedisServer({ args: LRU })
    return { redisUrl: redis.url, close: () => redis.close() }
  },
  async before({ a, session }) {
    const index = [a.keys.sessionIndex(session.sessionId), a.keys.userIndex(session.userId)]
    expect(await a.redis.del(...index)).toBe(2)
    expect(await a.redis.exists(a.keys.entry(hashToken(session.token)))).toBe(1)
  },
  boundMs: (ending) => (ending.via === 'sql' ? 1000 : 0),
})

describe('under real memory pressure (maxmemory 16mb, allkeys-lru)', () => {
  let db: TestDatabase
  let server: RedisServer
  let a: TestApp
  let b: TestApp
  // Holds a's next Postgres read after it returned (the answer read, its fill not yet sent) until released.
  let hold: { armed: boolean; read: ReturnType<typeof gate>; release: ReturnType<typeof gate> } | undefined

  beforeAll(async () => {
    db = await createTestDatabase()
    server = await startRedisServer({ args: LRU })
    const env = { REDIS_KEY_PREFIX: `ssc-lru-${randomBytes(4).toString('hex')}:` }
    const wrapStore = (store: SessionStore): SessionStore => ({
      ...store,
      async findByTokenHash(hash) {
        const record = await store.findByTokenHash(hash)
        if (hold?.armed) {
          hold.armed = false
          hold.read.open()
          await hold.release.wait()
        }
        return record
      },
    })
    a = await startTestApp({ db, env, redisUrl: server.url, overrides: { wrapStore } })
    b = await startTestApp({ db, env, redisUrl: server.url })
  })
  afterAll(async () => {
    await a?.close()
    await b?.close()
    await server?.close()
    await db?.drop()
  })

  /** Writes filler until `gone` keys are all evicted, `warm` keys kept; asserts what it evicted and what it kept. */
  async function pressure(gone: string[], warm: string[]): Promise<void> {
    const filler = new Redis(server.url)
    const write = async (tag: string) => {
      const pipeline = filler.pipeline()
      for (let i = 0; i < 100; i++) pipeline.set(`filler:${tag}:${randomBytes(4).toString('hex')}:${i}`, randomBytes(1024).toString('hex'), 'EX', 600)
      await pipeline.exec()
    }
    const usedMemory = async () => Number(/used_memory:(\d+)/.exec(await filler.info('memory'))?.[1] ?? 0)
    try {
      // Redis's LRU clock ticks once a second and eviction samples keys, so within one second a key just read is no
      // younger than one just written. Two ticks order the keys: the keys to evict are a tick older than the filler
      // written short of the limit, which is a tick older than the kept keys, read again before every batch that
      // crosses it. Eviction then takes the oldest sampled key: the ones to evict long before any kept key.
      const tick = () => new Promise((resolve) => setTimeout(resolve, 1100))
      await tick()
      for (let batch = 0; batch < 200 && (await usedMemory()) < 12 * 2 ** 20; batch++) {
        for (const key of warm) await filler.get(key)
        await write(`before:${batch}`)
      }
      await tick()
      for (let batch = 0; batch < 300 && (await filler.exists(...gone)) > 0; batch++) {
        for (const key of warm) await filler.get(key)
        await write(`after:${batch}`)
      }
      expect(Number(/evicted_keys:(\d+)/.exec(await filler.info('stats'))?.[1] ?? 0)).toBeGreaterThan(0)
      expect(await filler.exists(...gone), `evicted: ${gone.join(', ')}`).toBe(0)
      if (warm.length > 0) expect(await filler.exists(...warm), `kept: ${warm.join(', ')}`).toBe(warm.length)
    } finally {
      filler.disconnect()
    }
  }

  it('with every index key of two sessions evicted and their entries kept, /invalidate by session and by user (no revoke) leaves nothing cached', async () => {
    const userId = await db.insertUser()
    const mine = [await db.insertSession({ userId }), await db.insertSession({ userId })] as const
    for (const session of mine) await cacheOnBoth({ db, a, b, session })
    const entries = mine.map((s) => a.keys.entry(hashToken(s.token)))
    const indexes = [...mine.map((s) => a.keys.sessionIndex(s.sessionId)), a.keys.userIndex(userId)]
    expect(await a.redis.exists(...indexes)).toBe(3)
    await pressure(indexes, entries)
    // Without revoke, so that no outbox row does the invalidation's work: only the hashes Postgres names can find them.
    expect((await a.invalidate({ sessionId: mine[0].sessionId })).json()).toEqual({ invalidated: 1, revoked: 0 })
    expect((await b.invalidate({ userId })).json()).toEqual({ invalidated: 1, revoked: 0 })
    expect(await a.redis.exists(...entries)).toBe(0)
    for (const app of [a, b]) {
      for (const session of mine) expect(await ask(app, session.token)).toMatchObject({ valid: true, source: 'postgres' })
    }
  })

  it('with a session\'s entry evicted, a fill read before /invalidate by session and by user, landing after it, is refused', async () => {
    const userId = await db.insertUser()
    const mine = [await db.insertSession({ userId }), await db.insertSession({ userId })] as const
    const entries = mine.map((s) => a.keys.entry(hashToken(s.token)))
    for (const session of mine) await cacheOnBoth({ db, a, b, session })
    await pressure(entries, [])

    // The first session asked on a: a miss, read from Postgres before the invalidations; its fill is held until after.
    hold = { armed: true, read: gate(), release: gate() }
    const early = ask(a, mine[0].token)
    await hold.read.wait()
    expect((await b.invalidate({ sessionId: mine[0].sessionId })).json()).toEqual({ invalidated: 0, revoked: 0 })
    expect((await b.invalidate({ userId })).json()).toEqual({ invalidated: 0, revoked: 0 })
    hold.release.open()
    expect(await early).toMatchObject({ valid: true, source: 'postgres' })
    await a.settle()
    expect(await a.redis.exists(entries[0]!), 'the late fill was refused').toBe(0)
    for (const session of mine) expect(await a.redis.exists(a.keys.tokenTombstone(hashToken(session.token)))).toBe(1)
    // Without revoke the sessions stay valid in Postgres, and every answer now comes from there, never from a cache.
    for (let round = 0; round < 3; round++) {
      for (const app of [a, b]) {
        for (const session of mine) expect(await ask(app, session.token)).toMatchObject({ valid: true, source: 'postgres' })
      }
      await Promise.all([a.settle(), b.settle()])
    }
  })
})
