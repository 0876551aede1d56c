import type pg from 'pg'
import type { Config } from '../config.js'
import { poolStats, type RedisPool } from '../redis/pool.js'
import { infoFigures, readInfo } from '../redis/probe.js'
import { createSlowlogTracker, readSlowlog } from '../redis/slowlog.js'
import type { Log } from '../service/observer.js'
import { redactUrl } from '../telemetry/logger.js'
import { createMetrics, type Metrics } from '../telemetry/metrics.js'
import { startPoller, type Poller } from '../telemetry/poller.js'

/**
 * The metrics, as the configuration sets them. They report the pools, read late (the pools are opened after the
 * metrics, which they report into, and exist by any scrape).
 */
export function openMetrics(config: Config, log: Log, pools: { redis: () => RedisPool; pg: () => pg.Pool }) {
  return createMetrics(
    {
      redisPool: () => poolStats(pools.redis()),
      pgPool: () => {
        const pgPool = pools.pg()
        return { total: pgPool.totalCount, idle: pgPool.idleCount, waiting: pgPool.waitingCount, max: config.database.poolMax }
      },
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
}

export interface TelemetryWiring {
  config: Config
  log: Log
  metrics: Metrics
  redisPool: RedisPool
}

/**
 * The telemetry that polls (Redis INFO, SLOWLOG, the cache window): started once the app is ready, stopped first on
 * close (app.ts's lifecycle calls start and stop, in their place among the other steps). Timers are unref'd, every
 * poll goes through the pool (not the breaker) and is bounded by TELEMETRY_POLL_TIMEOUT_MS, none runs on a request.
 */
export function wireTelemetry(deps: TelemetryWiring) {
  const { config, log, metrics, redisPool } = deps
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

  return {
    start: startTelemetry,
    /** Stops every poller, waiting for a poll in flight. */
    stop: () => Promise.all(pollers.map((poller) => poller.stop())),
    /** Closes the cache window now (the poller does every TELEMETRY_WINDOW_SECONDS), and logs it. */
    closeWindow: closeTelemetryWindow,
  }
}

export type Telemetry = ReturnType<typeof wireTelemetry>
