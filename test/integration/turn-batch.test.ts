import { randomBytes } from 'node:crypto'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import type { CacheOp } from '../../src/cache/redis-session-cache.js'
import type { RedisClient } from '../../src/redis/client.js'
import { createGuardedRunner } from '../../src/redis/guarded-runner.js'
import { closeRedisPool, createRedisPool, withConnection, type RedisPool } from '../../src/redis/pool.js'
import { TEST_REDIS_URL } from '../support/env.js'
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js'

/**
 * The hot path's reads go through the breaker once per event-loop turn (guarded-runner.ts fireInTurn), on a real
 * Redis: each caller still gets its own reply, a reply error stays its caller's, and the turn's one deadline answers
 * every read of a stalled pipeline.
 */
const silent = pino({ level: 'silent' })
const BREAKER = { timeoutMs: 150, errorThresholdPercentage: 50, resetTimeoutMs: 1000, rollingCountTimeoutMs: 10_000, volumeThreshold: 100 }
const getOp = ((client: RedisClient, key: string) => client.get(key)) as unknown as CacheOp
const zcardOp = ((client: RedisClient, key: string) => client.zcard(key)) as unknown as CacheOp

let pool: RedisPool | undefined
let proxy: TcpProxy | undefined
afterEach(async () => {
  if (pool) await closeRedisPool(pool)
  await proxy?.close()
  pool = proxy = undefined
})

async function runnerOn(url: string) {
  pool = createRedisPool({ url, commandTimeoutMs: BREAKER.timeoutMs, connectTimeoutMs: 2000, min: 1, max: 2, acquireTimeoutMs: 2000 }, silent)
  await pool.ready()
  const events: string[] = []
  let roundTrips = 0
  const runner = createGuardedRunner(pool, BREAKER, silent, {
    commandDone: () => roundTrips++,
    breakerEvent: (event) => events.push(event),
  })
  return { runner, events, roundTrips: () => roundTrips }
}

describe('reads batched per event-loop turn', () => {
  it('sends the reads of one turn through the breaker once, and gives each caller its own value', async () => {
    const { runner, roundTrips } = await runnerOn(TEST_REDIS_URL)
    const prefix = `ssc-turn-${randomBytes(4).toString('hex')}:`
    const seed = await pool!.acquire()
    await seed.set(`${prefix}a`, 'A')
    await seed.set(`${prefix}b`, 'B')
    void pool!.release(seed)
    const replies = await Promise.all(['a', 'b', 'missing', 'a'].map((k) => runner.fireInTurn(getOp, `${prefix}${k}`)))
    expect(replies).toEqual(['A', 'B', null, 'A'])
    // Each caller has its reply as soon as it comes; the batch's round trip is counted once all have.
    await new Promise((resolve) => setImmediate(resolve))
    expect(roundTrips()).toBe(1)
    // Calls in a later turn are a new batch.
    expect(await runner.fireInTurn(getOp, `${prefix}b`)).toBe('B')
    await new Promise((resolve) => setImmediate(resolve))
    expect(roundTrips()).toBe(2)
    const cleanup = await pool!.acquire()
    await cleanup.del(`${prefix}a`, `${prefix}b`)
    void pool!.release(cleanup)
  })

  it('keeps a reply error to its own caller: the others get their values, and the breaker counts no failure', async () => {
    const { runner, events } = await runnerOn(TEST_REDIS_URL)
    const key = `ssc-turn-${randomBytes(4).toString('hex')}:s`
    const seed = await pool!.acquire()
    await seed.set(key, 'a string')
    void pool!.release(seed)
    const [wrongType, value] = await Promise.allSettled([runner.fireInTurn(zcardOp, key), runner.fireInTurn(getOp, key)])
    expect(wrongType).toMatchObject({ status: 'rejected', reason: { name: 'ReplyError' } })
    expect(value).toEqual({ status: 'fulfilled', value: 'a string' })
    expect(events).not.toContain('failure')
    const cleanup = await pool!.acquire()
    await cleanup.del(key)
    void pool!.release(cleanup)
  })

  it('when Redis stops answering, every read of the turn fails at the one deadline, counted once as a timeout', async () => {
    proxy = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(TEST_REDIS_URL).port || 6379) })
    const { runner, events } = await runnerOn(`redis://127.0.0.1:${proxy.port}`)
    proxy.setDelay(10 * BREAKER.timeoutMs)
    const started = performance.now()
    const outcomes = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => runner.fireInTurn(getOp, `ssc-turn-stalled-${i}`)))
    const waitedMs = performance.now() - started
    expect(outcomes.map((o) => o.status)).toEqual(Array(5).fill('rejected'))
    expect(waitedMs).toBeGreaterThanOrEqual(BREAKER.timeoutMs - 5)
    // Bounded by the deadline, not by the stalled replies (10 × the deadline away).
    expect(waitedMs).toBeLessThan(5 * BREAKER.timeoutMs)
    expect(events.filter((e) => e === 'timeout')).toHaveLength(1)
  })

  it('while the breaker is open, refuses at once without a round trip, counted as a reject', async () => {
    const { runner, events, roundTrips } = await runnerOn(TEST_REDIS_URL)
    runner.open()
    await expect(runner.fireInTurn(getOp, 'ssc-turn-any')).rejects.toMatchObject({ code: 'EOPENBREAKER' })
    expect(roundTrips()).toBe(0)
    expect(events).toContain('reject')
    runner.close()
  })

  it('a pooled connection has no per-command timer, yet withConnection holds a stalled command to the pool deadline', async () => {
    proxy = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(TEST_REDIS_URL).port || 6379) })
    await runnerOn(`redis://127.0.0.1:${proxy.port}`)
    const client = await pool!.acquire()
    void pool!.release(client)
    expect((client as { options: { commandTimeout?: number } }).options.commandTimeout).toBeUndefined()
    proxy.setDelay(10 * BREAKER.timeoutMs)
    const started = performance.now()
    await expect(withConnection(pool!, (c) => c.ping())).rejects.toMatchObject({ name: 'RedisDeadlineError' })
    const waitedMs = performance.now() - started
    expect(waitedMs).toBeGreaterThanOrEqual(BREAKER.timeoutMs - 5)
    expect(waitedMs).toBeLessThan(5 * BREAKER.timeoutMs)
  })
})
