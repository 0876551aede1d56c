import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { FastifyInstance } from 'fastify'
import type pg from 'pg'
import type { Config } from '../config.js'
import type { WarmSource } from '../domain/warm-source.js'
import { createWarmState } from '../redis/warm-state.js'
import { createCacheWarmer } from '../service/cache-warmer.js'
import type { Log } from '../service/observer.js'
import type { Validator } from '../service/validator.js'
import { createPgWarmSource } from '../store/pg-warm-source.js'
import type { Metrics } from '../telemetry/metrics.js'
import { createWarmMetrics } from '../telemetry/warm-metrics.js'
import type { RedisResource } from './redis.js'

export interface WarmingWiring {
  config: Config
  log: Log
  metrics: Metrics
  pgPool: pg.Pool
  redis: RedisResource
  validator: Validator
  /** Trusted: false while a revocation has not reached Redis (the revocation feed). */
  cacheTrusted: () => boolean
  /** Tests hold a batch between its read and its fills (a revocation in between). */
  wrapSource?: (source: WarmSource) => WarmSource
}

/**
 * Cache warming (service/cache-warmer.ts): checks for a cold cache once the app is ready, whenever Redis is back (a
 * switch, a reconnect, the breaker closing), and every CACHE_WARM_LOCK_TTL_MS. Off when CACHE_WARM_SESSIONS is 0.
 * Stopped on close before the connections it uses.
 */
export function wireWarming(app: FastifyInstance, deps: WarmingWiring) {
  const { config, log, redis } = deps
  const options = config.cache.warm
  if (options.sessions === 0) return { check: () => Promise.resolve() }
  const base = createPgWarmSource(deps.pgPool, config.database.schema, deps.metrics.pgQueryDone)
  const warmer = createCacheWarmer({
    source: deps.wrapSource ? deps.wrapSource(base) : base,
    state: createWarmState(redis.pool, config.redis.keyPrefix),
    prime: deps.validator.prime,
    usable: () => !redis.breaker.opened && deps.cacheTrusted(),
    owner: `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`,
    observer: createWarmMetrics(deps.metrics.registry),
    log,
    options,
  })
  let timer: NodeJS.Timeout | undefined
  redis.onBack((why) => void warmer.check(why))
  app.addHook('onReady', async () => {
    void warmer.check('start')
    timer = setInterval(() => void warmer.check('periodic'), options.lockTtlMs)
    timer.unref()
  })
  app.addHook('onClose', async () => {
    clearInterval(timer)
    await warmer.stop()
  })
  return { check: (reason: string) => warmer.check(reason) }
}
