import { startRedisServer, type RedisServer } from '../../support/redis-server.js'
import { revocationMatrix } from '../../support/revocation-matrix.js'

// Redis goes down right before the session ends and comes back with its data (AOF, fsync always), stale entry
// included. SQL revocations are read while Redis is down, so Redis is not trusted until they land; an /invalidate
// answers 503 while Redis is down (the entry could not be dropped) and the caller retries until a 200.
let redis: RedisServer
const BREAKER_RESET_MS = 500

revocationMatrix({
  name: 'Redis stopped just before, restarted with its data just after',
  env: { BREAKER_RESET_TIMEOUT_MS: String(BREAKER_RESET_MS), REDIS_COMMAND_TIMEOUT_MS: '200' },
  async setup() {
    redis = await startRedisServer({ args: ['--appendonly', 'yes', '--appendfsync', 'always'] })
    return { redisUrl: redis.url, close: () => redis.close() }
  },
  async before() {
    await redis.stop()
  },
  expectStatus: () => 503,
  async after() {
    await redis.restart()
  },
  // Redis back, the breaker's reset, a retry or two.
  retryUntil200Ms: 5000,
  boundMs: (ending) => (ending.via === 'sql' ? 5000 : 0),
})
