import { LRUCache } from 'lru-cache'
import type { FillOutcome, LocalCache, SessionCache, SessionStore } from '../domain/ports.js'
import type { AnswerSource, SessionAnswer, SessionRecord } from '../domain/session.js'
import { judge, stillValid } from '../domain/verdict.js'
import { Errors } from '../errors.js'
import { GiveUp, type BackgroundWrites } from './background-writes.js'
import { createL1Refresher } from './l1-refresh.js'
import type { Log, ServiceObserver } from './observer.js'

export interface ValidatorOptions {
  ttlMs: number
  negativeTtlMs: number
  /** Misses of a not-valid token (within negativeTtlMs) before its answer is cached; 1: at once. */
  negativeMinMisses?: number
  /** A fill must land within this long of its Postgres read, or a tombstone that has since expired could be missed. */
  fillDeadlineMs: number
  slidingTtl: boolean
  slidingMinIntervalMs: number
  /** With sliding TTL, an entry not used for this long leaves the cache; never past ttlMs from its Postgres read. */
  slidingIdleMs: number
  /** Life of an answer in the L1 tier (when there is one). */
  localTtlMs: number
  /** An L1 answer asked for with less than this left of its life is re-read from Redis in the background; 0: never. */
  localRefreshAheadMs?: number
}

export interface ValidatorDeps {
  cache: SessionCache
  /** The optional L1 tier, consulted before Redis. */
  local?: LocalCache
  /** False while the cache is known to be unusable (breaker open): no fills are attempted. */
  cacheAvailable: () => boolean
  /**
   * False while the cache may hold an entry that a revocation already read here has not yet removed (the revocation
   * feed could not reach Redis): neither L1 nor Redis answers then, Postgres does.
   */
  cacheTrusted: () => boolean
  store: SessionStore
  /**
   * True while the store is known to refuse this service (a missing grant, row-level security hiding rows): every
   * validation then fails with SESSION_STORE_MISCONFIGURED, cached or not. A cache is only as right as the revocations
   * that reach it, and those are read through the same role.
   */
  storeRefused?: () => boolean
  /** Told of every session answered valid (any tier), for last_activity_at; must be cheap and must not throw. */
  sessionUsed?: (sessionId: string) => void
  writes: BackgroundWrites
  observer: ServiceObserver
  log: Log
  options: ValidatorOptions
  now?: () => number
}

export type Validation = SessionAnswer & { source: AnswerSource }

/** Hard cap on the sliding-TTL throttle map, so a flood of distinct tokens cannot grow it without bound. */
const SLIDE_MEMORY_LIMIT = 50_000
/** Not-valid tokens remembered for the negative-fill threshold; a flood of distinct ones evicts the oldest. */
const NOT_VALID_MEMORY = 10_000
/** Longest wait of a queued L1 refresh for others to go out with (a small fraction of any refresh-ahead window). */
const REFRESH_BATCH_WINDOW_MS = 5

/**
 * Cache-aside: [L1 →] Redis → Postgres → fill Redis in the background. A cache failure is a miss, never an answer; a
 * store failure propagates (the route turns it into a 503), never into valid:false.
 */
export function createValidator(deps: ValidatorDeps) {
  const { cache, local, observer, options } = deps
  const now = deps.now ?? Date.now
  const storeRefused = deps.storeRefused ?? (() => false)
  const sessionUsed = deps.sessionUsed

  const ttlFor = answerLife(options)

  /** `generation` was read before the answer was looked up, so an invalidation seen since keeps it out of L1. */
  function keepLocally(tokenHash: string, answer: SessionAnswer, generation: number): void {
    if (!local) return
    const at = now()
    // A cached "not valid" answer does not say when it was read: its L1 copy counts from now (it cannot resurrect).
    local.set(tokenHash, answer, ttlFor(answer, at, answer.valid ? answer.entry.readAtMs : at, options.localTtlMs), generation)
  }

  const refreshAheadMs = local ? (options.localRefreshAheadMs ?? 0) : 0
  const refresher =
    local && refreshAheadMs > 0
      ? createL1Refresher({
          cache,
          local,
          cacheTrusted: deps.cacheTrusted,
          cacheAvailable: deps.cacheAvailable,
          keep: (tokenHash, cached, generation) => keepLocally(tokenHash, stillValid(cached, now()), generation),
          batchWindowMs: Math.min(REFRESH_BATCH_WINDOW_MS, Math.floor(refreshAheadMs / 2)),
        })
      : undefined

  const { negativeFillDue, scheduleFill, maybeSlide } = createFills(deps, now, ttlFor)
  const reads = createStoreReads(deps, now, local, { negativeFillDue, scheduleFill, keepLocally })
  const { readStore } = reads

  /**
   * The L1 tier alone, synchronously: undefined when it has no answer. The route tries it before validate() so that an
   * L1 answer skips the Redis path's async frames and waits only for the end of its turn (http/turn-barrier.ts).
   */
  function validateLocally(tokenHash: string): Validation | undefined {
    if (!local || !deps.cacheTrusted() || storeRefused()) return undefined
    const kept = local.get(tokenHash)
    if (!kept) return undefined
    if (refresher && local.remainingMs(tokenHash) < refreshAheadMs) refresher.queue(tokenHash)
    const started = performance.now()
    const answer = stillValid(kept, now())
    observer.cacheLookup(kept.valid ? 'hit' : 'negative', tokenHash)
    observer.validated('l1', answer.valid ? 'valid' : answer.reason, (performance.now() - started) / 1000)
    if (answer.valid) sessionUsed?.(answer.entry.session.id)
    return { ...answer, source: 'l1' }
  }

  async function validate(tokenHash: string): Promise<Validation> {
    const fromLocal = validateLocally(tokenHash)
    if (fromLocal) return fromLocal
    if (storeRefused()) throw new Errors.StoreMisconfigured()
    const started = performance.now()
    const generation = local?.generation() ?? 0
    let cached: SessionAnswer | null = null
    if (!deps.cacheTrusted()) {
      observer.cacheLookup('miss', tokenHash)
    } else {
      try {
        cached = await cache.get(tokenHash)
        observer.cacheLookup(cached ? (cached.valid ? 'hit' : 'negative') : 'miss', tokenHash)
      } catch (err) {
        observer.cacheLookup('error', tokenHash)
        deps.log.debug({ err }, 'cache read failed; reading Postgres')
      }
    }

    let answer: SessionAnswer
    let source: AnswerSource
    if (cached) {
      const at = now()
      answer = stillValid(cached, at)
      source = 'redis'
      if (options.slidingTtl && answer.valid) maybeSlide(tokenHash, answer, at)
      keepLocally(tokenHash, answer, generation)
    } else {
      answer = await readStore(tokenHash)
      source = 'postgres'
    }
    observer.validated(source, answer.valid ? 'valid' : answer.reason, (performance.now() - started) / 1000)
    if (answer.valid) sessionUsed?.(answer.entry.session.id)
    return { ...answer, source }
  }

  const prime = createPrimer(deps, now, ttlFor, reads.reading)

  return {
    validate,
    validateLocally,
    prime,
    /** Called on every invalidation, before it is acknowledged: later requests no longer join earlier reads. */
    noteInvalidation() {
      reads.noteInvalidation()
    },
    /** Stops L1 refresh-ahead (nothing queued is sent): called on close, before the Redis connections close. */
    stop() {
      refresher?.stop()
    },
    /** How many invalidations this instance has heard of (its own, others' by pub/sub, the outbox's). */
    get epoch() {
      return reads.epoch
    },
  }
}

export type Validator = ReturnType<typeof createValidator>

/**
 * Cache warming's way in: a record read from Postgres at `readAtMs` (not through a validation) is filled by the same
 * protocol as a miss's answer: the same TTL rules and fill deadline, and the cache's own fill, which a tombstone
 * refuses, so a session revoked after the read is never written back. Only valid answers; skipped while the cache is
 * unusable or untrusted, or while a validation of the same token is reading Postgres (its fill is on its way).
 */
function createPrimer(deps: ValidatorDeps, now: () => number, ttlFor: ReturnType<typeof answerLife>, reading: (tokenHash: string) => boolean) {
  const { cache, observer, options } = deps
  return async function prime(tokenHash: string, record: SessionRecord, readAtMs: number): Promise<FillOutcome | 'skipped'> {
    if (!deps.cacheAvailable() || !deps.cacheTrusted() || reading(tokenHash)) return 'skipped'
    const at = now()
    const answer = judge(record, at, readAtMs)
    if (!answer.valid || at >= readAtMs + options.fillDeadlineMs) return 'skipped'
    const ttlMs = ttlFor(answer, at, readAtMs, options.slidingTtl ? options.slidingIdleMs : Infinity)
    if (ttlMs <= 0) return 'skipped'
    const outcome = await cache.fill(tokenHash, answer, ttlMs)
    observer.cacheWrite('fill', outcome)
    return outcome
  }
}

/**
 * What is left of an answer's life at `at`: at most `lifeMs`, never past its session's expiry, and never past the
 * cache TTL (or the negative TTL) counted from the Postgres read it came from, so that every copy (Redis, L1,
 * extended or not) is re-read from Postgres at least that often.
 */
function answerLife(options: ValidatorOptions) {
  return function ttlFor(answer: SessionAnswer, at: number, readAtMs: number, lifeMs = Infinity): number {
    const ceiling = readAtMs + (answer.valid ? options.ttlMs : options.negativeTtlMs) - at
    const life = Math.min(lifeMs, ceiling)
    return answer.valid ? Math.min(life, answer.entry.expiresAtMs - at) : life
  }
}

/**
 * The cache writes a validation leads to, in the background: a fill after each Postgres read (a not-valid answer only
 * once its token has missed negativeMinMisses times) and, with sliding TTL, a throttled extension of an entry in use.
 */
function createFills(deps: ValidatorDeps, now: () => number, ttlFor: ReturnType<typeof answerLife>) {
  const { cache, writes, observer, options } = deps
  const lastSlide = new Map<string, number>()
  const negativeMinMisses = options.negativeMinMisses ?? 1
  // Not-valid tokens that missed here recently, with how often: a negative fill costs a Redis write that only pays
  // off if the token is asked again, so the first miss(es) of a token only count.
  const notValidMisses =
    negativeMinMisses > 1 && options.negativeTtlMs > 0
      ? new LRUCache<string, number>({ max: NOT_VALID_MEMORY, ttl: options.negativeTtlMs, ttlAutopurge: false })
      : undefined

  /** Whether a not-valid answer read from Postgres is worth a negative fill now. */
  function negativeFillDue(tokenHash: string): boolean {
    if (!notValidMisses) return true
    const misses = (notValidMisses.get(tokenHash) ?? 0) + 1
    if (misses >= negativeMinMisses) {
      notValidMisses.delete(tokenHash)
      return true
    }
    // The count's life starts at its first miss, as a negative entry's would.
    notValidMisses.set(tokenHash, misses, { noUpdateTTL: misses > 1 })
    return false
  }

  function scheduleFill(tokenHash: string, answer: SessionAnswer, readStartedAt: number): Promise<void> {
    if (!deps.cacheAvailable()) {
      observer.cacheWrite('fill', 'skipped')
      return Promise.resolve()
    }
    const deadline = readStartedAt + options.fillDeadlineMs
    return writes.run('fill', async () => {
      const at = now()
      if (at >= deadline) throw new GiveUp('skipped')
      const ttlMs = ttlFor(answer, at, readStartedAt, options.slidingTtl ? options.slidingIdleMs : Infinity)
      if (ttlMs <= 0) throw new GiveUp('skipped')
      if (!deps.cacheAvailable()) throw new GiveUp('skipped')
      const outcome = await cache.fill(tokenHash, answer, ttlMs)
      if (!answer.valid && outcome === 'written') observer.negativeCached()
      return outcome
    })
  }

  function maybeSlide(tokenHash: string, answer: SessionAnswer & { valid: true }, at: number): void {
    const last = lastSlide.get(tokenHash)
    if (last !== undefined && at - last < options.slidingMinIntervalMs) return
    if (lastSlide.size >= SLIDE_MEMORY_LIMIT) lastSlide.clear()
    lastSlide.set(tokenHash, at)
    writes.run('extend', async () => {
      const ttlMs = ttlFor(answer, now(), answer.entry.readAtMs, options.slidingIdleMs)
      if (ttlMs <= 0 || !deps.cacheAvailable()) throw new GiveUp('skipped')
      await cache.extend(tokenHash, answer, ttlMs)
      return 'written'
    })
  }

  return { negativeFillDue, scheduleFill, maybeSlide }
}

/** The Postgres side of a validation: one read per token at a time, until an invalidation this instance hears of. */
function createStoreReads(
  deps: ValidatorDeps,
  now: () => number,
  local: LocalCache | undefined,
  then: Pick<ReturnType<typeof createFills>, 'negativeFillDue' | 'scheduleFill'> & { keepLocally: (tokenHash: string, answer: SessionAnswer, generation: number) => void },
) {
  const { store, observer } = deps
  const { negativeFillDue, scheduleFill, keepLocally } = then
  const flights = new Map<string, { answer: Promise<SessionAnswer>; epoch: number }>()
  // Bumped by every invalidation this instance learns of: a read that began before one must not be shared with a
  // request that began after it (that request could be answered from before the revocation it follows).
  let epoch = 0

  /**
   * Concurrent misses for one token share one Postgres query. The read stays shareable until its cache fill has landed,
   * so a second wave of misses arriving between the answer and the fill does not query again.
   */
  function readStore(tokenHash: string): Promise<SessionAnswer> {
    const existing = flights.get(tokenHash)
    if (existing && existing.epoch === epoch) {
      observer.singleFlightJoined()
      return existing.answer
    }
    let filled: Promise<void> = Promise.resolve()
    const flight = (async () => {
      const startedAt = now()
      const generation = local?.generation() ?? 0
      const record = await store.findByTokenHash(tokenHash)
      const answer = judge(record, now(), startedAt)
      if (answer.valid || negativeFillDue(tokenHash)) filled = scheduleFill(tokenHash, answer, startedAt)
      keepLocally(tokenHash, answer, generation)
      return answer
    })()
    const entry = { answer: flight, epoch }
    flights.set(tokenHash, entry)
    const forget = () => {
      if (flights.get(tokenHash) === entry) flights.delete(tokenHash)
    }
    flight.then(() => filled.then(forget), forget)
    return flight
  }

  return {
    readStore,
    /** Whether a validation of this token is reading Postgres now (its fill is on its way). */
    reading: (tokenHash: string) => flights.has(tokenHash),
    noteInvalidation() {
      epoch++
    },
    get epoch() {
      return epoch
    },
  }
}
