import { describe, expect, it } from 'vitest'
import type { SessionStore } from '../../src/domain/ports.js'
import { boundStore } from '../../src/store/bounded-store.js'
import { gate } from '../support/gate.js'

/** The lookup bulkhead: bounded concurrency, a bounded FIFO queue with a deadline, and immediate shedding beyond it. */

const silent = { debug() {}, info() {}, warn() {}, error() {} }

/** A store whose lookups wait for the test to release them, counting how many run at once. */
function heldStore() {
  const held: Array<() => void> = []
  let running = 0
  let peak = 0
  const order: string[] = []
  const store: SessionStore = {
    async findByTokenHash(hash) {
      running++
      peak = Math.max(peak, running)
      order.push(hash)
      const g = gate()
      held.push(g.open)
      await g.wait()
      running--
      if (hash === 'fails') throw new Error('boom')
      return null
    },
    revoke: async () => ({ revoked: 0, tokenHashes: [] }),
    tokenHashes: async () => [],
    ping: async () => undefined,
    close: async () => undefined,
  }
  return {
    store,
    order,
    get peak() {
      return peak
    },
    releaseOne: () => held.shift()?.(),
    async settle() {
      for (let i = 0; i < 5; i++) await Promise.resolve()
    },
  }
}

const code = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (err: { code?: string; message: string }) => err.code ?? err.message,
  )

describe('boundStore', () => {
  it('runs at most maxConcurrent lookups, queues up to maxQueue in order, and sheds the rest at once', async () => {
    const held = heldStore()
    const store = boundStore(held.store, { maxConcurrent: 2, maxQueue: 2, queueTimeoutMs: 10_000 }, silent)
    const results = ['a', 'b', 'c', 'd'].map((h) => code(store.findByTokenHash(h)))
    const shed = await code(store.findByTokenHash('e'))
    expect(shed).toBe('SESSION_STORE_BUSY')
    expect(store.stats).toEqual({ running: 2, queued: 2, shed: 1 })
    await held.settle()
    expect(held.order).toEqual(['a', 'b'])
    for (let i = 0; i < 4; i++) {
      held.releaseOne()
      await held.settle()
    }
    expect(await Promise.all(results)).toEqual(['ok', 'ok', 'ok', 'ok'])
    expect(held.order).toEqual(['a', 'b', 'c', 'd'])
    expect(held.peak).toBe(2)
    expect(store.stats).toEqual({ running: 0, queued: 0, shed: 1 })
  })

  it('sheds a queued lookup that waited past queueTimeoutMs, and frees its place', async () => {
    const held = heldStore()
    const store = boundStore(held.store, { maxConcurrent: 1, maxQueue: 1, queueTimeoutMs: 20 }, silent)
    const first = code(store.findByTokenHash('a'))
    expect(await code(store.findByTokenHash('b'))).toBe('SESSION_STORE_BUSY')
    expect(store.stats.queued).toBe(0)
    held.releaseOne()
    expect(await first).toBe('ok')
    expect(held.order).toEqual(['a'])
  })

  it('gives the slot back when a lookup fails, and passes the failure through', async () => {
    const held = heldStore()
    const store = boundStore(held.store, { maxConcurrent: 1, maxQueue: 1, queueTimeoutMs: 10_000 }, silent)
    const failing = code(store.findByTokenHash('fails'))
    const next = code(store.findByTokenHash('a'))
    held.releaseOne()
    expect(await failing).toBe('boom')
    await held.settle()
    held.releaseOne()
    expect(await next).toBe('ok')
    expect(store.stats).toEqual({ running: 0, queued: 0, shed: 0 })
  })

  it('with maxQueue 0 sheds as soon as every slot is taken; revoke and ping are not bounded', async () => {
    const held = heldStore()
    const store = boundStore(held.store, { maxConcurrent: 1, maxQueue: 0, queueTimeoutMs: 1000 }, silent)
    const first = code(store.findByTokenHash('a'))
    expect(await code(store.findByTokenHash('b'))).toBe('SESSION_STORE_BUSY')
    expect(await store.revoke({ kind: 'session', sessionId: 'x' })).toEqual({ revoked: 0, tokenHashes: [] })
    expect(await store.tokenHashes({ kind: 'session', sessionId: 'x' })).toEqual([])
    await store.ping()
    held.releaseOne()
    expect(await first).toBe('ok')
  })
})
