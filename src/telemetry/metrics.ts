import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { AnswerSource, InvalidReason } from '../domain/session.js'
import type { BreakerEvent, BreakerState } from '../redis/breaker.js'
import type { RedisInfoFigures } from '../redis/probe.js'
import type { SlowlogEntry } from '../redis/slowlog.js'
import type { CacheLookupOutcome, CacheWriteKind, CacheWriteOutcome, Log, ServiceObserver } from '../service/observer.js'
import { createKeyWatch, type KeyWatchOptions } from './key-watch.js'
import { createRevocationMetrics } from './revocation-metrics.js'

/** Sub-millisecond hits up to multi-second stalls, so histogram_quantile can read p50 through p99.9. */
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

const BREAKER_STATE_VALUE: Record<BreakerState, number> = { closed: 0, 'half-open': 1, open: 2 }

export interface PoolStatsSource {
  redisPool(): { size: number; available: number; borrowed: number; pending: number; max?: number }
  /** The pg.Pool's figures, when there is one to report. */
  pgPool?(): { total: number; idle: number; waiting: number; max: number }
}

export interface MetricsOptions {
  /** Hot keys and miss spikes (off when absent, or topK is 0). */
  keyWatch?: KeyWatchOptions
  /** Export the Redis INFO figures (the poller in app.ts feeds them through redisInfo()). */
  redisInfo?: boolean
  /** For hot-key and miss-spike lines. */
  log?: Log
}

/** Breaker events counted from start (at 0), so rate() and the dashboard have a series before the first one. */
const BREAKER_EVENTS = ['open', 'halfOpen', 'close', 'reject', 'timeout', 'failure', 'fallback'] as const

/**
 * A metric's child for one or two label values, made once and remembered: prom-client's labels() builds and hashes
 * a label object on every call, which costs more than the increment itself on the request path.
 */
function boundChildren<C>(make: (a: string, b: string) => C): (a: string, b?: string) => C {
  const children = new Map<string, C>()
  return (a, b = '') => {
    const key = `${a}\u0000${b}`
    let child = children.get(key)
    if (child === undefined) children.set(key, (child = make(a, b)))
    return child
  }
}

/**
 * One registry per app (tests build many). Labels are small closed sets: never a token, hash or user id. (The one
 * exception in kind, session_hot_key_requests's `key`, is 8 hex characters of a token's hash, never more, for at most
 * TELEMETRY_HOT_KEYS_TOP_K series at a time.)
 */
export function createMetrics(pools: PoolStatsSource, options: MetricsOptions = {}) {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  // Gauges named *_total fail `promtool check metrics`; the per-type gauges (nodejs_active_handles{type}, ...) remain.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    registry.removeSingleMetric(name)
  }

  const validations = new Counter({
    name: 'session_validations_total',
    help: 'Validation answers, by result (valid or the reason) and source.',
    labelNames: ['result', 'source'] as const,
    registers: [registry],
  })
  const validationDuration = new Histogram({
    name: 'session_validation_duration_seconds',
    help: 'Time to answer a validation, by source.',
    labelNames: ['source'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  })
  const cacheHits = new Counter({ name: 'session_cache_hits_total', help: 'Validations answered from the cache.', registers: [registry] })
  const cacheMisses = new Counter({ name: 'session_cache_misses_total', help: 'Validations not in the cache.', registers: [registry] })
  const cacheErrors = new Counter({
    name: 'session_cache_errors_total',
    help: 'Cache reads that failed (Redis down, slow, or breaker open) and fell through to Postgres.',
    registers: [registry],
  })
  const negativeHits = new Counter({
    name: 'session_negative_cache_hits_total',
    help: 'Validations answered not valid from a cached negative answer (unknown, expired, revoked...), without Postgres.',
    registers: [registry],
  })
  const negativeFills = new Counter({
    name: 'session_negative_cache_fills_total',
    help: 'Not-valid answers written to the cache (NEGATIVE_CACHE_TTL_SECONDS), so repeats skip Postgres.',
    registers: [registry],
  })
  const singleFlight = new Counter({
    name: 'session_single_flight_joins_total',
    help: 'Cache misses that joined a Postgres read already in flight for the same token.',
    registers: [registry],
  })
  const cacheWrites = new Counter({
    name: 'session_cache_writes_total',
    help: 'Background cache writes, by kind and outcome (written, tombstoned, skipped, failed).',
    labelNames: ['kind', 'outcome'] as const,
    registers: [registry],
  })
  const invalidations = new Counter({
    name: 'session_invalidations_total',
    help: 'Cache entries removed by invalidations, by target kind.',
    labelNames: ['kind'] as const,
    registers: [registry],
  })
  const invalidationRequests = new Counter({
    name: 'session_invalidation_requests_total',
    help: 'Invalidation requests served, by target kind.',
    labelNames: ['kind'] as const,
    registers: [registry],
  })
  const revocations = new Counter({
    name: 'session_revocations_total',
    help: 'Sessions revoked in Postgres, by target kind.',
    labelNames: ['kind'] as const,
    registers: [registry],
  })
  const errors = new Counter({
    name: 'session_service_errors_total',
    help: 'Error answers, by stable error code.',
    labelNames: ['code'] as const,
    registers: [registry],
  })
  const drainRequests = new Counter({
    name: 'http_drain_requests_total',
    help:
      'Requests (health checks aside) that arrived after SIGTERM: served (during the drain delay, with Connection: ' +
      'close) or turned_away (503 SHUTTING_DOWN, once the listener had closed).',
    labelNames: ['outcome'] as const,
    registers: [registry],
  })
  // Both series from start, so a scrape during a drain shows a 0 rather than nothing.
  for (const outcome of ['served', 'turned_away'] as const) drainRequests.labels(outcome).inc(0)
  const cacheUndecodable = new Counter({
    name: 'session_cache_undecodable_total',
    help:
      'Cached values that could not be opened and were treated as misses, by reason: unknown_key (sealed with a key ' +
      'no longer in CACHE_ENCRYPTION_KEYS), rejected (tampered, moved, or a wrong key), malformed.',
    labelNames: ['reason'] as const,
    registers: [registry],
  })
  const breakerState = new Gauge({
    name: 'circuit_breaker_state',
    help: 'Breaker state: 0 closed, 1 half-open, 2 open.',
    labelNames: ['breaker'] as const,
    registers: [registry],
  })
  const breakerEvents = new Counter({
    name: 'circuit_breaker_events_total',
    help:
      'Breaker events: open, halfOpen, close, reject (skipped while open), timeout, failure, and fallback (a cache ' +
      'read that failed or was skipped, answered from Postgres instead).',
    labelNames: ['breaker', 'event'] as const,
    registers: [registry],
  })
  const redisCommandDuration = new Histogram({
    name: 'redis_command_duration_seconds',
    help:
      'Redis round trips through pool and breaker, by outcome: one per cache operation (a fill step, an invalidation), ' +
      "and one per event-loop turn for the validations' reads (pipelined together).",
    labelNames: ['outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  })
  const pgQueryDuration = new Histogram({
    name: 'postgres_query_duration_seconds',
    help: 'Postgres queries, by query name and outcome.',
    labelNames: ['query', 'outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  })
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read())
      },
    })
  gauge('redis_pool_size', 'Redis connections open.', () => pools.redisPool().size)
  gauge('redis_pool_available', 'Redis connections idle in the pool.', () => pools.redisPool().available)
  gauge('redis_pool_borrowed', 'Redis connections lent out.', () => pools.redisPool().borrowed)
  gauge('redis_pool_pending', 'Callers waiting for a Redis connection.', () => pools.redisPool().pending)
  gauge('redis_pool_max', 'Most Redis connections the pool opens (REDIS_POOL_MAX).', () => pools.redisPool().max ?? 0)
  if (pools.pgPool) {
    const pg = pools.pgPool
    gauge('postgres_pool_size', 'Postgres connections open.', () => pg().total)
    gauge('postgres_pool_available', 'Postgres connections idle in the pool.', () => pg().idle)
    gauge('postgres_pool_borrowed', 'Postgres connections running a query.', () => pg().total - pg().idle)
    gauge('postgres_pool_pending', 'Queries waiting for a Postgres connection.', () => pg().waiting)
    gauge('postgres_pool_max', 'Most Postgres connections the pool opens (DATABASE_POOL_MAX).', () => pg().max)
  }
  const breakerStateChild = breakerState.labels('redis')
  breakerStateChild.set(0)
  // Bound once: while the breaker is open every request counts a 'reject', and a label lookup costs more than the rest.
  const breakerEventCounter = boundChildren((event) => breakerEvents.labels('redis', event))
  for (const event of BREAKER_EVENTS) breakerEventCounter(event).inc(0)
  const breakerFallback = breakerEventCounter('fallback')

  // Redis INFO, refreshed by a poller (never by a request). The *_total series count what this process has seen
  // since it started (Redis's own counters restart with it); redis_up is 0 after a failed poll.
  const info = options.redisInfo
    ? {
        up: new Gauge({ name: 'redis_up', help: '1 when the last Redis INFO poll succeeded, 0 when it failed.', registers: [registry] }),
        usedMemory: new Gauge({ name: 'redis_memory_used_bytes', help: 'Redis used_memory (INFO).', registers: [registry] }),
        maxMemory: new Gauge({ name: 'redis_memory_max_bytes', help: 'Redis maxmemory (INFO); 0 means no limit.', registers: [registry] }),
        clients: new Gauge({ name: 'redis_connected_clients', help: 'Clients connected to Redis, all of them (INFO).', registers: [registry] }),
        evicted: new Counter({
          name: 'redis_evicted_keys_total',
          help: 'Keys Redis evicted for maxmemory, seen by this process since it started (INFO evicted_keys).',
          registers: [registry],
        }),
        expired: new Counter({
          name: 'redis_expired_keys_total',
          help: 'Keys Redis expired, seen by this process since it started (INFO expired_keys).',
          registers: [registry],
        }),
        last: { evicted: undefined as number | undefined, expired: undefined as number | undefined },
      }
    : undefined
  const slowlogEntries = new Counter({
    name: 'redis_slowlog_entries_total',
    help: 'New Redis SLOWLOG entries, by command name (unknown: entries rotated out between two polls).',
    labelNames: ['command'] as const,
    registers: [registry],
  })
  const slowlogDuration = new Counter({
    name: 'redis_slowlog_duration_seconds_total',
    help: 'Total execution time of the new Redis SLOWLOG entries, by command name.',
    labelNames: ['command'] as const,
    registers: [registry],
  })

  // Hot keys and miss spikes over a window; gauges describe the last complete window.
  const watching = options.keyWatch && options.keyWatch.topK > 0 ? options.keyWatch : undefined
  const missSpikes = new Counter({
    name: 'session_miss_spikes_total',
    help: 'Times one session missed the cache TELEMETRY_MISS_SPIKE_THRESHOLD times within one window (a stampede).',
    registers: [registry],
  })
  const hotKeyRequests = new Gauge({
    name: 'session_hot_key_requests',
    help: 'Lookups of the most requested sessions in the last window, by rank and key (8 hex chars of the token hash).',
    labelNames: ['rank', 'key'] as const,
    registers: [registry],
  })
  const mostMisses = new Gauge({
    name: 'session_key_misses_max',
    help: 'Most cache misses of one session in the last window.',
    registers: [registry],
  })
  const hitRatio = new Gauge({
    name: 'session_cache_hit_ratio',
    help: 'Cache hits / lookups in the last window (NaN when there were none).',
    registers: [registry],
  })
  hitRatio.set(Number.NaN)
  const keyWatch = watching
    ? createKeyWatch(watching, (key, misses) => {
        missSpikes.inc()
        options.log?.warn(
          { key, misses, threshold: watching.missSpikeThreshold },
          'miss spike: one session keeps missing the cache (a stampede, an invalidation loop, or a token being hammered)',
        )
      })
    : undefined
  const windowStart = { hits: 0, misses: 0 }

  // Children bound once: the hot path does no label hashing.
  const validationChild = boundChildren((result, source) => validations.labels(result, source))
  const durationChild = {
    l1: validationDuration.labels('l1'),
    redis: validationDuration.labels('redis'),
    postgres: validationDuration.labels('postgres'),
  }
  const pgQueryChild = boundChildren((query, outcome) => pgQueryDuration.labels(query, outcome))
  // Once per request while Redis is down (every fill is skipped).
  const cacheWriteChild = boundChildren((kind, outcome) => cacheWrites.labels(kind, outcome))
  const commandOk = redisCommandDuration.labels('ok')
  const commandError = redisCommandDuration.labels('error')
  const counts = { hits: 0, misses: 0 }

  const observer: ServiceObserver = {
    validated(source: AnswerSource, result: 'valid' | InvalidReason, seconds: number) {
      validationChild(result, source).inc()
      durationChild[source].observe(seconds)
    },
    cacheLookup(outcome: CacheLookupOutcome, tokenHash: string) {
      if (outcome === 'hit' || outcome === 'negative') {
        counts.hits++
        cacheHits.inc()
        if (outcome === 'negative') negativeHits.inc()
        keyWatch?.lookup(tokenHash, true)
      } else {
        counts.misses++
        cacheMisses.inc()
        if (outcome === 'error') {
          cacheErrors.inc()
          breakerFallback.inc()
        }
        keyWatch?.lookup(tokenHash, false)
      }
    },
    negativeCached() {
      negativeFills.inc()
    },
    singleFlightJoined() {
      singleFlight.inc()
    },
    cacheWrite(kind: CacheWriteKind, outcome: CacheWriteOutcome) {
      cacheWriteChild(kind, outcome).inc()
    },
    invalidated(kind, entries, revoked) {
      invalidationRequests.labels(kind).inc()
      invalidations.labels(kind).inc(entries)
      revocations.labels(kind).inc(revoked)
    },
  }

  return {
    registry,
    observer,
    revocation: createRevocationMetrics(registry),
    /** Hit and miss totals since start, for /health/redis. */
    cacheCounts: () => ({ ...counts }),
    redisCommandDone(ok: boolean, seconds: number) {
      ;(ok ? commandOk : commandError).observe(seconds)
    },
    breakerEvent(event: BreakerEvent, state: BreakerState) {
      breakerEventCounter(event).inc()
      breakerStateChild.set(BREAKER_STATE_VALUE[state])
    },
    /** The breaker's state without an event (a recovery probe that failed leaves it open: src/redis/recovery.ts). */
    breakerStateIs(state: BreakerState) {
      breakerStateChild.set(BREAKER_STATE_VALUE[state])
    },
    pgQueryDone(query: string, ok: boolean, seconds: number) {
      pgQueryChild(query, ok ? 'ok' : 'error').observe(seconds)
    },
    drainRequest(outcome: 'served' | 'turned_away') {
      drainRequests.labels(outcome).inc()
    },
    errorAnswered(code: string) {
      errors.labels(code).inc()
    },
    /** A Redis INFO poll's figures, or null when it failed. */
    redisInfo(figures: RedisInfoFigures | null) {
      if (!info) return
      if (!figures) {
        info.up.set(0)
        return
      }
      info.up.set(1)
      if (figures.usedMemoryBytes !== null) info.usedMemory.set(figures.usedMemoryBytes)
      if (figures.maxmemoryBytes !== null) info.maxMemory.set(figures.maxmemoryBytes)
      if (figures.connectedClients !== null) info.clients.set(figures.connectedClients)
      for (const [name, counter] of [
        ['evicted', info.evicted],
        ['expired', info.expired],
      ] as const) {
        const now = name === 'evicted' ? figures.evictedKeys : figures.expiredKeys
        if (now === null) continue
        const before = info.last[name]
        // The first poll sets the baseline; a smaller figure means Redis restarted and counts from 0 again.
        if (before !== undefined) counter.inc(now >= before ? now - before : now)
        info.last[name] = now
      }
    },
    /** New SLOWLOG entries; `missed` of them rotated out of the log before they could be read. */
    slowlog(entries: readonly SlowlogEntry[], missed: number) {
      for (const entry of entries) {
        slowlogEntries.labels(entry.command).inc()
        slowlogDuration.labels(entry.command).inc(entry.durationMicros / 1e6)
      }
      if (missed > 0) slowlogEntries.labels('unknown').inc(missed)
    },
    /**
     * Closes the hot-key window (a timer in app.ts calls it, and tests): updates the window gauges and returns what
     * it saw, for the log line.
     */
    closeWindow() {
      const hits = counts.hits - windowStart.hits
      const misses = counts.misses - windowStart.misses
      windowStart.hits = counts.hits
      windowStart.misses = counts.misses
      hitRatio.set(hits + misses === 0 ? Number.NaN : hits / (hits + misses))
      const seen = keyWatch?.rotate()
      hotKeyRequests.reset()
      seen?.hot.forEach((entry, i) => hotKeyRequests.labels(String(i + 1), entry.key).set(entry.requests))
      mostMisses.set(seen?.mostMissed?.misses ?? 0)
      return { lookups: hits + misses, hits, hot: seen?.hot ?? [], mostMissed: seen?.mostMissed }
    },
    cacheUndecodable(reason: 'unknown_key' | 'rejected' | 'malformed') {
      cacheUndecodable.labels(reason).inc()
    },
  }
}

export type Metrics = ReturnType<typeof createMetrics>
