import type { RevocationOutbox } from '../domain/ports.js'
import type { RevocationEvent } from '../domain/revocation.js'
import type { InvalidationTarget } from '../domain/session.js'
import type { Log } from './observer.js'
import { createOutboxPosition, type OutboxPosition } from './outbox-position.js'

/** After the breaker refused the replay: a short pause (it may be half-open, with its one trial call elsewhere). */
const REFUSED_RETRY_MS = 25

/** How an event reached this instance: its NOTIFY, the backstop poll, or a catch-up (start, reconnect). */
export type FeedPath = 'notify' | 'poll' | 'catchup'

export interface RevocationFeedObserver {
  applied(path: FeedPath, lagSeconds: number | null): void
  pending(events: number): void
  gap(): void
  lastApplied(id: number): void
}

export interface RevocationFeedOptions {
  /** The backstop: the outbox is read this often whatever the LISTEN connection does. */
  pollIntervalMs: number
  /** Rows per read. */
  batchSize: number
  /** An id below the newest one seen but not readable yet is an uncommitted (or rolled back) write: waited for this long. */
  holeGraceMs: number
  /** After the cache refused an event, it is retried this often until it lands. */
  retryMs: number
  /**
   * The longest a cache entry can outlive the Postgres read it came from (cache TTL, plus a fill landing late): at
   * start, rows written within it are applied again; after a gap, Redis is not trusted for it.
   */
  replayWindowMs: number
  /** Rows older than this are pruned (by whichever instance gets there first). */
  retentionMs: number
  pruneIntervalMs: number
  pruneBatch: number
}

export interface RevocationFeedDeps {
  outbox: RevocationOutbox
  /** The one invalidation path (entries, tombstones, fan-out, epoch). Throws when the cache cannot be reached. */
  apply(targets: InvalidationTarget[]): Promise<void>
  /** After a gap: forget everything this instance holds (L1, single-flight reads). */
  forgetLocal(): void
  /** False while the cache is known to be unusable (breaker open): the feed waits rather than fail at it. */
  cacheAvailable(): boolean
  /**
   * Resolves once the cache is usable again (the breaker closed), or after `waitMs`: the replay after a master switch
   * runs the moment a recovery probe closes the breaker, not on the next retry tick. Without it, the replay polls.
   */
  waitForCache?(waitMs: number): Promise<void>
  observer: RevocationFeedObserver
  log: Log
  options: RevocationFeedOptions
  now?: () => number
}

/**
 * Applies every outbox row to the cache, exactly as an /invalidate would, on every instance.
 *
 * Position (outbox-position.ts): every id at or below the floor has been applied (or was never committed); a hole,
 * an id below the newest seen that is not readable yet, is waited for `holeGraceMs` (its NOTIFY still arrives whenever
 * it commits).
 *
 * Trust: while an event the cache refused (Redis unreachable) has not yet been applied, or for a while after a gap
 * (below), Redis may hold an entry that should be gone. The validator then reads Postgres instead (`trusted()`), so
 * "valid" is never answered from a cache known to be behind.
 *
 * Gap: rows pruned before this instance applied them. Entries they concerned may still be in Redis. Rather than
 * enumerate the keyspace (the service's ACL refuses SCAN), this instance empties its L1 and does not trust Redis for
 * `replayWindowMs`: every entry lives at most the cache TTL from its Postgres read, so by then each entry that could
 * predate the gap has expired, and every entry left was filled from a read made after the gap was found.
 */
export function createRevocationFeed(deps: RevocationFeedDeps) {
  const { outbox, log, options } = deps
  const now = deps.now ?? Date.now
  const position = createOutboxPosition<Queued>(options, now)
  // Replays after a master switch still running: Redis is not trusted until they have landed.
  let replaying = 0
  let stopped = false
  const applier = createApplier(deps, position, now, { startedAtMs: () => reader.startedAtMs(), stopped: () => stopped })
  const reader = createOutboxReader(deps, position, applier, now, { stopped: () => stopped })

  return {
    /** Finds the starting position and replays recent rows; then polls. Resolves even when Postgres is down. */
    async start(): Promise<void> {
      await reader.start()
    },
    /** A NOTIFY named this row. */
    notified(id: number): void {
      if (position.seen(id) || position.floor === undefined) return
      outbox
        .readById(id)
        .then((event) => {
          if (event) applier.enqueue(event, 'notify')
        })
        .catch((err: unknown) => log.debug({ err, outboxId: id }, 'revocation feed: reading a notified row failed; the poll will'))
    },
    /** LISTEN is (again) in place: read what was committed while it was not. */
    listening(): void {
      void reader.catchUp('catchup')
    },
    /**
     * False while Redis is known to be behind: an event the cache refused is still waiting, or a gap was found
     * recently. (An event being applied normally takes a round trip, far inside the bounds: no need to stop trusting.)
     */
    trusted(): boolean {
      const distrustUntil = reader.distrustUntil()
      return !applier.stuck() && replaying === 0 && (distrustUntil === 0 || now() >= distrustUntil)
    },
    /**
     * A master switch may have lost writes the old master had acknowledged (replication is asynchronous): forget what
     * this instance holds, apply again every row of the last cache lifetime into the new master, and only then trust
     * Redis again. Retried every `retryMs` until it lands (Postgres and the new master both reachable).
     */
    async replayRecent(): Promise<void> {
      replaying++
      deps.forgetLocal()
      try {
        while (!stopped) {
          if (deps.waitForCache) await deps.waitForCache(options.retryMs)
          try {
            const applied = await replayWindow(deps, now)
            log.info({ applied }, 'revocation feed: recent revocations replayed into the new master; trusting Redis again')
            return
          } catch (err) {
            log.warn({ err: { message: (err as Error).message } }, 'revocation feed: replay after a master switch failed; retrying')
            // Refused by the open breaker: the wait at the top of the loop ends when it closes. Anything else (Postgres,
            // a Redis error) is retried on the tick.
            const refused = (err as { code?: string }).code === 'EOPENBREAKER' && deps.waitForCache !== undefined
            await new Promise((resolve) => setTimeout(resolve, refused ? REFUSED_RETRY_MS : options.retryMs).unref())
          }
        }
      } finally {
        replaying--
      }
    },
    status() {
      return {
        lastAppliedId: position.floor ?? null,
        pendingEvents: position.pending,
        replaying: replaying > 0,
        distrustedUntil: reader.distrustUntil() > now() ? new Date(reader.distrustUntil()).toISOString() : null,
        lagSeconds: applier.lastLagSeconds(),
      }
    },
    async stop(): Promise<void> {
      stopped = true
      reader.stopPolling()
      applier.stop()
      await reader.inFlight()
    },
  }
}

type Applier = ReturnType<typeof createApplier>

type Queued = { event: RevocationEvent; path: FeedPath }

/** What the feed's parts read of each other: when it started (lags are measured from then), and whether it stopped. */
interface FeedClock {
  startedAtMs(): number
  stopped(): boolean
}

/**
 * Applies queued events in order through the one invalidation path; stops at the first the cache refuses and retries
 * it every `retryMs`, Redis untrusted meanwhile (`stuck`).
 */
function createApplier(deps: RevocationFeedDeps, position: OutboxPosition<Queued>, now: () => number, feed: FeedClock) {
  const { observer, log, options } = deps
  // Set when the cache refused an event, cleared once the queue has drained: Redis is behind what Postgres said.
  let stuck = false
  let pumping = false
  let retryTimer: NodeJS.Timeout | undefined
  let lastLagSeconds: number | null = null

  function enqueue(event: RevocationEvent, path: FeedPath): void {
    if (!position.enqueue(event.id, { event, path })) return
    observer.pending(position.pending)
    void pump()
  }

  function scheduleRetry(): void {
    if (feed.stopped() || retryTimer) return
    retryTimer = setTimeout(() => {
      retryTimer = undefined
      void pump()
    }, options.retryMs)
    retryTimer.unref()
  }

  /** Applies queued events one at a time; stops at the first the cache refuses and retries it later. */
  async function pump(): Promise<void> {
    if (pumping || feed.stopped()) return
    if (position.pending > 0 && !deps.cacheAvailable()) {
      // Deferred is as good as refused: Redis stays untrusted, or the breaker's half-open trial (a validation) could
      // read an entry this event is waiting to remove.
      stuck = true
      scheduleRetry()
      return
    }
    pumping = true
    try {
      for (const [id, { event, path }] of position.queued()) {
        try {
          await deps.apply(event.targets)
        } catch (err) {
          if (!stuck) log.warn({ err: { message: (err as Error).message }, outboxId: id }, 'revocation feed: cache unreachable; reading Postgres until the event lands')
          stuck = true
          scheduleRetry()
          return
        }
        position.applied(id)
        const lag = event.writtenAtMs >= feed.startedAtMs() ? Math.max(0, now() - event.writtenAtMs) / 1000 : null
        if (lag !== null) lastLagSeconds = lag
        observer.applied(path, lag)
        observer.pending(position.pending)
      }
      if (stuck && position.pending === 0) {
        stuck = false
        log.info({}, 'revocation feed: caught up; trusting Redis again')
      }
      advance()
    } finally {
      pumping = false
    }
    // Events that arrived while the last one was being applied.
    if (position.pending > 0 && !retryTimer) void pump()
  }

  /** Moves the floor over every id applied, and over holes older than the grace. */
  function advance(): void {
    const floor = position.advance()
    if (floor !== undefined) observer.lastApplied(floor)
  }

  return {
    enqueue,
    advance,
    /** An event the cache refused is still waiting: Redis is behind what Postgres said. */
    stuck: () => stuck,
    lastLagSeconds: () => lastLagSeconds,
    stop: () => clearTimeout(retryTimer),
  }
}

/**
 * Reads the outbox into the applier: at start (after the replay window), on each poll, and on a catch-up (LISTEN back
 * in place). Finds gaps (rows pruned before they were applied) and prunes old rows.
 */
function createOutboxReader(deps: RevocationFeedDeps, position: OutboxPosition<Queued>, applier: Applier, now: () => number, feed: Pick<FeedClock, 'stopped'>) {
  const { outbox, observer, log, options } = deps
  let startedAtMs = 0
  // While now() is below this, a gap was found and Redis is not trusted (0: no gap).
  let distrustUntil = 0
  let catchingUp: Promise<void> | undefined
  let catchUpAgain = false
  let pollTimer: NodeJS.Timeout | undefined
  let lastPruneAt = 0

  async function readNewRows(path: FeedPath): Promise<void> {
    const floor = position.floor
    if (floor === undefined) {
      // Start: replay what is recent enough to concern a live entry (older entries have expired from the cache).
      startedAtMs = now()
      const [from, { prunedThrough }] = await Promise.all([outbox.lastIdBefore(startedAtMs - options.replayWindowMs), outbox.position()])
      position.start(from, prunedThrough)
    } else {
      const { prunedThrough } = await outbox.position()
      if (prunedThrough > floor) {
        log.warn(
          { appliedThrough: floor, prunedThrough },
          'revocation feed: outbox rows were pruned before this instance applied them; reading Postgres until every older cache entry has expired',
        )
        observer.gap()
        distrustUntil = now() + options.replayWindowMs
        deps.forgetLocal()
        position.jumpTo(prunedThrough)
      }
    }
    let after = position.floor!
    for (;;) {
      const rows = await outbox.readAfter(after, options.batchSize)
      for (const event of rows) applier.enqueue(event, path)
      if (rows.length < options.batchSize) break
      after = rows[rows.length - 1]!.id
    }
    applier.advance()
  }

  /** One catch-up at a time; a request during one runs another right after (it may have been asked for a reason). */
  function catchUp(path: FeedPath): Promise<void> {
    if (catchingUp) {
      catchUpAgain = true
      return catchingUp
    }
    catchingUp = (async () => {
      try {
        do {
          catchUpAgain = false
          await readNewRows(path)
        } while (catchUpAgain && !feed.stopped())
      } catch (err) {
        log.warn({ err }, 'revocation feed: reading the outbox failed; the next poll retries')
      } finally {
        catchingUp = undefined
      }
    })()
    return catchingUp
  }

  function schedulePoll(): void {
    if (feed.stopped()) return
    pollTimer = setTimeout(async () => {
      await catchUp('poll')
      if (now() - lastPruneAt >= options.pruneIntervalMs) {
        lastPruneAt = now()
        await pruneOutbox(deps, now)
      }
      schedulePoll()
    }, options.pollIntervalMs)
    pollTimer.unref()
  }

  return {
    catchUp,
    startedAtMs: () => startedAtMs,
    distrustUntil: () => distrustUntil,
    /** The first catch-up, then a poll every `pollIntervalMs` (and a prune every `pruneIntervalMs`). */
    async start(): Promise<void> {
      lastPruneAt = now()
      await catchUp('catchup')
      schedulePoll()
    },
    stopPolling: () => clearTimeout(pollTimer),
    /** The catch-up in flight, if any. */
    inFlight: () => catchingUp,
  }
}

async function pruneOutbox(deps: RevocationFeedDeps, now: () => number): Promise<void> {
  const { outbox, log, options } = deps
  try {
    let pruned = 0
    for (let i = 0; i < 10; i++) {
      const n = await outbox.prune(now() - options.retentionMs, options.pruneBatch)
      pruned += n
      if (n < options.pruneBatch) break
    }
    if (pruned > 0) log.info({ pruned }, 'revocation outbox pruned')
  } catch (err) {
    log.warn({ err }, 'revocation outbox prune failed; the next round retries')
  }
}

/** Applies again every row of the last replay window; returns how many. */
async function replayWindow(deps: RevocationFeedDeps, now: () => number): Promise<number> {
  const { outbox, observer, options } = deps
  let after = await outbox.lastIdBefore(now() - options.replayWindowMs)
  let applied = 0
  for (;;) {
    const rows = await outbox.readAfter(after, options.batchSize)
    for (const event of rows) {
      await deps.apply(event.targets)
      // Counted as a catch-up (what the RedisFailover runbook looks for); no lag: these rows are not new.
      observer.applied('catchup', null)
    }
    applied += rows.length
    if (rows.length < options.batchSize) break
    after = rows[rows.length - 1]!.id
  }
  return applied
}

export type RevocationFeed = ReturnType<typeof createRevocationFeed>
