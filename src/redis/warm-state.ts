import type { RedisClient } from './client.js'
import { withConnection, type RedisPool } from './pool.js'

/** Deletes or extends the lock only while this instance still holds it (it may have expired and been taken). */
const RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
const RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"

/**
 * What cache warming keeps in Redis itself, beside the cache:
 * - `<prefix>warm:marker`: written when a warming completes. Its absence is what "cold" means: an empty Redis at a
 *   first start, a restart that lost its data, or a failover to a replica that never received it. It lives as long as
 *   the data it vouches for (no TTL), so whatever loses the data loses it too.
 * - `<prefix>warm:lock`: SET NX with a TTL, so one instance warms at a time; renewed while it works, and if its holder
 *   dies it expires and another instance's next check takes over.
 * Every call goes through the pool with the pool's deadline, not the breaker (like the telemetry polls).
 */
export function createWarmState(pool: RedisPool, prefix: string) {
  const marker = `${prefix}warm:marker`
  const lock = `${prefix}warm:lock`
  const run = <T>(op: (c: RedisClient) => Promise<T>) => withConnection(pool, op)
  return {
    async isCold(): Promise<boolean> {
      return (await run((c) => c.exists(marker))) === 0
    },
    async lock(owner: string, ttlMs: number): Promise<boolean> {
      return (await run((c) => c.set(lock, owner, 'PX', ttlMs, 'NX'))) === 'OK'
    },
    async renew(owner: string, ttlMs: number): Promise<boolean> {
      return Number(await run((c) => c.eval(RENEW, 1, lock, owner, String(ttlMs)))) === 1
    },
    async release(owner: string): Promise<void> {
      await run((c) => c.eval(RELEASE, 1, lock, owner))
    },
    async markWarm(detail: string): Promise<void> {
      await run((c) => c.set(marker, detail))
    },
  }
}

export type WarmState = ReturnType<typeof createWarmState>
