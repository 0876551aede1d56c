import type { FastifyInstance } from 'fastify'
import type pg from 'pg'
import type { Config } from '../config.js'
import type { InvalidationTarget } from '../domain/session.js'
import type { Log } from '../service/observer.js'
import { createRevocationFeed } from '../service/revocation-feed.js'
import { startOutboxListener, type OutboxListener } from '../store/outbox-listener.js'
import { outboxChannel } from '../store/outbox-channel.js'
import { createPgOutbox } from '../store/pg-outbox.js'
import { pgConnectionOptions, type QueryObserver } from '../store/pg-session-store.js'
import type { Metrics } from '../telemetry/metrics.js'

export interface RevocationWiring {
  config: Config
  pgPool: pg.Pool
  metrics: Metrics
  log: Log
  pgQueryDone: QueryObserver
  /** The invalidator's entry points, bound late: the feed is built before the service that it drives. */
  apply: (targets: InvalidationTarget[]) => Promise<void>
  forgetLocal: () => void
  cacheAvailable: () => boolean
  /** Resolves once the breaker is not open, or after waitMs (src/redis/recovery.ts). */
  waitForCache?: (waitMs: number) => Promise<void>
  now?: () => number
}

/**
 * Postgres drives every revocation: the outbox (read over the pool), the feed that applies it, and one dedicated LISTEN
 * connection. Opened here, started on ready, closed on onClose (before the pg pool it reads through).
 */
export function wireRevocation(app: FastifyInstance, deps: RevocationWiring) {
  const { config, log, metrics } = deps
  const r = config.revocation
  const outbox = createPgOutbox(deps.pgPool, config.database.schema, deps.pgQueryDone)
  const feed = createRevocationFeed({
    outbox,
    apply: deps.apply,
    forgetLocal: deps.forgetLocal,
    cacheAvailable: deps.cacheAvailable,
    waitForCache: deps.waitForCache,
    observer: metrics.revocation.observer,
    log,
    now: deps.now,
    options: {
      pollIntervalMs: r.pollIntervalMs,
      batchSize: 500,
      holeGraceMs: r.holeGraceMs,
      retryMs: r.retryMs,
      // Entries live at most the cache TTL from their read; a fill may land up to half a tombstone's life later.
      replayWindowMs: (config.cache.ttlSeconds + config.cache.tombstoneTtlSeconds + 60) * 1000,
      retentionMs: r.retentionSeconds * 1000,
      pruneIntervalMs: r.pruneIntervalSeconds * 1000,
      pruneBatch: 1000,
    },
  })
  let listener: OutboxListener | undefined

  app.addHook('onReady', async () => {
    listener = startOutboxListener({
      connection: {
        ...pgConnectionOptions(r.listenUrl ?? '', config.database.ssl),
        connectionTimeoutMillis: config.database.connectTimeoutMs,
      },
      channel: outboxChannel(config.database.schema),
      reconnectMinMs: 50,
      reconnectMaxMs: r.reconnectMaxMs,
      heartbeatMs: r.pollIntervalMs,
      log,
      onNotify: (id) => feed.notified(id),
      onListening: () => {
        metrics.revocation.listenerConnected(true)
        feed.listening()
      },
      onLost: () => metrics.revocation.listenerConnected(false),
    })
    await feed.start()
  })
  async function close(): Promise<void> {
    await feed.stop()
    await listener?.close()
  }
  app.addHook('onClose', close)

  return {
    feed,
    /** Stops the feed and the LISTEN connection (onClose does; a test may earlier, to be deaf to the outbox). */
    close,
    /** For /health/redis and the tests that cut the LISTEN connection. */
    status: () => ({ listener: listener?.state ?? 'connecting', backendPid: listener?.backendPid ?? null, ...feed.status() }),
  }
}

export type Revocation = ReturnType<typeof wireRevocation>
