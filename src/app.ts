import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import pino, { type DestinationStream } from 'pino'
import { defineCacheScripts, createRedisSessionCache, type GuardedRunner } from './cache/redis-session-cache.js'
import { startInvalidationFeed } from './cache/invalidation-feed.js'
import { keyScheme } from './cache/keys.js'
import { createLocalSessionCache } from './cache/local-session-cache.js'
import type { Config } from './config.js'
import type { SessionCache, SessionStore } from './domain/ports.js'
import { healthReport } from './health/report.js'
import { registerErrorHandling } from './http/error-handler.js'
import { healthRoutes } from './http/routes/health.js'
import { invalidateRoute } from './http/routes/invalidate.js'
import { metricsRoute } from './http/routes/metrics.js'
import { validateRoute } from './http/routes/validate.js'
import { serviceKeyCheck } from './http/service-key.js'
import { closeRedisClient, createRedisClient } from './redis/client.js'
import { createGuardedRunner } from './redis/guarded-runner.js'
import { closeRedisPool, createRedisPool, poolStats } from './redis/pool.js'
import { createBackgroundWrites } from './service/background-writes.js'
import { createInvalidator } from './service/invalidator.js'
import { createValidator } from './service/validator.js'
import { createPgPool, createPgSessionStore } from './store/pg-session-store.js'
import { loggerOptions, redactUrl } from './telemetry/logger.js'
import { createMetrics } from './telemetry/metrics.js'

/** Seams for tests and the benchmark: they wrap real adapters (to hold or count calls), they do not replace wiring. */
export interface AppOverrides {
  logStream?: DestinationStream
  wrapStore?: (store: SessionStore) => SessionStore
  wrapCache?: (cache: SessionCache) => SessionCache
  now?: () => number
}

const REQUEST_ID = /^[\w.:-]{1,128}$/

/** Honours a caller's x-request-id when it is safe to log; otherwise makes one. */
function requestId(req: IncomingMessage): string {
  const header = req.headers['x-request-id']
  return typeof header === 'string' && REQUEST_ID.test(header) ? header : randomUUID()
}

/**
 * The one composition root: constructs every adapter, wires the service, registers routes, and closes on app.close()
 * whatever it opened, in reverse order.
 */
export async function buildApp(config: Config, overrides: AppOverrides = {}) {
  const logger = overrides.logStream
    ? pino(loggerOptions({ ...config.log, pretty: false }), overrides.logStream)
    : pino(loggerOptions(config.log))

  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // No per-request lines at info: they cost throughput on the hot path; debug turns them on (below).
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'requestId' }),
    requestIdHeader: false,
    genReqId: requestId,
    bodyLimit: config.http.bodyLimitBytes,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
  }).withTypeProvider<TypeBoxTypeProvider>()
  const log = app.log

  let ready = false
  let draining = false

  // --- adapters
  const keys = keyScheme(config.redis.keyPrefix)
  const redisPool = createRedisPool(
    { ...config.redis, min: config.redis.poolMin, max: config.redis.poolMax },
    log,
    defineCacheScripts,
  )
  const metrics = createMetrics({ redisPool: () => poolStats(redisPool) })
  // The breaker's per-call timer is what holds a request to the command timeout. ioredis starts its own command
  // timer only when the command is written, and autopipelining holds a command back until the previous pipeline has
  // its replies: against a slow Redis a read would otherwise wait up to twice the command timeout.
  const breakerOptions = { ...config.breaker, timeoutMs: Math.min(config.breaker.timeoutMs, config.redis.commandTimeoutMs) }
  const breaker = createGuardedRunner(redisPool, breakerOptions, log, {
    commandDone: metrics.redisCommandDone,
    breakerEvent: metrics.breakerEvent,
  })
  const pgPool = createPgPool({ ...config.database, url: config.database.url ?? '' }, log)
  const baseStore = createPgSessionStore(pgPool, config.database.schema, metrics.pgQueryDone)
  const store = overrides.wrapStore ? overrides.wrapStore(baseStore) : baseStore
  const tombstoneTtlMs = config.cache.tombstoneTtlSeconds * 1000
  const baseCache = createRedisSessionCache(breaker as unknown as GuardedRunner, keys, tombstoneTtlMs)
  const cache = overrides.wrapCache ? overrides.wrapCache(baseCache) : baseCache
  // The L1 tier and the subscriber that keeps it coherent exist only when it is turned on.
  const local = config.cache.localTtlMs > 0 ? createLocalSessionCache(config.cache.localMaxEntries) : undefined
  const subscriber = local ? createRedisClient(config.redis, log) : undefined

  // --- service
  const writes = createBackgroundWrites(
    { retries: config.cache.writeRetries, baseDelayMs: config.cache.writeRetryBaseMs },
    metrics.observer,
    log,
  )
  const validator = createValidator({
    cache,
    local,
    cacheAvailable: () => !breaker.opened,
    store,
    writes,
    observer: metrics.observer,
    log,
    now: overrides.now,
    options: {
      ttlMs: config.cache.ttlSeconds * 1000,
      negativeTtlMs: config.cache.negativeTtlSeconds * 1000,
      // Half the tombstone's life: a fill older than that could outlive a tombstone written after its read.
      fillDeadlineMs: tombstoneTtlMs / 2,
      slidingTtl: config.cache.slidingTtl,
      slidingMinIntervalMs: config.cache.slidingMinIntervalSeconds * 1000,
      localTtlMs: config.cache.localTtlMs,
    },
  })
  if (local && subscriber) {
    startInvalidationFeed(subscriber, keys.invalidationChannel, local, log, validator.noteInvalidation)
  }
  const invalidator = createInvalidator({
    cache,
    local,
    onInvalidation: validator.noteInvalidation,
    store,
    writes,
    observer: metrics.observer,
    log,
    // Backoff from 20 ms doubling: eight retries span the breaker's default reset timeout.
    retryAttempts: 10,
  })
  const report = () =>
    healthReport({
      pool: redisPool,
      breaker: breaker as never,
      store,
      healthKey: `${keys.prefix}health`,
      timeoutMs: config.http.healthTimeoutMs,
      cacheCounts: metrics.cacheCounts,
      draining: () => draining,
      local,
    })

  // --- http
  registerErrorHandling(app, {
    tokenMaxLength: config.http.tokenMaxLength,
    bodyLimit: config.http.bodyLimitBytes,
    retryAfterSeconds: config.http.retryAfterSeconds,
    counted: metrics.errorAnswered,
  })
  // JSON only: a text/plain body is refused with 415 rather than parsed as a string.
  app.removeContentTypeParser('text/plain')
  // Callback style rather than async: no promise per request on the hot path.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id)
    done()
  })
  if (logger.isLevelEnabled('debug')) {
    app.addHook('onResponse', async (request, reply) => {
      request.log.debug({ method: request.method, url: request.url, statusCode: reply.statusCode, ms: reply.elapsedTime }, 'request completed')
    })
  }
  const requireKey = config.http.apiKeys.length > 0 ? serviceKeyCheck(config.http.apiKeys) : undefined
  await app.register(validateRoute, {
    validator,
    tokenMaxLength: config.http.tokenMaxLength,
    requireKey: config.http.requireKeyForValidate ? requireKey : undefined,
  })
  await app.register(invalidateRoute, { invalidator, tokenMaxLength: config.http.tokenMaxLength, requireKey })
  await app.register(healthRoutes, { report, ready: () => ready && !draining })
  await app.register(metricsRoute, { registry: metrics.registry })

  // --- lifecycle
  app.addHook('onReady', async () => {
    const first = await report()
    if (!first.redis.connected) {
      log.warn(
        { redisUrl: redactUrl(config.redis.url), error: first.redis.error },
        'Redis is unreachable: every validation is served from Postgres until it is back',
      )
    }
    for (const warning of first.redis.warnings) log.warn({ redisUrl: redactUrl(config.redis.url) }, warning)
    if (!first.postgres.connected) log.warn({}, 'Postgres is unreachable: uncached sessions will get 503')
    ready = true
  })
  app.addHook('onClose', async () => {
    ready = false
    // Writes already started (fills, invalidation retries) finish or give up before their connections close.
    await Promise.race([writes.settle(), new Promise((resolve) => setTimeout(resolve, 2000).unref())])
    breaker.shutdown()
    if (subscriber) await closeRedisClient(subscriber)
    await closeRedisPool(redisPool)
    await pgPool.end()
  })

  return Object.assign(app, {
    /** Flips readiness to 503 ahead of close(), so the load balancer stops sending before connections drain. */
    markDraining() {
      draining = true
    },
    internals: { redisPool, breaker, pgPool, metrics, writes, keys, store, cache, local, config },
  })
}

export type App = Awaited<ReturnType<typeof buildApp>>
export type AppInstance = FastifyInstance
