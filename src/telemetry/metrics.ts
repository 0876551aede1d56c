import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { AnswerSource, InvalidReason } from '../domain/session.js'
import type { BreakerEvent, BreakerState } from '../redis/breaker.js'
import type { CacheWriteKind, CacheWriteOutcome, ServiceObserver } from '../service/observer.js'

/** Sub-millisecond hits up to multi-second stalls, so histogram_quantile can read p50 through p99.9. */
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

const BREAKER_STATE_VALUE: Record<BreakerState, number> = { closed: 0, 'half-open': 1, open: 2 }

export interface PoolStatsSource {
  redisPool(): { size: number; available: number; borrowed: number; pending: number }
}

/**
 * One registry per app (tests build many). Labels are small closed sets: never a token, hash or user id.
 */
export function createMetrics(pools: PoolStatsSource) {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })

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
  const breakerState = new Gauge({
    name: 'circuit_breaker_state',
    help: 'Breaker state: 0 closed, 1 half-open, 2 open.',
    labelNames: ['breaker'] as const,
    registers: [registry],
  })
  const breakerEvents = new Counter({
    name: 'circuit_breaker_events_total',
    help: 'Breaker events: open, halfOpen, close, reject, timeout, failure.',
    labelNames: ['breaker', 'event'] as const,
    registers: [registry],
  })
  const redisCommandDuration = new Histogram({
    name: 'redis_command_duration_seconds',
    help: 'Redis command round trips (through pool and breaker), by outcome.',
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
  breakerState.labels('redis').set(0)

  // Children bound once: the hot path does no label hashing.
  const validationChild = new Map<string, ReturnType<typeof validations.labels>>()
  const durationChild = {
    l1: validationDuration.labels('l1'),
    redis: validationDuration.labels('redis'),
    postgres: validationDuration.labels('postgres'),
  }
  const commandOk = redisCommandDuration.labels('ok')
  const commandError = redisCommandDuration.labels('error')
  const counts = { hits: 0, misses: 0 }

  const observer: ServiceObserver = {
    validated(source: AnswerSource, result: 'valid' | InvalidReason, seconds: number) {
      const key = source + result
      let child = validationChild.get(key)
      if (!child) {
        child = validations.labels(result, source)
        validationChild.set(key, child)
      }
      child.inc()
      durationChild[source].observe(seconds)
    },
    cacheLookup(outcome) {
      if (outcome === 'hit') {
        counts.hits++
        cacheHits.inc()
      } else {
        counts.misses++
        cacheMisses.inc()
        if (outcome === 'error') cacheErrors.inc()
      }
    },
    singleFlightJoined() {
      singleFlight.inc()
    },
    cacheWrite(kind: CacheWriteKind, outcome: CacheWriteOutcome) {
      cacheWrites.labels(kind, outcome).inc()
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
    /** Hit and miss totals since start, for /health/redis. */
    cacheCounts: () => ({ ...counts }),
    redisCommandDone(ok: boolean, seconds: number) {
      ;(ok ? commandOk : commandError).observe(seconds)
    },
    breakerEvent(event: BreakerEvent, state: BreakerState) {
      breakerEvents.labels('redis', event).inc()
      breakerState.labels('redis').set(BREAKER_STATE_VALUE[state])
    },
    pgQueryDone(query: string, ok: boolean, seconds: number) {
      pgQueryDuration.labels(query, ok ? 'ok' : 'error').observe(seconds)
    },
    errorAnswered(code: string) {
      errors.labels(code).inc()
    },
  }
}

export type Metrics = ReturnType<typeof createMetrics>
