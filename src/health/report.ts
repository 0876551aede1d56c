import type CircuitBreaker from 'opossum'
import type { SessionStore } from '../domain/ports.js'
import { breakerState } from '../redis/breaker.js'
import { poolStats, type RedisPool } from '../redis/pool.js'
import { probeRedis, type RedisProbe, type RedisTimings } from '../redis/probe.js'
import type { StoreAccessProblem, StoreAccessState } from '../service/store-access.js'

export interface HealthDeps {
  pool: RedisPool
  breaker: CircuitBreaker<never[], unknown>
  store: SessionStore
  healthKey: string
  timeoutMs: number
  cacheCounts: () => { hits: number; misses: number; errors?: number }
  /** CACHE_TTL_SECONDS, reported as the Studio dashboard's sessionCache.metrics.ttl. */
  cacheTtlSeconds?: number
  /** The hot-key tracker's settings and its last closed window (key ids are 8 hex characters, never a hash). */
  hotKeys?: {
    capacity: number
    windowMs: number
    last: () => { startedAt: number; closedAt: number; lookups: number; hot: Array<{ key: string; requests: number }> } | undefined
  }
  draining: () => boolean
  /** The L1 tier, when it is turned on. */
  local?: { readonly active: boolean; readonly size: number }
  /** The Redis topology and what each master reported at the last poll. */
  topology?: () => { kind: string; masters: Array<{ address: string; role: string; connectedReplicas: number; replicas: Array<{ address: string; state: string; lagSeconds: number | null }> }> }
  /** Whether the service's Postgres role can do its work (service/store-access.ts), and what it lacks. */
  storeAccess?: () => { state: StoreAccessState; problems: readonly StoreAccessProblem[] }
  /** The revocation feed: the LISTEN connection's state and how far the outbox has been applied. */
  revocation?: () => {
    listener: string
    lastAppliedId: number | null
    pendingEvents: number
    replaying: boolean
    distrustedUntil: string | null
    lagSeconds: number | null
  }
}

export type HealthStatus = 'healthy' | 'degraded' | 'unhealthy'

/** Bytes as Redis's INFO `used_memory_human` writes them (1.50M), which the Studio dashboard shows as is. */
export function humanBytes(bytes: number): string {
  const units = ['B', 'K', 'M', 'G', 'T', 'P']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${bytes}B` : `${value.toFixed(2)}${units[unit]}`
}

/**
 * The Studio dashboard's hot keys (its RedisHealth.hotkeys) from the last closed window. The summary keeps counts,
 * not per-key times: firstSeen and lastAccessed are the window's bounds. A key is hot above 1/capacity of the window's
 * lookups, the share above which the summary is guaranteed to hold it.
 */
function hotKeysSection(hotKeys: HealthDeps['hotKeys']) {
  const window = hotKeys?.last()
  const threshold = window && hotKeys ? Math.max(1, Math.ceil(window.lookups / hotKeys.capacity)) : 1
  const spanMs = window ? Math.max(1, window.closedAt - window.startedAt) : 1
  const topHotkeys = (window?.hot ?? []).map((h) => ({
    key: h.key,
    accesses: h.requests,
    accessesPerMinute: Math.round((h.requests * 60_000) / spanMs),
    firstSeen: window!.startedAt,
    lastAccessed: window!.closedAt,
    isHot: h.requests > threshold,
  }))
  return {
    totalTracked: topHotkeys.length,
    totalAccesses: window?.lookups ?? 0,
    thresholdExceeded: topHotkeys.filter((h) => h.isHot).length,
    topHotkeys,
    detectorStats: {
      threshold,
      windowSizeMs: hotKeys?.windowMs ?? 0,
      maxTrackedKeys: hotKeys?.capacity ?? 0,
      trackedKeys: topHotkeys.length,
    },
  }
}

function withDeadline<T>(work: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(fallback), ms)
    timer.unref()
  })
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer))
}

const redisTimedOut: RedisProbe & RedisTimings = {
  connected: false,
  version: null,
  uptimeSeconds: null,
  usedMemoryBytes: null,
  maxmemoryBytes: null,
  maxmemoryPolicy: null,
  totalKeys: null,
  warnings: [],
  error: 'timed out',
  pingMs: null,
  getMs: null,
  setMs: null,
}

/**
 * The /health/redis body. Bounded in time (each check races a deadline) and never throws.
 * healthy: Redis and Postgres usable and the breaker closed. degraded: one of them is not (the service still
 * answers). unhealthy: neither is usable, the service is draining, or its Postgres role cannot do its work (a missing
 * grant or a row-level security policy: nothing it answered could be trusted); only then is it a 503.
 */
export async function healthReport(deps: HealthDeps) {
  const [redis, postgresConnected] = await Promise.all([
    withDeadline(probeRedis(deps.pool, deps.healthKey), deps.timeoutMs, redisTimedOut),
    withDeadline(
      deps.store.ping().then(
        () => true,
        () => false,
      ),
      deps.timeoutMs,
      false,
    ),
  ])
  const state = breakerState(deps.breaker as unknown as CircuitBreaker)
  const redisUsable = redis.connected && state !== 'open'
  const feed = deps.revocation?.()
  // Revocations still arrive by the poll while LISTEN is down, a little later: degraded, not unhealthy.
  const feedWell = !feed || (feed.listener === 'listening' && feed.pendingEvents === 0 && !feed.replaying && feed.distrustedUntil === null)
  const access = deps.storeAccess?.()
  const status: HealthStatus = deps.draining() || access?.state === 'misconfigured'
    ? 'unhealthy'
    : redisUsable && postgresConnected && feedWell
      ? 'healthy'
      : redisUsable || postgresConnected
        ? 'degraded'
        : 'unhealthy'
  const { hits, misses, errors: cacheErrors = 0 } = deps.cacheCounts()
  const { pingMs, getMs, setMs, ...redisInfo } = redis
  const pool = poolStats(deps.pool)
  const hitRate = hits + misses === 0 ? 0 : Math.round((hits / (hits + misses)) * 10_000) / 100
  // The Studio dashboard lists these as they are.
  const errors: string[] = []
  if (deps.draining()) errors.push('draining: this instance is shutting down')
  if (!redis.connected) errors.push(`redis: ${redis.error ?? 'not connected'}`)
  if (state === 'open') errors.push('circuit breaker open: Redis is bypassed, sessions are read from Postgres')
  if (!postgresConnected) errors.push('postgres: unreachable; uncached sessions are answered 503')
  if (!feedWell && feed) errors.push(`revocation feed: ${feed.listener}${feed.pendingEvents > 0 ? `, ${feed.pendingEvents} pending` : ''}`)
  return {
    status,
    // The Studio dashboard's RedisHealth fields are added beside the service's own (which stay): timestamp, redis.uptime
    // and usedMemory, sessionCache.enabled/healthy/metrics/pool, hotkeys, performance.ping/set/get and errors.
    timestamp: new Date().toISOString(),
    draining: deps.draining(),
    redis: {
      ...redisInfo,
      ...(redis.uptimeSeconds !== null ? { uptime: redis.uptimeSeconds } : {}),
      ...(redis.usedMemoryBytes !== null ? { usedMemory: humanBytes(redis.usedMemoryBytes) } : {}),
      ...(deps.topology ? { topology: deps.topology() } : {}),
    },
    circuitBreaker: { state },
    pool,
    postgres: { connected: postgresConnected, ...(access ? { access } : {}) },
    sessionCache: {
      hits,
      misses,
      hitRate,
      l1: deps.local ? { enabled: true, active: deps.local.active, size: deps.local.size } : { enabled: false },
      enabled: true,
      healthy: redisUsable,
      metrics: { hits, misses, errors: cacheErrors, total: hits + misses, hitRate, ttl: deps.cacheTtlSeconds ?? 0 },
      pool: { size: pool.size, available: pool.available, pending: pool.pending },
    },
    hotkeys: hotKeysSection(deps.hotKeys),
    performance: { pingMs, getMs, setMs, ping: pingMs, set: setMs, get: getMs },
    errors,
    ...(feed
      ? {
          revocationFeed: {
            state: feed.listener,
            lastAppliedId: feed.lastAppliedId,
            pendingEvents: feed.pendingEvents,
            replaying: feed.replaying,
            distrustedUntil: feed.distrustedUntil,
            lagSeconds: feed.lagSeconds,
          },
        }
      : {}),
  }
}

export type HealthReport = Awaited<ReturnType<typeof healthReport>>
