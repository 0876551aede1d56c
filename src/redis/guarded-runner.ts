import type { RedisClient } from './client.js'
import type { Log } from '../service/observer.js'
import { createBreaker, isNotAnOutage, type BreakerEvent, type BreakerOptions, type BreakerState } from './breaker.js'
import { createTurnLease, type RedisPool } from './pool.js'

/** An operation on a pooled connection; `exclusive` ones hold theirs until they finish (WAIT counts its writes). */
export type PooledOp = ((client: RedisClient, ...args: never[]) => Promise<unknown>) & { exclusive?: boolean }

export interface RunnerHooks {
  /** Called once per operation with its duration (a turn's batched reads are one operation); must be cheap. */
  commandDone(ok: boolean, seconds: number): void
  breakerEvent(event: BreakerEvent, state: BreakerState): void
}

/** Holds one pooled connection for the whole operation (the per-turn lease would hand it to others meanwhile). */
async function exclusively(pool: RedisPool, op: (c: RedisClient, ...a: unknown[]) => Promise<unknown>, args: unknown[]): Promise<unknown> {
  const client = await pool.acquire()
  try {
    return await op(client, ...args)
  } finally {
    void pool.release(client)
  }
}

/**
 * What an open breaker answers, made once: opossum builds a new Error (stack trace included) for every call it
 * refuses, several µs per request while Redis is down (npm run bench:hot: "breaker open", opossum against the runner).
 */
const REFUSED = Object.assign(new Error('Breaker is open'), { code: 'EOPENBREAKER' })

/** One call waiting for its event-loop turn's batch. */
interface Waiter {
  op: (c: RedisClient, ...a: unknown[]) => Promise<unknown>
  args: unknown[]
  resolve(value: unknown): void
  reject(err: unknown): void
}

/**
 * A turn's batch on one connection: every call is issued in the same tick (ioredis sends them as one pipeline) and
 * each caller gets its own reply as it comes. The batch fails, for the breaker, if any call met an outage (a reply
 * error such as WRONGTYPE only fails its own caller).
 */
const runBatch: PooledOp = async (client: RedisClient, waiters: Waiter[]) => {
  let outage: unknown
  await Promise.all(
    waiters.map((w) =>
      w.op(client, ...w.args).then(w.resolve, (err: unknown) => {
        w.reject(err)
        if (!isNotAnOutage(err)) outage ??= err
      }),
    ),
  )
  if (outage !== undefined) throw outage
}

/**
 * Breaker → pool (a connection leased per event-loop turn) → connection: the one path by which the cache reaches
 * Redis. The breaker's per-call timeout is the operation's one deadline (pooled connections have no per-command
 * timer: pool.ts).
 *
 * `fireInTurn` is the hot path's way in: the calls made during one event-loop turn (the requests of every socket read
 * in that turn) go through the breaker together, once, when the turn ends (setImmediate). So opossum's per-call work
 * (its promise chain, events, timer) is paid once per turn, and the turn's pipeline has one deadline; a timeout or an
 * open breaker answers every call of the batch at once.
 */
export function createGuardedRunner(pool: RedisPool, options: BreakerOptions, log: Log, hooks: RunnerHooks) {
  const lease = createTurnLease(pool)
  const commandDone = (started: number, ok: boolean) => hooks.commandDone(ok, (performance.now() - started) / 1000)
  function action(op: PooledOp, ...args: unknown[]): Promise<unknown> {
    const started = performance.now()
    const run = op as (c: RedisClient, ...a: unknown[]) => Promise<unknown>
    const reply = op.exclusive ? exclusively(pool, run, args) : lease.run(run, ...args)
    return reply.then(
      (value) => {
        commandDone(started, true)
        return value
      },
      (err: unknown) => {
        commandDone(started, false)
        throw err
      },
    )
  }
  const breaker = createBreaker<[PooledOp, ...unknown[]], unknown>(action, options, log, hooks.breakerEvent)
  let batch: Waiter[] = []
  const flush = () => {
    const waiters = batch
    batch = []
    breaker.fire(runBatch, waiters).catch((err: unknown) => {
      // The batch as a whole failed (timeout, open breaker, no connection): whoever has no reply yet gets this error.
      for (const w of waiters) w.reject(err)
    })
  }
  // While the breaker is open (not half-open: opossum lets its trial call through), refuse before opossum does,
  // counted as the same 'reject' event, with the error made once.
  const refuse = () => {
    hooks.breakerEvent('reject', 'open')
    return Promise.reject(REFUSED)
  }
  const fire = breaker.fire.bind(breaker)
  breaker.fire = (...args: [PooledOp, ...unknown[]]) => (breaker.opened ? refuse() : fire(...args))
  function fireInTurn(op: PooledOp, ...args: unknown[]): Promise<unknown> {
    // Refused now rather than at the turn's end: a request while Redis is down does not wait for the batch.
    if (breaker.opened) return refuse()
    return new Promise((resolve, reject) => {
      if (batch.length === 0) setImmediate(flush)
      batch.push({ op: op as Waiter['op'], args, resolve, reject })
    })
  }
  return Object.assign(breaker, { fireInTurn })
}
