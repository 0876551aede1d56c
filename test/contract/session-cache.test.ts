import { TEST_REDIS_URL } from '../support/env.js'
import { redisCacheUnderTest } from '../support/redis-cache.js'
import { createMemorySessionCache } from '../fakes/memory-session-cache.js'
import { sessionCacheContract } from './session-cache.contract.js'

sessionCacheContract('Redis (pool + breaker + scripts)', (tombstoneTtlMs) => redisCacheUnderTest(TEST_REDIS_URL, tombstoneTtlMs))

sessionCacheContract('in-memory fake', async (tombstoneTtlMs) => ({
  cache: createMemorySessionCache(tombstoneTtlMs),
  close: async () => undefined,
}))
