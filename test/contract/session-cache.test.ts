import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import pino from 'pino'
import { createCacheCipher } from '../../src/cache/cipher.js'
import { createAnswerCodec } from '../../src/cache/codec.js'
import { createRedisSessionCache, defineCacheScripts, type GuardedRunner } from '../../src/cache/redis-session-cache.js'
import { keyScheme } from '../../src/cache/keys.js'
import { createGuardedRunner } from '../../src/redis/guarded-runner.js'
import { closeRedisPool, createRedisPool } from '../../src/redis/pool.js'
import { TEST_REDIS_URL } from '../support/env.js'
import { createMemorySessionCache } from '../fakes/memory-session-cache.js'
import { sessionCacheContract } from './session-cache.contract.js'

const silent = pino({ level: 'silent' })

sessionCacheContract('Redis (pool + breaker + scripts)', async (tombstoneTtlMs) => {
  const prefix = `ssc-contract-${randomBytes(4).toString('hex')}:`
  const pool = createRedisPool(
    { url: TEST_REDIS_URL, commandTimeoutMs: 1000, connectTimeoutMs: 1000, min: 1, max: 4, acquireTimeoutMs: 1000 },
    silent,
    defineCacheScripts,
  )
  const breaker = createGuardedRunner(
    pool,
    { timeoutMs: 2000, errorThresholdPercentage: 70, resetTimeoutMs: 1000, rollingCountTimeoutMs: 10_000, volumeThreshold: 10 },
    silent,
    { commandDone: () => undefined, breakerEvent: () => undefined },
  )
  const codec = createAnswerCodec(createCacheCipher([{ id: 'c1', secret: randomBytes(32).toString('base64') }]))
  const cache = createRedisSessionCache(breaker as unknown as GuardedRunner, keyScheme(prefix), tombstoneTtlMs, codec)
  return {
    cache,
    async close() {
      const admin = new Redis(TEST_REDIS_URL)
      const keys = await admin.keys(`${prefix}*`)
      if (keys.length > 0) await admin.del(...keys)
      admin.disconnect()
      breaker.shutdown()
      await closeRedisPool(pool)
    },
  }
})

sessionCacheContract('in-memory fake', async (tombstoneTtlMs) => ({
  cache: createMemorySessionCache(tombstoneTtlMs),
  close: async () => undefined,
}))
