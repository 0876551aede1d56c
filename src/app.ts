import type { FastifyInstance } from 'fastify'
import pino, { type DestinationStream } from 'pino'
import { keyScheme } from './cache/keys.js'
import type { Config } from './config.js'
import type { SessionCache, SessionStore } from './domain/ports.js'
import type { WarmSource } from './domain/warm-source.js'
import { healthReport } from './health/report.js'
import { createDrain, within } from './http/drain.js'
import { createFastify } from './http/fastify-setup.js'
import { openCache } from './wiring/cache.js'
import { wireHttp } from './wiring/http.js'
import { wirePostgres } from './wiring/postgres.js'
import { wireRedis } from './wiring/redis.js'
import { wireRevocation } from './wiring/revocation.js'
import { wireService } from './wiring/service.js'
import { wireWarming } from './wiring/warming.js'
import { warnAtStartup } from './wiring/startup-warnings.js'
import { openMetrics, wireTelemetry } from './wiring/telemetry.js'
import { loggerOptions } from './telemetry/logger.js'
import { tracingHandle } from './telemetry/tracing-state.js'

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

  // --- resources
  const keys = keyScheme(config.redis.keyPrefix)
  // The metrics report the pools, read late (they exist by any scrape); Redis and Postgres report into the metrics.
  const metrics = openMetrics(config, log, { redis: () => redis.pool, pg: () => pgPool })
  const redis = wireRedis(app, { config, log, metrics, onSwitch: () => void revocation.feed.replayRecent() })
  const { pool: redisPool, breaker, subscriber } = redis
  // Fastify runs onClose hooks last-registered first: each resource registers its close where it is opened, so
  // whatever is built on it afterwards is closed before it.
  const postgres = wirePostgres(app, { config, log, metrics, wrapStore: overrides.wrapStore, closeBudgetMs: () => drain.writesBudgetMs() })
  const { pool: pgPool, store } = postgres
  const { cache, local } = openCache(config, redis, { keys, metrics, wrapCache: overrides.wrapCache })
  // Postgres drives every revocation; the feed applies outbox rows through the invalidator (bound below).
  const revocation = wireRevocation(app, {
    config,
    pgPool,
    metrics,
    log,
    pgQueryDone: postgres.queryDone,
    apply: (targets) => invalidator.applyRevocation(targets),
    forgetLocal: () => invalidator.forgetLocal(),
    cacheAvailable: () => !breaker.opened,
    waitForCache: redis.whenUsable,
    now: overrides.now,
  })

  // --- service
  const service = wireService({
    ...{ config, log, metrics, cache, local, breaker, store, postgres, subscriber, spans },
    cacheTrusted: revocation.feed.trusted,
    invalidationChannel: keys.invalidationChannel,
    now: overrides.now,
  })
  const { writes, validator, invalidator } = service
  // A cold cache (empty Redis, a failover to a replica without the data) is filled with the recently active sessions.
  const warming = wireWarming(app, { config, log, metrics, pgPool, redis, validator, cacheTrusted: revocation.feed.trusted, wrapSource: overrides.wrapWarmSource })
  const telemetry = wireTelemetry({ config, log, metrics, redisPool })

  const report = () =>
    healthReport({
      pool: redisPool,
      breaker: breaker as never,
      store,
      healthKey: `${keys.prefix}health`,
      timeoutMs: config.http.healthTimeoutMs,
      cacheCounts: metrics.cacheCounts,
      cacheTtlSeconds: config.cache.ttlSeconds,
      hotKeys: { capacity: config.telemetry.hotKeysCapacity, windowMs: config.telemetry.windowSeconds * 1000, last: metrics.lastHotKeyWindow },
      draining: () => drain.active,
      local,
      revocation: revocation.status,
      topology: redis.topology,
      storeAccess: () => ({ state: postgres.access.state, problems: postgres.access.problems }),
    })

  await wireHttp(app, {
    config,
    debug: logger.isLevelEnabled('debug'),
    drain,
    metrics,
    validator: service.tracedValidator,
    invalidator: service.tracedInvalidator,
    report,
    ready: () => ready && !drain.active && !postgres.access.refused(),
  })

  // --- lifecycle: after every resource's own onReady; closed before them (onClose hooks run last-registered first)
  app.addHook('onReady', async () => {
    await warnAtStartup(report, config, log)
    telemetry.start()
    ready = true
  })
  app.addHook('onClose', async () => {
    ready = false
    drain.closed()
    validator.stop()
    await telemetry.stop()
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
    internals: { redisPool, breaker, pgPool, postgres, metrics, writes, keys, store, cache, local, config, revocation, validator, warming, telemetry: { closeWindow: telemetry.closeWindow } },
  })
}

export type App = Awaited<ReturnType<typeof buildApp>>
export type AppInstance = FastifyInstance
