import { LRUCache } from 'lru-cache'
import type { ActivityStore } from '../domain/ports.js'
import type { Log } from './observer.js'

export interface ActivityOptions {
  /** A session's activity is written at most once per interval (per instance; the SQL guards across instances). */
  intervalMs: number
  /** Uses waiting for the next flush; past it, a use is dropped (and counted) rather than queued. */
  maxPending: number
  /** How often pending uses go out, as one statement. */
  flushEveryMs: number
}

/** queued: a use will be written; written: rows changed; dropped: a use or a batch lost (pending full, store failed). */
export type ActivityOutcome = 'queued' | 'written' | 'dropped'

export interface ActivityDeps {
  store: ActivityStore
  counted: (outcome: ActivityOutcome, n: number) => void
  log: Log
  options: ActivityOptions
  now?: () => number
}

/** Sessions remembered as recently recorded; a flood of distinct sessions evicts the oldest (one extra write each). */
const RECENT_MEMORY = 100_000
const FAILURE_LOG_INTERVAL_MS = 10_000

/**
 * Keeps user_sessions.last_activity_at following use, off the request path: a valid answer costs one map lookup; uses
 * are coalesced per session (at most one per interval), collected in bounded memory and written in batches, one
 * statement per flush. Activity is a convenience, never worth slowing or failing a validation: when Postgres is slow
 * only one flush runs at a time, and uses beyond the bound, or in a batch that failed, are dropped and counted.
 */
export function createActivityRecorder(deps: ActivityDeps) {
  const { store, options } = deps
  const now = deps.now ?? Date.now
  // When each session was last recorded. Compared by hand rather than with lru-cache's ttl, whose clock is a 1 ms
  // timer re-armed on the hot path: a timer a millisecond for a convenience, and one that reorders a process's
  // other 1 ms timers.
  const recent = new LRUCache<string, number>({ max: RECENT_MEMORY })
  let pending = new Map<string, number>()
  let flushing: Promise<void> | undefined
  let lastFailureLog = 0
  let timer: NodeJS.Timeout | undefined

  function record(sessionId: string): void {
    const at = now()
    const last = recent.get(sessionId)
    if (last !== undefined && at - last < options.intervalMs) return
    recent.set(sessionId, at)
    if (pending.size >= options.maxPending) {
      deps.counted('dropped', 1)
      return
    }
    pending.set(sessionId, at)
    deps.counted('queued', 1)
  }

  async function writeBatch(batch: Map<string, number>): Promise<void> {
    try {
      deps.counted('written', await store.recordActivity(batch, options.intervalMs / 1000))
    } catch (err) {
      deps.counted('dropped', batch.size)
      const at = now()
      if (at - lastFailureLog >= FAILURE_LOG_INTERVAL_MS) {
        lastFailureLog = at
        deps.log.warn({ err: { message: (err as Error).message, code: (err as { code?: string }).code }, sessions: batch.size }, 'session activity not recorded (dropped)')
      }
    }
  }

  /** Sends what is pending now, unless a flush is still running (then this one waits for the next tick). */
  function flush(): Promise<void> {
    if (flushing || pending.size === 0) return flushing ?? Promise.resolve()
    const batch = pending
    pending = new Map()
    flushing = writeBatch(batch).finally(() => {
      flushing = undefined
    })
    return flushing
  }

  return {
    record,
    flush,
    start() {
      timer = setInterval(() => void flush(), options.flushEveryMs)
      timer.unref()
    },
    /** Stops the timer and sends what is pending (the caller bounds the wait). */
    async stop(): Promise<void> {
      clearInterval(timer)
      await flushing
      await flush()
    },
    get pending() {
      return pending.size
    },
  }
}

export type ActivityRecorder = ReturnType<typeof createActivityRecorder>
