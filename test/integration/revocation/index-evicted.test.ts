import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SessionStore } from '../../../src/domain/ports.js'
import { hashToken } from '../../../src/domain/token.js'
import { startTestApp, type TestApp } from '../../support/app.js'
import { createTestDatabase, type TestDatabase } from '../../support/database.js'
import { gate } from '../../support/gate.js'
import { startRedisServer, type RedisServer } from '../../support/redis-server.js'
import { ask, cacheOnBoth } from '../../support/revocation-matrix.js'

const LRU = ['--maxmemory', '16mb', '--maxmemory-policy', 'allkeys-lru']

/**
 * Memory pressure, now that a cached session is one key (its entry; no index by session or user id, src/cache/keys.ts):
 * what allkeys-lru can take from a session is its entry. Then the next validation reads Postgres and fills again, and
 * an invalidation finds no entry to remove. What must hold: a fill that read the session before the invalidation and
 * lands after it is refused (the invalidation tombstoned the token Postgres named), so nothing is answered from a
 * cache for it afterwards. Without revoke, so that no outbox row does the invalidation's work for it.
 */
describe('under real memory pressure (maxmemory 16mb, allkeys-lru): the entry evicted', () => {
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

  it('a fill read before /invalidate by session and by user, landing after it, is refused; every later answer is from Postgres', async () => {
    const userId = await db.insertUser()
    const mine = [await db.insertSession({ userId }), await db.insertSession({ userId })] as const
    const entries = mine.map((s) => a.keys.entry(hashToken(s.token)))
    for (const session of mine) await cacheOnBoth({ db, a, b, session })
    // Filler until Redis has evicted both entries (never read between rounds, so the least recently used).
    const filler = new Redis(server.url)
    try {
      const evicted = async () => Number(/evicted_keys:(\d+)/.exec(await filler.info('stats'))?.[1] ?? 0)
      for (let round = 0; round < 60 && (await filler.exists(...entries)) > 0; round++) {
        const pipeline = filler.pipeline()
        for (let i = 0; i < 500; i++) pipeline.set(`filler:${round}:${i}`, randomBytes(1024).toString('hex'), 'EX', 600)
        await pipeline.exec()
      }
      expect(await evicted()).toBeGreaterThan(0)
      expect(await filler.exists(...entries), 'both entries evicted').toBe(0)
    } finally {
      filler.disconnect()
    }

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
