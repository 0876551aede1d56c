import type { FillOutcome } from '../domain/ports.js'
import type { SessionRecord } from '../domain/session.js'
import type { WarmSource } from '../domain/warm-source.js'
import type { Log } from './observer.js'

export interface CacheWarmerOptions {
  /** How many of the most recently active live sessions to load; 0: warming is off. */
  sessions: number
  batchSize: number
  /** Fills per second at most, across the whole run. */
  ratePerSecond: number
  /** Fills in flight at most. */
  concurrency: number
  /** The lock's life; renewed before every batch. */
  lockTtlMs: number
}

/** Redis's part: whether the cache is cold, and the lock that lets one instance warm at a time (redis/warm-state.ts). */
export interface WarmStatePort {
  isCold(): Promise<boolean>
  lock(owner: string, ttlMs: number): Promise<boolean>
  renew(owner: string, ttlMs: number): Promise<boolean>
  release(owner: string): Promise<void>
  markWarm(detail: string): Promise<void>
}

export type WarmFill = FillOutcome | 'skipped' | 'failed'
export type WarmRunOutcome = 'done' | 'aborted' | 'failed'

export interface CacheWarmerObserver {
  started(): void
  filled(outcome: WarmFill): void
  progress(done: number, total: number): void
  finished(outcome: WarmRunOutcome, seconds: number): void
}

export interface CacheWarmerDeps {
  source: WarmSource
  state: WarmStatePort
  /** The normal fill protocol (validator.prime): refused under a tombstone, so a revoked session is never written. */
  prime(tokenHash: string, record: SessionRecord, readAtMs: number): Promise<FillOutcome | 'skipped'>
  /** False while the cache cannot be used (breaker open): a check does nothing, a run stops. */
  usable(): boolean
  /** Who holds the lock (host, pid, a random part): for the logs and the marker. */
  owner: string
  observer: CacheWarmerObserver
  log: Log
  options: CacheWarmerOptions
  now?: () => number
}

/** A check that found the cache unusable looks again this often, this many times (a replay after a switch, say). */
const UNUSABLE_RECHECK_MS = 1000
const UNUSABLE_RECHECKS = 120

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref())

/**
 * Cache warming: when the cache is found cold (no warm marker in Redis), the instance that takes the lock loads the
 * most recently active live sessions from Postgres, in batches, at a bounded rate and concurrency, and fills each one
 * through the normal fill protocol. Then it writes the marker, so neither it nor another instance warms that Redis
 * again until it loses its data.
 *
 * A check is cheap (one EXISTS) and single-flight: it runs at start, on every recovery signal, and periodically (so a
 * holder that died is replaced once its lock expires). A run stops when the cache becomes unusable, the lock is lost,
 * or the instance closes; without the marker, the next check runs it again.
 */
export function createCacheWarmer(deps: CacheWarmerDeps) {
  const { source, state, observer, log, options, owner } = deps
  const now = deps.now ?? Date.now
  let running: Promise<void> | undefined
  let stopped = false
  let recheck: NodeJS.Timeout | undefined
  let rechecksLeft = 0

  /**
   * A signal that Redis is back often comes while the cache is not usable yet (the breaker about to close, the replay
   * after a master switch still running): look again shortly, rather than at the next periodic check.
   */
  function recheckLater(reason: string): void {
    if (recheck || rechecksLeft <= 0 || stopped) return
    rechecksLeft--
    recheck = setTimeout(() => {
      recheck = undefined
      void check(reason, false)
    }, UNUSABLE_RECHECK_MS)
    recheck.unref()
  }

  async function fillAll(rows: Array<{ tokenHash: string; record: SessionRecord }>, readAtMs: number, pace: () => Promise<void>, counts: Record<WarmFill, number>) {
    let index = 0
    const worker = async () => {
      while (index < rows.length && !stopped && deps.usable()) {
        const row = rows[index++]!
        await pace()
        let outcome: WarmFill
        try {
          outcome = await deps.prime(row.tokenHash, row.record, readAtMs)
        } catch {
          outcome = 'failed'
        }
        counts[outcome]++
        observer.filled(outcome)
      }
    }
    await Promise.all(Array.from({ length: Math.min(options.concurrency, rows.length) }, worker))
  }

  async function warm(reason: string): Promise<void> {
    if (!deps.usable()) return recheckLater(reason)
    if (!(await state.isCold())) return
    if (!(await state.lock(owner, options.lockTtlMs))) {
      log.debug({ reason }, 'cache is cold; another instance holds the warming lock')
      return
    }
    const started = now()
    const counts: Record<WarmFill, number> = { written: 0, tombstoned: 0, skipped: 0, failed: 0 }
    let outcome: WarmRunOutcome = 'aborted'
    observer.started()
    try {
      log.info({ reason, sessions: options.sessions, owner }, 'cache is cold: warming the most recently active sessions from Postgres')
      const ids = await source.recentlyActive(options.sessions)
      const pace = pacer(options.ratePerSecond)
      for (let i = 0; i < ids.length; i += options.batchSize) {
        if (stopped || !deps.usable()) break
        if (i > 0 && !(await state.renew(owner, options.lockTtlMs))) {
          log.warn({ done: i, total: ids.length }, 'cache warming: the lock expired under this instance; stopping')
          break
        }
        const readAtMs = now()
        const rows = await source.records(ids.slice(i, i + options.batchSize))
        await fillAll(rows, readAtMs, pace, counts)
        const done = Math.min(i + options.batchSize, ids.length)
        observer.progress(done, ids.length)
        log.info({ done, total: ids.length, ...counts }, 'cache warming: progress')
        if (done === ids.length && !stopped && deps.usable()) outcome = 'done'
      }
      if (ids.length === 0) outcome = 'done'
      if (outcome === 'done') {
        await state.markWarm(JSON.stringify({ by: owner, at: new Date(now()).toISOString(), sessions: ids.length }))
        log.info({ seconds: (now() - started) / 1000, ...counts }, 'cache warming done')
      } else {
        log.warn({ ...counts }, 'cache warming stopped before the end (cache unusable, lock lost, or closing); the next check resumes it')
      }
    } catch (err) {
      outcome = 'failed'
      log.warn({ err: { message: (err as Error).message }, ...counts }, 'cache warming failed; the next check tries again')
    } finally {
      observer.finished(outcome, (now() - started) / 1000)
      await state.release(owner).catch(() => undefined)
    }
  }

  function check(reason: string, fresh = true): Promise<void> {
    if (options.sessions === 0 || stopped) return Promise.resolve()
    if (fresh) rechecksLeft = UNUSABLE_RECHECKS
    running ??= warm(reason)
      .catch((err: unknown) => log.debug({ err: { message: (err as Error).message }, reason }, 'cache warming check failed'))
      .finally(() => {
        running = undefined
      })
    return running
  }

  return {
    /** Warms if the cache is cold and no other instance is at it. Never rejects; a check during a run joins it. */
    check: (reason: string) => check(reason),
    /** Stops a run between fills (its lock is released) and refuses new ones. */
    async stop(): Promise<void> {
      stopped = true
      clearTimeout(recheck)
      await running
    },
  }
}

export type CacheWarmer = ReturnType<typeof createCacheWarmer>

/** One slot every 1000/rate ms, shared by the workers: the run's fill rate never exceeds ratePerSecond. */
function pacer(ratePerSecond: number) {
  const gapMs = 1000 / ratePerSecond
  let next = performance.now()
  return async () => {
    const at = performance.now()
    const slot = Math.max(at, next)
    next = slot + gapMs
    if (slot > at) await sleep(slot - at)
  }
}
