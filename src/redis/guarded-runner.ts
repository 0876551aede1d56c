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

/** Breaker → pool (a connection leased per event-loop turn) → connection: the one path by which the cache reaches Redis. */
export function createGuardedRunner(pool: RedisPool, options: BreakerOptions, log: Log, hooks: RunnerHooks) {
  const lease = createTurnLease(pool)
  async function action(op: PooledOp, ...args: unknown[]): Promise<unknown> {
    const started = performance.now()
    let ok = false
    try {
      const run = op as (c: RedisClient, ...a: unknown[]) => Promise<unknown>
      const reply = await (op.exclusive ? exclusively(pool, run, args) : lease.run(run, ...args))
      ok = true
      return reply
    } finally {
      hooks.commandDone(ok, (performance.now() - started) / 1000)
    }
  }
  return createBreaker<[PooledOp, ...unknown[]], unknown>(action, options, log, hooks.breakerEvent)
}
