import pRetry, { AbortError } from 'p-retry'
import type { CacheWriteKind, CacheWriteOutcome, Log, ServiceObserver } from './observer.js'

export interface BackgroundWriteOptions {
  retries: number
  baseDelayMs: number
}

type GaveUpOutcome = Exclude<CacheWriteOutcome, 'written' | 'failed'>

/** Why a write gave up. p-retry rejects with the error an AbortError wraps, so the outcome travels on this one. */
class GaveUp extends Error {
  constructor(readonly outcome: GaveUpOutcome) {
    super(outcome)
  }
}

/** Thrown by a write to say that retrying cannot help (cache unavailable, or past its deadline). */
export class GiveUp extends AbortError {
  constructor(outcome: GaveUpOutcome) {
    super(new GaveUp(outcome))
  }
}

/**
 * Cache writes happen off the request's critical path: each is retried with exponential backoff and jitter, a write
 * that still fails is counted and logged, never surfaced. Writes in flight are tracked so shutdown can wait for them.
 */
export function createBackgroundWrites(options: BackgroundWriteOptions, observer: ServiceObserver, log: Log) {
  const inFlight = new Set<Promise<void>>()

  /** Starts a write in the background; the promise it returns settles (never rejects) when the write is done. */
  function run(kind: CacheWriteKind, write: () => Promise<'written' | 'tombstoned'>, retries = options.retries): Promise<void> {
    const task = pRetry(write, {
      retries,
      factor: 2,
      minTimeout: options.baseDelayMs,
      maxTimeout: options.baseDelayMs * 2 ** Math.max(retries, 1),
      randomize: true,
      unref: true,
    }).then(
      (outcome) => observer.cacheWrite(kind, outcome),
      (err: unknown) => {
        if (err instanceof GaveUp) {
          observer.cacheWrite(kind, err.outcome)
          return
        }
        observer.cacheWrite(kind, 'failed')
        log.warn({ err, kind, attempts: retries + 1 }, 'cache write failed after retries')
      },
    )
    inFlight.add(task)
    void task.then(() => inFlight.delete(task))
    return task
  }

  return {
    run,
    get pending() {
      return inFlight.size
    },
    /** Resolves when every write started so far has finished (succeeded, or failed after its retries). */
    async settle(): Promise<void> {
      while (inFlight.size > 0) await Promise.allSettled([...inFlight])
    },
  }
}

export type BackgroundWrites = ReturnType<typeof createBackgroundWrites>
