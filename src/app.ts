import underPressure from '@fastify/under-pressure'
import type { FastifyInstance } from 'fastify'
import pino, { type DestinationStream } from 'pino'
import { createCacheCipher } from './cache/cipher.js'
import { createAnswerCodec } from './cache/codec.js'
import { createRedisSessionCache, type GuardedRunner } from './cache/redis-session-cache.js'
import { startInvalidationFeed } from './cache/invalidation-feed.js'
import { keyScheme } from './cache/keys.js'
import { createLocalSessionCache } from './cache/local-session-cache.js'
import type { Config } from './config.js'
import type { SessionCache, SessionStore } from './domain/ports.js'
import { healthReport } from './health/report.js'
import { createDrain, within } from './http/drain.js'
import { createFastify, loadSheddingOptions } from './http/fastify-setup.js'
import { registerErrorHandling } from './http/error-handler.js'
import { healthRoutes } from './http/routes/health.js'
import { invalidateRoute } from './http/routes/invalidate.js'
import { metricsRoute } from './http/routes/metrics.js'
import { validateRoute } from './http/routes/validate.js'
import { serviceKeyCheck } from './http/service-key.js'
import { poolStats } from './redis/pool.js'
import { createBackgroundWrites } from './service/background-writes.js'
import { createInvalidator } from './service/invalidator.js'
import { createValidator } from './service/validator.js'
import { boundStore } from './store/bounded-store.js'
import { createPgPool, createPgSessionStore } from './store/pg-session-store.js'
import { wireRedis } from './wiring/redis.js'
import { wireRevocation } from './wiring/revocation.js'
import { wireWarming } from './wiring/warming.js'
import type { WarmSource } from './domain/warm-source.js'
import { loggerOptions, redactUrl } from './telemetry/logger.js'
import { createMetrics } from './telemetry/metrics.js'
import { startPoller, type Poller } from './telemetry/poller.js'
import { tracingHandle } from './telemetry/tracing-state.js'
import { infoFigures, readInfo } from './redis/probe.js'
import { createSlowlogTracker, readSlowlog } from './redis/slowlog.js'

/** Seams for tests and the benchmark: they wrap real adapters (to hold or count calls), they do not replace wiring. */
export interface AppOverrides {
  logStream?: DestinationStream
  wrapStore?: (store: SessionStore) => SessionStore
  wrapCache?: (cache: SessionCache) => SessionCache
  wrapWarmSource?: (source: WarmSource) => WarmSource
  now?: () => number
}

/**
 * The one composition root: constructs every adapter, wires the service, registers routes, and closes on app.close()
 * whatever it opened, in reverse order.
 */
export async function buildApp(config: Config, overrides: AppOverrides = {}) {
  // Tracing code is loaded only when the bootstrap (src/telemetry/tracing.ts) started the SDK in this process.
  const spans = tracingHandle() ? await import('./telemetry/spans.js') : undefined
  const logExtra = { mixin: spans?.traceLogFields }
  const logger = overrides.logStream
    ? pino(loggerOptions({ ...config.log, pretty: false }, logExtra), overrides.logStream)
    : pino(loggerOptions(config.log, logExtra))

  const app = createFastify(config, logger)
  const log = app.log

  let ready = false
  // SIGTERM's drain: readiness 503 while still serving, then the listener closes (src/http/drain.ts).
  const drain = createDrain(app, { timeoutMs: config.shutdownTimeoutMs, log, counted: (outcome) => metrics.drainRequest(outcome) })

  // --- adapters
  const keys = keyScheme(config.redis.keyPrefix)
  // The metrics report Redis's pool, read late (the pool exists by any scrape); Redis reports into the metrics.
  const metrics = createMetrics(
    {
      redisPool: () => poolStats(redis.pool),
      pgPool: () => ({ total: pgPool.totalCount, idle: pgPool.idleCount, waiting: pgPool.waitingCount, max: config.database.poolMax }),
    },
    {
      keyWatch: {
        topK: config.telemetry.hotKeysTopK,
        capacity: config.telemetry.hotKeysCapacity,
        sampleEvery: config.telemetry.hotKeysSampleEvery,
        missSpikeThreshold: config.telemetry.missSpikeThreshold,
      },
      redisInfo: config.telemetry.redisInfoIntervalMs > 0,
      log,
    },
  )
  const redis = wireRedis(app, { config, log, metrics, onSwitch: () => void revocation.feed.replayRecent() })
  const { pool: redisPool, breaker, subscriber } = redis
  // Fastify runs onClose hooks last-registered first: each resource registers its close where it is opened, so
  // whatever is built on it afterwards is closed before it.
  const pgPool = createPgPool({ ...config.database, url: config.database.url ?? '' }, log)
  app.addHook('onClose', () => pgPool.end())
  const baseStore = createPgSessionStore(pgPool, config.database.schema, metrics.pgQueryDone)
  // Lookups are bounded (concurrency and a shedding queue) outside any test wrapper, so a wrapper sees what Postgres sees.
  const store = boundStore(
    overrides.wrapStore ? overrides.wrapStore(baseStore) : baseStore,
    {
      maxConcurrent: config.database.maxConcurrentLookups,
      maxQueue: config.database.lookupQueueMax,
      queueTimeoutMs: config.database.lookupQueueTimeoutMs,
    },
    log,
  )
  const tombstoneTtlMs = config.cache.tombstoneTtlSeconds * 1000
  // User fields in Redis are sealed with AES-256-GCM; a value that does not open is a miss (and counted).
  const codec = createAnswerCodec(createCacheCipher(config.cache.encryptionKeys), {
    memoEntries: config.cache.decryptMemoEntries,
    onUndecodable: metrics.cacheUndecodable,
  })
  const baseCache = createRedisSessionCache(breaker as unknown as GuardedRunner, keys, tombstoneTtlMs, codec, redis.ack)
  const cache = overrides.wrapCache ? overrides.wrapCache(baseCache) : baseCache
  // The L1 tier and the subscriber that keeps it coherent exist only when it is turned on.
  const local = config.cache.localTtlMs > 0 ? createLocalSessionCache(config.cache.localMaxEntries) : undefined
  // Postgres drives every revocation; the feed applies outbox rows through the invalidator (bound below).
  const revocation = wireRevocation(app, {
    config,
    pgPool,
    metrics,
    log,
    pgQueryDone: metrics.pgQueryDone,
    apply: (targets) => invalidator.applyRevocation(targets),
    forgetLocal: () => invalidator.forgetLocal(),
    cacheAvailable: () => !breaker.opened,
    waitForCache: redis.whenUsable,
    now: overrides.now,
  })

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
    cacheTrusted: revocation.feed.trusted,
    store,
    writes,
    observer: metrics.observer,
    log,
    now: overrides.now,
    options: {
      ttlMs: config.cache.ttlSeconds * 1000,
      negativeTtlMs: config.cache.negativeTtlSeconds * 1000,
      negativeMinMisses: config.cache.negativeMinMisses,
      // Half the tombstone's life: a fill older than that could outlive a tombstone written after its read.
      fillDeadlineMs: tombstoneTtlMs / 2,
      slidingTtl: config.cache.slidingTtl,
      slidingMinIntervalMs: config.cache.slidingMinIntervalSeconds * 1000,
      slidingIdleMs: config.cache.slidingIdleSeconds * 1000,
      localTtlMs: config.cache.localTtlMs,
      localRefreshAheadMs: config.cache.localRefreshAheadMs,
    },
  })
  const warming = wireWarming(app, { config, log, metrics, pgPool, redis, validator, cacheTrusted: revocation.feed.trusted, wrapSource: overrides.wrapWarmSource })
  startInvalidationFeed(subscriber, keys.invalidationChannel, local, log, validator.noteInvalidation)
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
  // With tracing on, each validation and invalidation is a span (the wrappers add nothing when it is off).
  const tracedValidator = spans ? spans.tracedValidator(validator, () => breaker.opened) : validator
  const tracedInvalidator = spans ? spans.tracedInvalidator(invalidator) : invalidator

  // --- telemetry that polls: started once the app is ready, stopped first on close. Timers are unref'd, every
  // poll goes through the pool (not the breaker) and is bounded by TELEMETRY_POLL_TIMEOUT_MS, none runs on a request.
  const pollers: Poller[] = []
  function closeTelemetryWindow() {
    const window = metrics.closeWindow()
    if (window.lookups > 0) {
      log.info(
        {
          windowSeconds: config.telemetry.windowSeconds,
          lookups: window.lookups,
          hitRatio: Math.round((window.hits / window.lookups) * 10_000) / 10_000,
          hotKeys: window.hot,
          mostMissed: window.mostMissed ?? null,
        },
        'cache window: hit ratio and hot keys (8 hex chars of the token hash)',
      )
    }
    return window
  }
  function startTelemetry() {
    const t = config.telemetry
    if (t.redisInfoIntervalMs > 0) {
      pollers.push(
        startPoller({
          name: 'redis-info',
          intervalMs: t.redisInfoIntervalMs,
          timeoutMs: t.pollTimeoutMs,
          log,
          run: async () => metrics.redisInfo(infoFigures(await readInfo(redisPool))),
          failed: () => metrics.redisInfo(null),
        }),
      )
    }
    if (t.slowlogIntervalMs > 0) {
      const slowlog = createSlowlogTracker(Math.floor(Date.now() / 1000))
      pollers.push(
        startPoller({
          name: 'redis-slowlog',
          intervalMs: t.slowlogIntervalMs,
          timeoutMs: t.pollTimeoutMs,
          log,
          run: async () => {
            let entries
            try {
              entries = await readSlowlog(redisPool, t.slowlogBatch)
            } catch (err) {
              if (!/NOPERM/.test((err as Error).message)) throw err
              log.warn({ redisUrl: redactUrl(config.redis.url) }, 'SLOWLOG is not permitted for this Redis user (ACL +slowlog|get): slow-log polling is off')
              return 'stop'
            }
            const { fresh, missed } = slowlog.fresh(entries)
            metrics.slowlog(fresh, missed)
            // The command's name and duration only: its arguments may name a token's hash or hold a session.
            for (const entry of fresh) log.warn({ command: entry.command, durationMs: entry.durationMicros / 1000 }, 'redis slow command')
            if (missed > 0) log.warn({ missed }, 'redis slow log: entries rotated out before they could be read')
          },
        }),
      )
    }
    pollers.push(
      startPoller({
        name: 'cache-window',
        intervalMs: t.windowSeconds * 1000,
        timeoutMs: t.pollTimeoutMs,
        immediate: false,
        log,
        run: async () => {
          closeTelemetryWindow()
        },
      }),
    )
  }

  const report = () =>
    healthReport({
      pool: redisPool,
      breaker: breaker as never,
      store,
      healthKey: `${keys.prefix}health`,
      timeoutMs: config.http.healthTimeoutMs,
      cacheCounts: metrics.cacheCounts,
      draining: () => drain.active,
      local,
      revocation: revocation.status,
      topology: redis.topology,
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
    // While draining: answered with Connection: close, or turned away (SHUTTING_DOWN) once the listener has closed.
    if (drain.active) done(drain.admit(request, reply))
    else done()
  })
  app.addHook('preClose', (done) => drain.closing(done))
  if (logger.isLevelEnabled('debug')) {
    app.addHook('onResponse', async (request, reply) => {
      request.log.debug({ method: request.method, url: request.url, statusCode: reply.statusCode, ms: reply.elapsedTime }, 'request completed')
    })
  }
  // Which service key a caller used (its id, never the key), for log lines and the audit trail.
  app.decorateRequest('serviceKeyId', null)
  const requireKey = config.http.apiKeys.length > 0 ? serviceKeyCheck(config.http.apiKeys) : undefined
  // The session routes shed load (503 OVERLOADED) while the event loop lags; health and metrics stay outside this
  // scope, so probes keep seeing the truth.
  await app.register(async (sessions) => {
    const shedding = loadSheddingOptions(config)
    if (shedding) await sessions.register(underPressure, shedding)
    await sessions.register(validateRoute, {
      validator: tracedValidator,
      tokenMaxLength: config.http.tokenMaxLength,
      requireKey: config.http.requireKeyForValidate ? requireKey : undefined,
    })
    await sessions.register(invalidateRoute, { invalidator: tracedInvalidator, tokenMaxLength: config.http.tokenMaxLength, requireKey })
  })
  await app.register(healthRoutes, { report, ready: () => ready && !drain.active })
  await app.register(metricsRoute, {
    registry: metrics.registry,
    requireKey: config.http.metricsKeys.length > 0 ? serviceKeyCheck(config.http.metricsKeys) : undefined,
  })

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
    if (config.cache.encryptionKeyEphemeral) {
      log.warn({}, 'CACHE_ENCRYPTION_KEYS is unset: cached values are sealed with a random per-process key (other instances cannot read them)')
    }
    if (config.env === 'production' && config.http.apiKeys.length === 0) {
      log.warn({}, 'SERVICE_API_KEYS is unset: /invalidate accepts anonymous calls')
    }
    const tracing = tracingHandle()
    if (tracing) log.info({ serviceName: tracing.serviceName, endpoint: config.tracing.endpoint }, 'tracing on: spans exported over OTLP/HTTP')
    else if (config.tracing.enabled) {
      log.warn({}, 'an OTLP endpoint is set but tracing was not bootstrapped: start with node --import ./dist/telemetry/tracing.js')
    }
    startTelemetry()
    ready = true
  })
  app.addHook('onClose', async () => {
    ready = false
    drain.closed()
    validator.stop()
    await Promise.all(pollers.map((poller) => poller.stop()))
    // Writes already started (fills, invalidation retries) get what is left of SHUTDOWN_TIMEOUT_MS before their
    // connections close; whatever is still retrying then is given up, and said so.
    const budgetMs = drain.writesBudgetMs()
    if (!(await within(writes.settle(), budgetMs))) {
      log.warn({ pending: writes.pending, budgetMs }, 'background cache writes still pending at the shutdown deadline: given up')
    }
  })

  return Object.assign(app, {
    /**
     * Flips readiness to 503 ahead of close(), so the load balancer stops sending before the listener closes; requests
     * are still served meanwhile, with Connection: close.
     */
    markDraining() {
      drain.begin()
    },
    internals: { redisPool, breaker, pgPool, metrics, writes, keys, store, cache, local, config, revocation, validator, warming, telemetry: { closeWindow: closeTelemetryWindow } },
  })
}

export type App = Awaited<ReturnType<typeof buildApp>>
export type AppInstance = FastifyInstance
