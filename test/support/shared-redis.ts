import { Redis } from 'ioredis'
import { TEST_REDIS_URL } from './env.js'

/**
 * Removes what a test's server processes left in the shared Redis under `prefix` (their fills outlive them, with a
 * TTL). Cleanup only: a Redis that is gone has nothing left to clean, so it never fails the suite.
 */
export async function dropSharedRedisKeys(prefix: string): Promise<void> {
  const redis = new Redis(TEST_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false })
  try {
    await redis.connect()
    const keys = await redis.keys(`${prefix}*`)
    if (keys.length > 0) await redis.del(...keys)
  } catch {
    // See above.
  } finally {
    redis.disconnect()
  }
}
