import type { RedisClient } from './client.js'
import type { Log } from '../service/observer.js'
import { createBreaker, type BreakerEvent, type BreakerOptions, type BreakerState } from './breaker.js'
import { createTurnLease, type RedisPool } from './pool.js'

/** An operation on a pooled connection; `exclusive` ones hold theirs until they finish (WAIT counts its writes). */
export type PooledOp = ((client: RedisClient, ...args: never[]) => Promise<unknown>) & { exclusive?: boolean }

export interface RunnerHooks {
  /** Called once per command with its duration; must be cheap. */
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
 * refuses, which is most of the cost of a request while Redis is down (npm run bench:hot, "breaker open").
 */
const REFUSED = Object.assign(new Error('Breaker is open'), { code: 'EOPENBREAKER' })

/**
 * Breaker → pool (a connection leased per event-loop turn) → connection: the one path by which the cache reaches
 * Redis. The breaker's per-call timeout is the operation's one deadline (pooled connections have no per-command
 * timer: pool.ts).
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
  // While the breaker is open (not half-open: opossum lets its trial call through), refuse before opossum does,
  // counted as the same 'reject' event, with the error made once.
  const fire = breaker.fire.bind(breaker)
  breaker.fire = (...args: [PooledOp, ...unknown[]]) => {
    if (!breaker.opened) return fire(...args)
    hooks.breakerEvent('reject', 'open')
    return Promise.reject(REFUSED)
  }
  return breaker
}
