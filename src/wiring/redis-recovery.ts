import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import type { Config } from '../config.js'
import type { RedisClient } from '../redis/client.js'
import type { createGuardedRunner } from '../redis/guarded-runner.js'
import { withinDeadline } from '../redis/pool.js'
import { createRecovery, type RecoverySignal } from '../redis/recovery.js'
import type { Log } from '../service/observer.js'
import type { Metrics } from '../telemetry/metrics.js'
import { createRecoveryMetrics } from '../telemetry/recovery-metrics.js'

/** First backoff of a recovery probe after a failed one or a flap (doubling, at most BREAKER_RESET_TIMEOUT_MS). */
const RECOVERY_BACKOFF_MS = 100

export interface RecoveryWiring {
  config: Config
  log: Log
  metrics: Metrics
  breaker: ReturnType<typeof createGuardedRunner>
  /** Every pooled data connection now (the pool adds and removes them). */
  pooled: ReadonlySet<RedisClient>
  subscriber: RedisClient
  /** A connection left on a master the sentinels have switched away from (switch-guard.ts): not back yet. */
  stale?: (client: RedisClient) => boolean
}

/**
 * Back on Redis as soon as it is back (redis/recovery.ts): each signal (a master switch, a connection ready again)
 * hurries the connections still waiting out their reconnect backoff and, while the breaker is open, probes every
 * pooled connection and closes the breaker on success. Listeners (cache warming) hear every signal and every close.
 * Stopped on onClose, before the connections close.
 */
export function wireRecovery(app: FastifyInstance, deps: RecoveryWiring) {
  const { config, log, metrics, breaker, pooled, subscriber } = deps
  const recoveryMetrics = createRecoveryMetrics(metrics.registry)
  const recovery = createRecovery({
    breaker,
    probe: async () => {
      const clients = [...pooled]
      const notReady = clients.filter((c) => c.status !== 'ready' || deps.stale?.(c)).map((c) => (c.status === 'ready' ? 'on the old master' : c.status))
      if (clients.length === 0 || notReady.length > 0) throw new Error(`pooled connections not ready: ${notReady.join(', ')} (of ${clients.length})`)
      await withinDeadline(Promise.all(clients.map((c) => c.ping())), config.redis.commandTimeoutMs)
    },
    observer: {
      probing: () => metrics.breakerEvent('halfOpen', 'half-open'),
      probed: (kind, ok) => {
        recoveryMetrics.probed(kind, ok)
        if (!ok && breaker.opened) metrics.breakerStateIs('open')
      },
    },
    log,
    options: { resetTimeoutMs: config.breaker.resetTimeoutMs, baseBackoffMs: RECOVERY_BACKOFF_MS, stableMs: config.breaker.rollingCountTimeoutMs },
  })
  // Runs before the connections close (hooks run last-registered first): no reconnect is hurried after this.
  let closing = false
  app.addHook('onClose', async () => {
    closing = true
    recovery.stop()
  })
  /**
   * Connections waiting out their reconnect backoff are told to try now: one of their siblings (or the sentinels) just
   * showed that Redis answers again. Not for a Cluster client, which reconnects node by node itself.
   */
  const hurry = () => {
    for (const client of [...pooled, subscriber]) {
      if (client instanceof Redis && (client.status === 'reconnecting' || client.status === 'end')) client.connect().catch(() => undefined)
    }
  }
  // Told of every signal whatever the breaker's state, and of every close: cache warming checks for a cold cache then.
  const backListeners = new Set<(why: RecoverySignal | 'breaker-closed') => void>()
  breaker.on('close', () => {
    for (const listener of backListeners) listener('breaker-closed')
  })
  const signal = (kind: RecoverySignal) => {
    if (closing) return
    for (const listener of backListeners) listener(kind)
    if (!breaker.opened) return
    hurry()
    recovery.signal(kind)
  }

  return {
    signal,
    whenUsable: (waitMs: number) => recovery.whenUsable(waitMs),
    onBack(listener: (why: RecoverySignal | 'breaker-closed') => void) {
      backListeners.add(listener)
    },
  }
}
