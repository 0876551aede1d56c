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
  cacheCounts: () => { hits: number; misses: number }
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
  const { hits, misses } = deps.cacheCounts()
  const { pingMs, getMs, setMs, ...redisInfo } = redis
  return {
    status,
    draining: deps.draining(),
    redis: { ...redisInfo, ...(deps.topology ? { topology: deps.topology() } : {}) },
    circuitBreaker: { state },
    pool: poolStats(deps.pool),
    postgres: { connected: postgresConnected, ...(access ? { access } : {}) },
    sessionCache: {
      hits,
      misses,
      hitRate: hits + misses === 0 ? 0 : Math.round((hits / (hits + misses)) * 10_000) / 100,
      l1: deps.local ? { enabled: true, active: deps.local.active, size: deps.local.size } : { enabled: false },
    },
    performance: { pingMs, getMs, setMs },
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
