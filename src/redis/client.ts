import { Redis, type RedisOptions } from 'ioredis'
import type { Log } from '../service/observer.js'

export interface RedisTlsOptions {
  ca?: string
  cert?: string
  key?: string
  servername?: string
}

export interface RedisClientOptions {
  url: string
  commandTimeoutMs: number
  connectTimeoutMs: number
  /** ACL user and password; they win over credentials in the URL. */
  username?: string
  password?: string
  /** For rediss:// URLs: what to verify the server against, and an optional client certificate. */
  tls?: RedisTlsOptions
}

/**
 * Connection options from the URL plus explicit credentials and TLS. ioredis lets the URL's credentials win over the
 * options object, so explicit ones are taken out of the URL. TLS always verifies the certificate chain and host name
 * (no option turns that off), and a rediss:// URL never falls back to plaintext.
 */
export function connectionOptions(options: RedisClientOptions): { url: string; extra: RedisOptions } {
  const extra: RedisOptions = {}
  let url = options.url
  if (options.username !== undefined || options.password !== undefined) {
    const parsed = new URL(url)
    if (options.username !== undefined) {
      parsed.username = ''
      extra.username = options.username
    }
    if (options.password !== undefined) {
      parsed.password = ''
      extra.password = options.password
    }
    url = parsed.toString()
  }
  if (url.startsWith('rediss://')) {
    const tls = options.tls ?? {}
    extra.tls = {
      rejectUnauthorized: true,
      ...(tls.ca ? { ca: tls.ca } : {}),
      ...(tls.cert ? { cert: tls.cert, key: tls.key } : {}),
      ...(tls.servername ? { servername: tls.servername } : {}),
    }
  }
  return { url, extra }
}

/** Reconnect delay: exponential from 50 ms, capped at 2 s, with full jitter, so a down Redis is never hammered. */
export function reconnectDelay(attempt: number): number {
  const ceiling = Math.min(2000, 50 * 2 ** Math.min(attempt, 10))
  return Math.floor(ceiling / 2 + (Math.random() * ceiling) / 2)
}

/**
 * One ioredis connection, set to fail fast: no offline queue (a command while disconnected rejects at once), one
 * attempt per command, a command timeout, and autopipelining so concurrent requests share one write.
 */
export function createRedisClient(options: RedisClientOptions, log: Log, extra: RedisOptions = {}): Redis {
  const connection = connectionOptions(options)
  const client = new Redis(connection.url, {
    ...connection.extra,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: options.commandTimeoutMs,
    connectTimeout: options.connectTimeoutMs,
    enableAutoPipelining: true,
    connectionName: 'studio-session-cache',
    // No CLIENT SETINFO on connect: one command fewer for the ACL user to be granted (ops/redis/users.acl).
    disableClientInfo: true,
    retryStrategy: reconnectDelay,
    ...extra,
  })
  let healthy = true
  client.on('error', (err: Error) => {
    // ioredis emits one error per failed reconnect; log the first of a run, not each.
    if (healthy) log.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, 'redis connection error')
    healthy = false
  })
  client.on('ready', () => {
    if (!healthy) log.info({}, 'redis connection ready again')
    healthy = true
  })
  return client
}

/** Resolves once the client is ready, or after the connect timeout, whichever is first; never rejects. */
export function settleConnection(client: Redis, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve()
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer)
      client.off('ready', done)
      resolve()
    }
    const timer = setTimeout(done, timeoutMs)
    timer.unref()
    client.once('ready', done)
    if (client.status === 'wait') client.connect().catch(() => undefined)
  })
}

/** Closes politely (QUIT) when connected, and at once otherwise. */
export async function closeRedisClient(client: Redis): Promise<void> {
  if (client.status === 'ready') {
    try {
      await client.quit()
      return
    } catch {
      // fall through to a hard disconnect
    }
  }
  client.disconnect()
}
