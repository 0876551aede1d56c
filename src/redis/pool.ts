import { createPool, type Pool } from 'generic-pool'
import type { Log } from '../service/observer.js'
import { closeRedisClient, createRedisClient, settleConnection, type RedisClient, type RedisClientOptions } from './client.js'

export interface RedisPoolOptions extends RedisClientOptions {
  min: number
  max: number
  acquireTimeoutMs: number
}

/** The pool, and the deadline every use of one of its connections is held to (REDIS_COMMAND_TIMEOUT_MS). */
export type RedisPool = Pool<RedisClient> & { readonly commandTimeoutMs: number }

/** A pooled command that did not answer within the pool's deadline (the breaker counts it as a failure). */
export class RedisDeadlineError extends Error {
  override name = 'RedisDeadlineError'
  readonly code = 'ETIMEDOUT'
}

/**
 * `reply`, or a RedisDeadlineError once `ms` have passed: one timer for whatever `reply` covers (one command, or an
 * operation of several).
 */
export function withinDeadline<T>(reply: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RedisDeadlineError(`Redis did not answer within ${ms} ms`)), ms)
  })
  return Promise.race([reply, expired]).finally(() => clearTimeout(timer))
}

/**
 * A generic-pool of ioredis connections.
 *
 * Its connections have no ioredis command timeout: ioredis arms one timer per command and deletes it from the
 * command when the reply comes (what that costs: npm run bench:hot, "command: GET, pooled connection" against
 * "command: GET, ioredis commandTimeout"). Instead every use of a pooled connection has one deadline of
 * `commandTimeoutMs`: withConnection's per call, the breaker's per cache operation (guarded-runner.ts), so nothing
 * waits on Redis longer than before, with one timer per operation rather than one per command.
 *
 * `create` never rejects: it hands back a connection that is ready, or one still connecting (ioredis reconnects it
 * with backoff). A rejecting create makes generic-pool retry at once for every waiting borrower, which spins the CPU
 * while RedisClient is down; a connecting client instead fails its commands fast and lets the breaker open.
 * Validation is not done per borrow (it would cost a PING round trip on the hot path): a client is only ever unusable
 * while RedisClient itself is, and the breaker covers that.
 */
export function createRedisPool(
  options: RedisPoolOptions,
  log: Log,
  onCreate?: (client: RedisClient) => void,
  onDestroy?: (client: RedisClient) => void,
): RedisPool {
  const pool = createPool<RedisClient>(
    {
      async create() {
        const client = createRedisClient({ ...options, perCommandTimeout: false }, log)
        onCreate?.(client)
        await settleConnection(client, options.connectTimeoutMs)
        return client
      },
      async destroy(client) {
        onDestroy?.(client)
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
  return Object.assign(pool, { commandTimeoutMs: options.commandTimeoutMs })
}

/**
 * Runs one command on a pooled connection, within the pool's deadline. The borrow covers queueing the command, not
 * waiting for its reply: ioredis multiplexes a connection, so holding it across the round trip would only serialise
 * callers behind the pool's max.
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
  return withinDeadline(reply, pool.commandTimeoutMs)
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
