import { createPool } from 'generic-pool'
import type { RedisClient } from '../../src/redis/client.js'
import { describe, expect, it } from 'vitest'
import { createTurnLease, type RedisPool } from '../../src/redis/pool.js'

function fakePool() {
  let made = 0
  const pool = createPool({ create: async () => ({ id: ++made }), destroy: async () => undefined }, { min: 0, max: 4, fifo: false })
  return pool as unknown as RedisPool & { borrowed: number }
}

describe('a connection leased per event-loop turn', () => {
  it('serves every command of one turn with one borrow, and returns it when the turn ends', async () => {
    const pool = fakePool()
    const lease = createTurnLease(pool)
    const used: unknown[] = []
    const op = async (client: RedisClient, n: number) => {
      used.push(client)
      return n * 2
    }
    const first = await lease.run(op, 1)
    const rest = await Promise.all([lease.run(op, 2), lease.run(op, 3)])
    expect([first, ...rest]).toEqual([2, 4, 6])
    expect(new Set(used).size).toBe(1)
    expect(pool.borrowed).toBe(1)
    await new Promise((resolve) => setImmediate(resolve))
    expect(pool.borrowed).toBe(0)
    await lease.run(op, 4)
    expect(pool.borrowed).toBe(1)
    await new Promise((resolve) => setImmediate(resolve))
    expect(pool.borrowed).toBe(0)
    await pool.drain()
    await pool.clear()
  })

  it('returns the connection at the end of the turn even when a command fails', async () => {
    const pool = fakePool()
    const lease = createTurnLease(pool)
    await expect(lease.run(async () => Promise.reject(new Error('command failed')))).rejects.toThrow('command failed')
    expect(pool.borrowed).toBe(1)
    await new Promise((resolve) => setImmediate(resolve))
    expect(pool.borrowed).toBe(0)
    await pool.drain()
    await pool.clear()
  })
})
