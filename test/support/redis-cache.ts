import { randomBytes } from 'node:crypto'
import pino from 'pino'
import { createCacheCipher } from '../../src/cache/cipher.js'
import { createAnswerCodec } from '../../src/cache/codec.js'
import { keyScheme } from '../../src/cache/keys.js'
import { createRedisSessionCache, defineCacheScripts, type GuardedRunner } from '../../src/cache/redis-session-cache.js'
import type { RedisTopology } from '../../src/config.js'
import { closeRedisClient, createRedisClient } from '../../src/redis/client.js'
import { createGuardedRunner } from '../../src/redis/guarded-runner.js'
import { closeRedisPool, createRedisPool } from '../../src/redis/pool.js'

const silent = pino({ level: 'silent' })

/**
 * The Redis SessionCache as the app builds it (pool + breaker + scripts), on any topology, for the contract suite.
 * Its keys are removed on close.
 */
export async function redisCacheUnderTest(url: string, tombstoneTtlMs: number, topology: RedisTopology = { kind: 'single' }) {
  const prefix = `ssc-contract-${randomBytes(4).toString('hex')}:`
  const options = { url, topology, commandTimeoutMs: 1000, connectTimeoutMs: 1000 }
  const pool = createRedisPool({ ...options, min: 1, max: 4, acquireTimeoutMs: 2000 }, silent, defineCacheScripts)
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
    prefix,
    async close() {
      // Every master's keys under the prefix (a Cluster spreads them), removed one by one (no cross-slot DEL).
      const admin = createRedisClient(options, silent)
      await admin.connect().catch(() => undefined)
      const nodes = 'nodes' in admin ? admin.nodes('master') : [admin]
      for (const node of nodes) {
        const keys = await node.keys(`${prefix}*`).catch(() => [] as string[])
        for (const key of keys) await node.del(key).catch(() => undefined)
      }
      await closeRedisClient(admin)
      breaker.shutdown()
      await closeRedisPool(pool)
    },
  }
}
