import type { FastifyInstance } from 'fastify'
import { defineCacheScripts, type ReplicaAck } from '../cache/redis-session-cache.js'
import type { Config } from '../config.js'
import { closeRedisClient, createRedisClient, type RedisClient } from '../redis/client.js'
import { createGuardedRunner } from '../redis/guarded-runner.js'
import { closeRedisPool, createRedisPool } from '../redis/pool.js'
import type { RecoverySignal } from '../redis/recovery.js'
import { createSwitchGuard } from '../redis/switch-guard.js'
import { readReplication, type MasterView } from '../redis/topology.js'
import { watchTopology } from '../redis/topology-watch.js'
import type { Log } from '../service/observer.js'
import type { Metrics } from '../telemetry/metrics.js'
import { startPoller, type Poller } from '../telemetry/poller.js'
import { createTopologyMetrics } from '../telemetry/topology-metrics.js'
import { wireRecovery } from './redis-recovery.js'

export interface RedisWiring {
  config: Config
  log: Log
  metrics: Metrics
  /** A master switched (Sentinel, Cluster): bound late, the revocation feed replays recent revocations into it. */
  onSwitch: () => void
}

/** How often each master's replication is read (connected replicas for WAIT, lag for the metrics). */
const REPLICATION_POLL_MS = 5000

/**
 * Redis, whichever topology: the pool of clients (with the cache's scripts), the breaker in front of it, the
 * subscriber every instance listens on, and for Sentinel and Cluster the watch for master switches and the poll of
 * each master's replicas. Opened here, closed on onClose (after whatever is built on them).
 */
export function wireRedis(app: FastifyInstance, deps: RedisWiring) {
  const { config, log, metrics } = deps
  const { topology } = config.redis
  const topologyMetrics = createTopologyMetrics(metrics.registry, topology.kind)
  const clientOptions = { ...config.redis, onRedirect: topologyMetrics.redirected }

  // Every data connection (pooled, and the subscriber): a reconnect on any of them is a recovery signal, and the
  // recovery probe asks every pooled one. After a Sentinel switch, one that comes back on the old master is dropped
  // instead (switch-guard.ts): it is no sign that Redis is back.
  const pooled = new Set<RedisClient>()
  const guard = createSwitchGuard(() => log.info({}, 'redis connection on the old master after a switch: dropped, it reconnects to the new one'))
  let signal: (kind: RecoverySignal) => void = () => undefined
  const pool = createRedisPool({ ...clientOptions, min: config.redis.poolMin, max: config.redis.poolMax }, log, (client) => {
    defineCacheScripts(client)
    pooled.add(client)
    guard.track(client)
    client.on('ready', () => {
      if (!guard.dropIfStale(client)) signal('reconnect')
    })
  }, (client) => pooled.delete(client))
  app.addHook('onClose', () => closeRedisPool(pool))
  // The breaker's per-call timer is each cache operation's one deadline, and what holds a request to the command
  // timeout: pooled connections have no ioredis per-command timer (pool.ts), which besides its cost would only start
  // when the command is written, and autopipelining holds a command back until the previous pipeline has its replies.
  const breaker = createGuardedRunner(pool, { ...config.breaker, timeoutMs: Math.min(config.breaker.timeoutMs, config.redis.commandTimeoutMs) }, log, {
    commandDone: metrics.redisCommandDone,
    breakerEvent: metrics.breakerEvent,
  })
  app.addHook('onClose', async () => {
    breaker.shutdown()
  })
  // Every instance hears every invalidation (epoch; L1 when on), so the subscriber exists whether or not L1 does.
  // On a Cluster it also watches for master switches: its slot map is refreshed every second, not every five.
  const subscriber = createRedisClient({ ...clientOptions, slotsRefreshIntervalMs: 1000 }, log)
  app.addHook('onClose', () => closeRedisClient(subscriber))
  // On the old master it would hear none of the invalidations published on the new one.
  guard.track(subscriber)
  subscriber.on('ready', () => {
    if (!guard.dropIfStale(subscriber)) signal('subscriber')
  })

  // Back on Redis as soon as it is back (redis-recovery.ts): a signal probes every pooled connection.
  const recovery = wireRecovery(app, { config, log, metrics, breaker, pooled, subscriber, stale: guard.stale })
  signal = recovery.signal

  let masters: MasterView[] = []
  let replicationPoll: Poller | undefined
  let watch: ReturnType<typeof watchTopology> | undefined
  const pollReplication = async () => {
    masters = await readReplication(pool)
    topologyMetrics.replication(masters)
  }
  app.addHook('onReady', async () => {
    // The pool's first connections are up (or have timed out trying) before the app answers: a command sent while a
    // connection is still opening fails at once (no offline queue), which would read as an outage at start-up.
    await pool.ready()
    watch = watchTopology({
      topology,
      client: subscriber,
      connectTimeoutMs: config.redis.connectTimeoutMs,
      log,
      onSwitch: (detail) => {
        log.warn(detail, 'redis master switched: not trusting Redis until recent revocations are replayed into the new master')
        topologyMetrics.failover()
        // Before the probe: a connection still on the old master must not count as Redis being back.
        if (topology.kind === 'sentinel') guard.switched(detail.to, [...pooled, subscriber])
        masters = []
        deps.onSwitch()
        signal('switch')
        void pollReplication().catch(() => undefined)
      },
    })
    replicationPoll = startPoller({
      name: 'redis-replication',
      intervalMs: REPLICATION_POLL_MS,
      timeoutMs: config.telemetry.pollTimeoutMs,
      log,
      run: pollReplication,
      failed: () => topologyMetrics.replication(null),
    })
  })
  app.addHook('onClose', async () => {
    watch?.close()
    await replicationPoll?.stop()
  })

  // WAIT counts the replicas that confirm an invalidation; with none connected it would only wait out its timeout.
  // A Cluster has no one connection to WAIT on: there a failover replays recent revocations instead.
  const ack: ReplicaAck = {
    timeoutMs: config.redis.waitTimeoutMs,
    replicas: () => {
      if (topology.kind === 'cluster' || config.redis.waitReplicas === 0 || masters.length !== 1) return 0
      const online = masters[0]!.replicas.filter((r) => r.state === 'online').length
      return Math.min(config.redis.waitReplicas, online)
    },
  }

  return {
    pool,
    breaker,
    subscriber,
    ack,
    /** Resolves once the breaker is not open, or after waitMs (the replay after a switch waits on it). */
    whenUsable: recovery.whenUsable,
    /** Called on every sign that Redis is (back) there: a switch, a connection ready, the breaker closing. */
    onBack: recovery.onBack,
    /** For /health/redis: the topology and what each master reported at the last poll. */
    topology: () => ({ kind: topology.kind, masters }),
  }
}

export type RedisResource = ReturnType<typeof wireRedis>
