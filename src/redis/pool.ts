import { createPool, type Pool } from 'generic-pool'
import type { Log } from '../service/observer.js'
import { closeRedisClient, createRedisClient, settleConnection, type RedisClient, type RedisClientOptions } from './client.js'

export interface RedisPoolOptions extends RedisClientOptions {
  min: number
  max: number
  acquireTimeoutMs: number
}

export type RedisPool = Pool<RedisClient>

/**
 * A generic-pool of ioredis connections.
 *
 * `create` never rejects: it hands back a connection that is ready, or one still connecting (ioredis reconnects it
 * with backoff). A rejecting create makes generic-pool retry at once for every waiting borrower, which spins the CPU
 * while RedisClient is down; a connecting client instead fails its commands fast and lets the breaker open.
 * Validation is not done per borrow (it would cost a PING round trip on the hot path): a client is only ever unusable
 * while RedisClient itself is, and the breaker covers that.
 */
export function createRedisPool(options: RedisPoolOptions, log: Log, onCreate?: (client: RedisClient) => void): RedisPool {
  return createPool<RedisClient>(
    {
      async create() {
        const client = createRedisClient(options, log)
        onCreate?.(client)
        await settleConnection(client, options.connectTimeoutMs)
        return client
      },
      async destroy(client) {
        await closeRedisClient(client)
      },
      async validate(client) {
        return client.status === 'ready'
      },
    },
    {
      min: options.min,
      max: options.max,
      acquireTimeoutMillis: options.acquireTimeoutMs,
      // LIFO: the most recently used connection is reused, so concurrent commands pipeline onto one socket.
      fifo: false,
      testOnBorrow: false,
      evictionRunIntervalMillis: 30_000,
      softIdleTimeoutMillis: 60_000,
    },
  )
}

/**
 * Runs one command on a pooled connection. The borrow covers queueing the command, not waiting for its reply:
 * ioredis multiplexes a connection, so holding it across the round trip would only serialise callers behind the
 * pool's max.
 */
export async function withConnection<A extends unknown[], T>(
  pool: RedisPool,
  op: (client: RedisClient, ...args: A) => Promise<T>,
  ...args: A
): Promise<T> {
  const client = await pool.acquire()
  let reply: Promise<T>
  try {
    reply = op(client, ...args)
  } finally {
    void pool.release(client)
  }
  return reply
}

export async function closeRedisPool(pool: RedisPool): Promise<void> {
  await pool.drain()
  await pool.clear()
}

export function poolStats(pool: RedisPool) {
  return { size: pool.size, available: pool.available, borrowed: pool.borrowed, pending: pool.pending, max: pool.max }
}

/**
 * Borrows one pooled connection per event-loop turn for the hot path. The first command of a turn acquires it, every
 * command queued in the same turn runs on it (ioredis autopipelining sends them as one write anyway), and it goes back
 * to the pool when the turn ends (setImmediate). The pool still bounds, creates, evicts and drains the connections;
 * what is saved is an acquire/release pair per command, which measured several microseconds (a promise, a timer and
 * the pool's bookkeeping) on a path whose whole budget is tens of microseconds.
 */
export function createTurnLease(pool: RedisPool) {
  let current: RedisClient | undefined
  let pending: Promise<RedisClient> | undefined
  const giveBack = () => {
    const client = current
    current = undefined
    pending = undefined
    if (client) void pool.release(client)
  }
  const acquire = (): Promise<RedisClient> =>
    (pending ??= pool.acquire().then(
      (client) => {
        current = client
        setImmediate(giveBack)
        return client
      },
      (err: unknown) => {
        pending = undefined
        throw err
      },
    ))

  return {
    run<A extends unknown[], T>(op: (client: RedisClient, ...args: A) => Promise<T>, ...args: A): Promise<T> {
      return current ? op(current, ...args) : acquire().then((client) => op(client, ...args))
    },
  }
}

export type TurnLease = ReturnType<typeof createTurnLease>
