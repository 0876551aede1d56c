import type { LocalCache, SessionCache } from '../domain/ports.js'
import type { SessionAnswer } from '../domain/session.js'

export interface L1RefreshDeps {
  cache: SessionCache
  local: LocalCache
  /** Both must hold when a batch goes out; otherwise the batch is dropped and the answers age out of L1 as before. */
  cacheTrusted: () => boolean
  cacheAvailable: () => boolean
  /** Stores a re-read answer in L1 (with the life the validator gives any answer read from Redis). */
  keep: (tokenHash: string, answer: SessionAnswer, generation: number) => void
  /** How long queued refreshes wait for company before they go out together. */
  batchWindowMs: number
}

/**
 * Refresh-ahead for the L1 tier: an answer asked for near the end of its L1 life is re-read from Redis in the
 * background, so a hot answer does not drop out of L1 onto a request's path. Refreshes wait up to `batchWindowMs` and go
 * out in one event-loop turn, where the guarded runner gives them one breaker call and ioredis one pipelined write,
 * rather than one each. Off by default: it re-reads more often than expiry would, and npm run bench showed no
 * throughput gain (docs/architecture.md).
 *
 * No answer lives longer for it: the re-read answer gets the life any Redis hit gets (never past the cache TTL from its
 * Postgres read), and an invalidation heard after the batch began keeps every answer of the batch out of L1.
 */
export function createL1Refresher(deps: L1RefreshDeps) {
  const queued = new Set<string>()
  let timer: NodeJS.Timeout | undefined
  let stopped = false

  function flush(): void {
    timer = undefined
    const hashes = [...queued]
    queued.clear()
    if (stopped || !deps.cacheTrusted() || !deps.cacheAvailable()) return
    const generation = deps.local.generation()
    for (const tokenHash of hashes) {
      deps.cache.get(tokenHash).then(
        (answer) => {
          if (answer) deps.keep(tokenHash, answer, generation)
        },
        // A failed refresh changes nothing: the answer ages out of L1 and the next request reads as it would have.
        () => undefined,
      )
    }
  }

  return {
    /** Queues a re-read of this answer (once, however often it is asked for meanwhile). */
    queue(tokenHash: string): void {
      if (stopped || queued.has(tokenHash)) return
      queued.add(tokenHash)
      timer ??= setTimeout(flush, deps.batchWindowMs).unref()
    },
    /** Drops what is queued; nothing is sent after this (called when the app closes, before Redis does). */
    stop(): void {
      stopped = true
      queued.clear()
      if (timer) clearTimeout(timer)
      timer = undefined
    },
  }
}

export type L1Refresher = ReturnType<typeof createL1Refresher>
