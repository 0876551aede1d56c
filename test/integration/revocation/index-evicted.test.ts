import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashToken } from '../../../src/domain/token.js'
import { startTestApp, type TestApp } from '../../support/app.js'
import { createTestDatabase, type TestDatabase } from '../../support/database.js'
import { startRedisServer, type RedisServer } from '../../support/redis-server.js'
import { ask, cacheOnBoth, revocationMatrix } from '../../support/revocation-matrix.js'

const LRU = ['--maxmemory', '16mb', '--maxmemory-policy', 'allkeys-lru']

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

  beforeAll(async () => {
    db = await createTestDatabase()
    server = await startRedisServer({ args: LRU })
    const env = { REDIS_KEY_PREFIX: `ssc-lru-${randomBytes(4).toString('hex')}:` }
    a = await startTestApp({ db, env, redisUrl: server.url })
    b = await startTestApp({ db, env, redisUrl: server.url })
  })
  afterAll(async () => {
    await a?.close()
    await b?.close()
    await server?.close()
    await db?.drop()
  })

  it('after Redis evicts keys to make room, /invalidate by session and by user still leaves nothing valid', async () => {
    const userId = await db.insertUser()
    const mine = [await db.insertSession({ userId }), await db.insertSession({ userId })]
    for (const session of mine) await cacheOnBoth({ db, a, b, session })
    // Filler until Redis has evicted: the session entries are read (kept warm) between rounds, the index keys not.
    const filler = new Redis(server.url)
    try {
      const evicted = async () => Number(/evicted_keys:(\d+)/.exec(await filler.info('stats'))?.[1] ?? 0)
      for (let round = 0; round < 40 && (await evicted()) < 1000; round++) {
        const pipeline = filler.pipeline()
        for (let i = 0; i < 500; i++) pipeline.set(`filler:${round}:${i}`, randomBytes(1024).toString('hex'), 'EX', 600)
        await pipeline.exec()
        for (const session of mine) await ask(a, session.token)
      }
      expect(await evicted()).toBeGreaterThan(0)
    } finally {
      filler.disconnect()
    }
    const [first, second] = mine as [(typeof mine)[0], (typeof mine)[0]]
    expect((await a.invalidate({ sessionId: first.sessionId, revoke: true })).statusCode).toBe(200)
    expect((await b.invalidate({ userId, revoke: true })).statusCode).toBe(200)
    for (const app of [a, b]) {
      for (const session of [first, second]) expect((await ask(app, session.token)).valid).toBe(false)
    }
  })
})
