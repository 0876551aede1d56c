import type { FastifyInstance } from 'fastify'
import type { Config } from '../config.js'
import { within } from '../http/drain.js'
import type { SessionStore } from '../domain/ports.js'
import { createActivityRecorder } from '../service/activity-recorder.js'
import type { Log } from '../service/observer.js'
import { createStoreAccessMonitor } from '../service/store-access.js'
import { checkStoreAccess } from '../store/access-check.js'
import { boundStore } from '../store/bounded-store.js'
import { createPgActivityStore } from '../store/pg-activity.js'
import { classifyPgFailure } from '../store/pg-errors.js'
import { createPgPool, createPgSessionStore } from '../store/pg-session-store.js'
import type { QueryFailure } from '../store/timed-query.js'
import type { Metrics } from '../telemetry/metrics.js'

export interface PostgresWiring {
  config: Config
  log: Log
  metrics: Metrics
  /** A test seam: wraps the real store (to hold or count calls) inside the lookup bulkhead. */
  wrapStore?: (store: SessionStore) => SessionStore
  /** What is left of the shutdown budget for the last activity flush. */
  closeBudgetMs: () => number
}

/** A permanent query failure is logged at most this often per query and SQLSTATE: every miss would otherwise log one. */
const PERMANENT_LOG_INTERVAL_MS = 10_000

/**
 * Postgres, the truth: the pool, the session store behind its lookup bulkhead, the proof that the service's role can
 * do its work (store-access.ts), and last_activity_at recording. Opened here, started on ready, closed on onClose:
 * the activity flush first, then the pool (Fastify runs onClose hooks last-registered first).
 */
export function wirePostgres(app: FastifyInstance, deps: PostgresWiring) {
  const { config, log, metrics } = deps
  const db = config.database
  const pool = createPgPool({ ...db, url: db.url ?? '' }, log)
  app.addHook('onClose', () => pool.end())

  const permanentLogged = new Map<string, number>()
  /** Every store query reports here: its timing, its failure's kind, and what that says about the role's access. */
  function queryDone(name: string, ok: boolean, seconds: number, failure?: QueryFailure): void {
    metrics.pgQueryDone(name, ok, seconds)
    if (ok) {
      access.querySucceeded()
      return
    }
    if (!failure) return
    metrics.store.queryFailed(name, failure)
    if (failure.kind === 'transient') {
      access.connectionTrouble()
      return
    }
    const key = `${name}\u0000${failure.sqlstate}`
    const now = Date.now()
    if (now - (permanentLogged.get(key) ?? 0) >= PERMANENT_LOG_INTERVAL_MS) {
      permanentLogged.set(key, now)
      log.error(
        { query: name, sqlstate: failure.sqlstate, error: failure.message, fix: 'ops/postgres/runtime-role.sql' },
        'Postgres refused a query in a way no retry fixes (a missing privilege, column or table): answered 500 SESSION_STORE_MISCONFIGURED',
      )
    }
    access.permanentFailure()
  }

  const activityOn = config.activity.intervalSeconds > 0
  const access = createStoreAccessMonitor({
    check: () => checkStoreAccess(pool, db.schema, { activity: activityOn }),
    permanent: (err) => classifyPgFailure(err) === 'permanent',
    log,
    recheckMs: db.accessRecheckMs,
    fix: (role) => `psql -v ON_ERROR_STOP=1 -v role=${role} -v schema=${db.schema} -f ops/postgres/runtime-role.sql (as the tables' owner)`,
    stateChanged: metrics.store.accessState,
  })
  // An idle connection lost (a restart, a failover): whatever answers next may be another server.
  pool.on('error', () => access.connectionTrouble())

  const baseStore = createPgSessionStore(pool, db.schema, queryDone)
  // Lookups are bounded (concurrency and a shedding queue) outside any test wrapper, so a wrapper sees what Postgres sees.
  const store = boundStore(
    deps.wrapStore ? deps.wrapStore(baseStore) : baseStore,
    { maxConcurrent: db.maxConcurrentLookups, maxQueue: db.lookupQueueMax, queueTimeoutMs: db.lookupQueueTimeoutMs },
    log,
  )

  const intervalMs = config.activity.intervalSeconds * 1000
  const activity = activityOn
    ? createActivityRecorder({
        store: createPgActivityStore(pool, db.schema, queryDone),
        counted: metrics.store.activity,
        log,
        // A flush at least every 5 s: a session's use shows within about an interval plus that.
        options: { intervalMs, maxPending: config.activity.maxPending, flushEveryMs: Math.min(intervalMs, 5000) },
      })
    : undefined

  app.addHook('onReady', async () => {
    // Before the instance reports ready: a role that cannot see the rows must never answer.
    await access.start()
    activity?.start()
  })
  app.addHook('onClose', async () => {
    access.stop()
    if (activity && !(await within(activity.stop(), deps.closeBudgetMs()))) {
      log.warn({ pending: activity.pending }, 'session activity still being written at the shutdown deadline: given up')
    }
  })

  return { pool, store, queryDone, access, activity }
}

export type Postgres = ReturnType<typeof wirePostgres>
