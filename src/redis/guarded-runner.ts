import type { Redis } from 'ioredis'
import type { Log } from '../service/observer.js'
import { createBreaker, type BreakerEvent, type BreakerOptions, type BreakerState } from './breaker.js'
import { createTurnLease, type RedisPool } from './pool.js'

export type PooledOp = (client: Redis, ...args: never[]) => Promise<unknown>

export interface RunnerHooks {
  /** Called once per command with its duration; must be cheap. */
  commandDone(ok: boolean, seconds: number): void
  breakerEvent(event: BreakerEvent, state: BreakerState): void
}

/** Breaker → pool (a connection leased per event-loop turn) → connection: the one path by which the cache reaches Redis. */
export function createGuardedRunner(pool: RedisPool, options: BreakerOptions, log: Log, hooks: RunnerHooks) {
  const lease = createTurnLease(pool)
  async function action(op: PooledOp, ...args: unknown[]): Promise<unknown> {
    const started = performance.now()
    let ok = false
    try {
      const reply = await lease.run(op as (c: Redis, ...a: unknown[]) => Promise<unknown>, ...args)
      ok = true
      return reply
    } finally {
      hooks.commandDone(ok, (performance.now() - started) / 1000)
    }
  }
  return createBreaker<[PooledOp, ...unknown[]], unknown>(action, options, log, hooks.breakerEvent)
}
