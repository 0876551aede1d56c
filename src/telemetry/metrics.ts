import type { AnswerSource, InvalidReason } from '../domain/session.js'
import type { BreakerEvent, BreakerState } from '../redis/breaker.js'
import type { RedisInfoFigures } from '../redis/probe.js'
import type { SlowlogEntry } from '../redis/slowlog.js'
import type { CacheLookupOutcome, CacheWriteKind, CacheWriteOutcome, Log, ServiceObserver } from '../service/observer.js'
import { createKeyWatch, type KeyWatch, type KeyWatchOptions } from './key-watch.js'
import { declareMetrics, type MetricDeclarations } from './metric-declarations.js'
import { createStoreMetrics } from './store-metrics.js'
import { createRevocationMetrics } from './revocation-metrics.js'

const BREAKER_STATE_VALUE: Record<BreakerState, number> = { closed: 0, 'half-open': 1, open: 2 }

export interface PoolStatsSource {
  redisPool(): { size: number; available: number; borrowed: number; pending: number; max?: number }
  /** The pg.Pool's figures, when there is one to report. */
  pgPool?(): { total: number; idle: number; waiting: number; max: number }
}

export interface MetricsOptions {
  /** Hot keys and miss spikes (off when absent, or topK is 0). */
  keyWatch?: KeyWatchOptions
  /** Export the Redis INFO figures (the poller in wiring/telemetry.ts feeds them through redisInfo()). */
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

/** What is recorded and when, over the metrics metric-declarations.ts declares; one registry per app (tests build many). */
export function createMetrics(pools: PoolStatsSource, options: MetricsOptions = {}) {
  const metrics = declareMetrics(pools, options)
  const { registry, breakerState, breakerEvents, hotKeyRequests, missSpikes, mostMisses, hitRatio, info } = metrics
  const { redisCommandDuration, pgQueryDuration, cacheWrites, drainRequests, errors, slowlogEntries, slowlogDuration } = metrics
  const { cacheUndecodable } = metrics
  const breakerStateChild = breakerState.labels('redis')
  breakerStateChild.set(0)
  // Bound once: while the breaker is open every request counts a 'reject', and a label lookup costs more than the rest.
  const breakerEventCounter = boundChildren((event) => breakerEvents.labels('redis', event))
  for (const event of BREAKER_EVENTS) breakerEventCounter(event).inc(0)
  const breakerFallback = breakerEventCounter('fallback')

  // Hot keys and miss spikes over a window; gauges describe the last complete window.
  const watching = options.keyWatch && options.keyWatch.topK > 0 ? options.keyWatch : undefined
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

  const pgQueryChild = boundChildren((query, outcome) => pgQueryDuration.labels(query, outcome))
  // Once per request while Redis is down (every fill is skipped).
  const cacheWriteChild = boundChildren((kind, outcome) => cacheWrites.labels(kind, outcome))
  const commandOk = redisCommandDuration.labels('ok')
  const commandError = redisCommandDuration.labels('error')
  const counts = { hits: 0, misses: 0, errors: 0 }
  /** The last closed hot-key window, for /health/redis (the Studio dashboard's hot keys). */
  let windowStartedAt = Date.now()
  let lastWindow: { startedAt: number; closedAt: number; lookups: number; hot: Array<{ key: string; requests: number }> } | undefined

  const observer = serviceObserver(metrics, counts, keyWatch, breakerFallback, cacheWriteChild)

  return {
    registry,
    observer,
    revocation: createRevocationMetrics(registry),
    store: createStoreMetrics(registry),
    /** Hit, miss and cache-error totals since start, for /health/redis. */
    cacheCounts: () => ({ ...counts }),
    /** The last closed window's hot keys (8-hex ids only), or undefined before the first window closes. */
    lastHotKeyWindow: () => lastWindow,
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
      if (info) recordRedisInfo(info, figures)
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
     * Closes the hot-key window (a poller in wiring/telemetry.ts calls it, and tests): updates the window gauges and
     * returns what it saw, for the log line.
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
      const closedAt = Date.now()
      lastWindow = { startedAt: windowStartedAt, closedAt, lookups: hits + misses, hot: seen?.hot ?? [] }
      windowStartedAt = closedAt
      return { lookups: hits + misses, hits, hot: seen?.hot ?? [], mostMissed: seen?.mostMissed }
    },
    cacheUndecodable(reason: 'unknown_key' | 'rejected' | 'malformed') {
      cacheUndecodable.labels(reason).inc()
    },
  }
}

export type Metrics = ReturnType<typeof createMetrics>

/** The service's events (validations, cache reads and writes, invalidations) as counts and durations. */
function serviceObserver(
  metrics: MetricDeclarations,
  counts: { hits: number; misses: number; errors: number },
  keyWatch: KeyWatch | undefined,
  breakerFallback: { inc(): void },
  cacheWriteChild: (kind: string, outcome?: string) => { inc(): void },
): ServiceObserver {
  const { validations, validationDuration, cacheHits, cacheMisses, cacheErrors, negativeHits, negativeFills, singleFlight } = metrics
  const { invalidations, invalidationRequests, revocations } = metrics
  // Children bound once: the hot path does no label hashing.
  const validationChild = boundChildren((result, source) => validations.labels(result, source))
  const durationChild = {
    l1: validationDuration.labels('l1'),
    redis: validationDuration.labels('redis'),
    postgres: validationDuration.labels('postgres'),
  }

  return {
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
          counts.errors++
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
}

/** A Redis INFO poll's figures, or null when it failed. */
function recordRedisInfo(info: NonNullable<MetricDeclarations['info']>, figures: RedisInfoFigures | null): void {
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
}
