import { randomBytes } from 'node:crypto'
import pino from 'pino'
import { createCacheCipher } from '../../src/cache/cipher.js'
import { createAnswerCodec } from '../../src/cache/codec.js'
import { keyScheme } from '../../src/cache/keys.js'
import { createRedisSessionCache, defineCacheScripts, type GuardedRunner } from '../../src/cache/redis-session-cache.js'
import type { RedisTopology } from '../../src/config.js'
import { Redis } from 'ioredis'
import { createGuardedRunner } from '../../src/redis/guarded-runner.js'
import { closeRedisPool, createRedisPool } from '../../src/redis/pool.js'

const silent = pino({ level: 'silent' })

/**
 * The Redis SessionCache as the app builds it (pool + breaker + scripts), on any topology, for the contract suite.
 * Its keys are removed on close. `prefix` and `keyId` (of the one encryption key) shape key names and values, for a
 * test that measures their size.
 */
export async function redisCacheUnderTest(
  url: string,
  tombstoneTtlMs: number,
  topology: RedisTopology = { kind: 'single' },
  { prefix = `ssc-contract-${randomBytes(4).toString('hex')}:`, keyId = 'c1' }: { prefix?: string; keyId?: string } = {},
) {
  const options = { url, topology, commandTimeoutMs: 1000, connectTimeoutMs: 5000 }
  const pool = createRedisPool({ ...options, min: 1, max: 4, acquireTimeoutMs: 5000 }, silent, defineCacheScripts)
  // As the app does on ready: the first connection is up (a Cluster client has read the slot map) before any command.
  await pool.ready()
  const breaker = createGuardedRunner(
    pool,
    { timeoutMs: 2000, errorThresholdPercentage: 70, resetTimeoutMs: 1000, rollingCountTimeoutMs: 10_000, volumeThreshold: 10 },
    silent,
    { commandDone: () => undefined, breakerEvent: () => undefined },
  )
  const codec = createAnswerCodec(createCacheCipher([{ id: keyId, secret: randomBytes(32).toString('base64') }]))
  const keys = keyScheme(prefix)
  const cache = createRedisSessionCache(breaker as unknown as GuardedRunner, keys, tombstoneTtlMs, codec)
  return {
    cache,
    prefix,
    keys,
    async close() {
      // Every node's keys under the prefix (a Cluster spreads them), each removed by a plain connection to that node
      // (no cross-slot DEL, no Cluster client that could wait for the cluster's state), replicas' refusals ignored.
      const nodes = topology.kind === 'cluster' ? topology.nodes : [null]
      for (const node of nodes) {
        const direct = node ? new Redis({ host: node.host, port: node.port, lazyConnect: true, maxRetriesPerRequest: 0, commandTimeout: 2000 }) : new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, commandTimeout: 2000 })
        direct.on('error', () => undefined)
        try {
          await direct.connect()
          for (const key of await direct.keys(`${prefix}*`)) await direct.del(key).catch(() => undefined)
        } catch {
          // a node that is down has nothing to clean
        } finally {
          direct.disconnect()
        }
      }
      breaker.shutdown()
      await closeRedisPool(pool)
    },
  }
}
