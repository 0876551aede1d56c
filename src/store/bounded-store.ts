import type { SessionStore } from '../domain/ports.js'
import { Errors } from '../errors.js'
import type { Log } from '../service/observer.js'

export interface LookupLimits {
  /** Lookups running at once (at most the pg pool's size, so the pool itself never queues them). */
  maxConcurrent: number
  /** Lookups waiting for a slot; one more is shed at once. */
  maxQueue: number
  /** Longest wait for a slot before the lookup is shed. */
  queueTimeoutMs: number
}

interface Waiter {
  resolve(): void
  reject(err: Error): void
  timer: NodeJS.Timeout
}

const SHED_LOG_INTERVAL_MS = 10_000

/**
 * A bulkhead in front of the store's lookups: at most `maxConcurrent` run, at most `maxQueue` wait (FIFO, each for at
 * most `queueTimeoutMs`), and anything beyond is refused at once with SESSION_STORE_BUSY (503 with Retry-After).
 * A flood of unknown tokens (every one a miss) then costs Postgres a fixed number of connections and the callers a
 * fast 503, instead of a queue that grows until every request, valid ones included, times out.
 * Only lookups are bounded: revocations are authenticated and rare, and the health check must see Postgres itself.
 * Shedding is logged at most once per 10 s (a flood must not become a log flood); every shed answer is counted by code
 * in session_service_errors_total.
 */
export function boundStore(store: SessionStore, limits: LookupLimits, log: Log) {
  let running = 0
  const queue: Waiter[] = []
  let shed = 0
  let lastShedLog = 0

  function refuse(why: 'queue full' | 'queue timeout'): Error {
    shed++
    const now = Date.now()
    if (now - lastShedLog >= SHED_LOG_INTERVAL_MS) {
      lastShedLog = now
      log.warn({ why, shedTotal: shed, running, queued: queue.length, ...limits }, 'shedding session lookups: Postgres is saturated')
    }
    return new Errors.StoreBusy()
  }

  function acquire(): Promise<void> | undefined {
    if (running < limits.maxConcurrent) {
      running++
      return undefined
    }
    if (queue.length >= limits.maxQueue) return Promise.reject(refuse('queue full'))
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const at = queue.indexOf(waiter)
          if (at >= 0) queue.splice(at, 1)
          reject(refuse('queue timeout'))
        }, limits.queueTimeoutMs),
      }
      waiter.timer.unref()
      queue.push(waiter)
    })
  }

  /** Hands the slot to the oldest waiter, or frees it. */
  function release(): void {
    const next = queue.shift()
    if (next) {
      clearTimeout(next.timer)
      next.resolve()
    } else {
      running--
    }
  }

  const bounded: SessionStore & { readonly stats: { running: number; queued: number; shed: number } } = {
    async findByTokenHash(tokenHash) {
      const wait = acquire()
      if (wait) await wait
      try {
        return await store.findByTokenHash(tokenHash)
      } finally {
        release()
      }
    },
    revoke: (target) => store.revoke(target),
    tokenHashes: (target) => store.tokenHashes(target),
    ping: () => store.ping(),
    close: () => store.close(),
    get stats() {
      return { running, queued: queue.length, shed }
    },
  }
  return bounded
}

export type BoundedStore = ReturnType<typeof boundStore>
