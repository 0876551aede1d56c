import { createCacheCipher } from '../cache/cipher.js'
import { createAnswerCodec } from '../cache/codec.js'
import type { KeyScheme } from '../cache/keys.js'
import { createLocalSessionCache } from '../cache/local-session-cache.js'
import { createRedisSessionCache, type GuardedRunner } from '../cache/redis-session-cache.js'
import type { Config } from '../config.js'
import type { SessionCache } from '../domain/ports.js'
import type { Metrics } from '../telemetry/metrics.js'
import type { RedisResource } from './redis.js'

export interface CacheWiring {
  keys: KeyScheme
  metrics: Metrics
  /** A test seam: wraps the real cache (to hold or count calls). */
  wrapCache?: (cache: SessionCache) => SessionCache
}

/**
 * The session cache: Redis's (through the breaker, on the pool wiring/redis.ts opens and closes) and the in-process L1
 * tier when it is turned on. Nothing of its own to close.
 */
export function openCache(config: Config, redis: RedisResource, deps: CacheWiring) {
  const { keys, metrics } = deps
  const { breaker } = redis
  // User fields in Redis are sealed with AES-256-GCM; a value that does not open is a miss (and counted).
  const codec = createAnswerCodec(createCacheCipher(config.cache.encryptionKeys), {
    memoEntries: config.cache.decryptMemoEntries,
    onUndecodable: metrics.cacheUndecodable,
  })
  const tombstoneTtlMs = config.cache.tombstoneTtlSeconds * 1000
  const baseCache = createRedisSessionCache(breaker as unknown as GuardedRunner, keys, tombstoneTtlMs, codec, redis.ack)
  const cache = deps.wrapCache ? deps.wrapCache(baseCache) : baseCache
  // The L1 tier exists only when it is turned on (the subscriber that keeps it coherent always does: wiring/redis.ts).
  const local = config.cache.localTtlMs > 0 ? createLocalSessionCache(config.cache.localMaxEntries) : undefined
  return { cache, local }
}
