import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import type { RedisTopology } from '../config.js'
import type { Log } from '../service/observer.js'

/** A connection to whichever topology is configured: one node or a Sentinel-managed master (Redis), or a Cluster. */
export type RedisClient = Redis | Cluster

export interface RedisTlsOptions {
  ca?: string
  cert?: string
  key?: string
  servername?: string
}

export interface RedisClientOptions {
  url: string
  commandTimeoutMs: number
  /** False: no ioredis timer per command (pooled connections: their deadline is per operation, pool.ts). */
  perCommandTimeout?: boolean
  connectTimeoutMs: number
  /** ACL user and password; they win over credentials in the URL. */
  username?: string
  password?: string
  /** For rediss:// URLs: what to verify the server against, and an optional client certificate. */
  tls?: RedisTlsOptions
  /** One node (REDIS_URL), Sentinel or Cluster; credentials and TLS above apply to every data node. */
  topology?: RedisTopology
  /** Told of each Cluster redirection the client follows. */
  onRedirect?: (kind: 'moved' | 'ask') => void
  /** How often a Cluster client re-reads the slot map (default 5 s). */
  slotsRefreshIntervalMs?: number
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

/**
 * Reconnect delay: exponential from 50 ms, capped at 1 s, with jitter (half to all of the ceiling), so a down Redis is
 * never hammered. The cap is also how late a connection can notice that a restarted node accepts again: at 1 s the
 * breaker's recovery (recovery.ts) can be back on Redis within 2 s of the restart; a refused connect costs next to
 * nothing, on either side.
 */
export function reconnectDelay(attempt: number): number {
  const ceiling = Math.min(1000, 50 * 2 ** Math.min(attempt, 10))
  return Math.floor(ceiling / 2 + (Math.random() * ceiling) / 2)
}

/** What every data-node connection shares, whatever the topology: fail fast, time out, pipeline. */
function dataNodeOptions(options: RedisClientOptions, extra: RedisOptions): RedisOptions {
  return {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: options.perCommandTimeout === false ? undefined : options.commandTimeoutMs,
    connectTimeout: options.connectTimeoutMs,
    enableAutoPipelining: true,
    connectionName: 'studio-session-cache',
    // No CLIENT SETINFO on connect: one command fewer for the ACL user to be granted (ops/redis/users.acl).
    disableClientInfo: true,
    retryStrategy: reconnectDelay,
    ...extra,
  }
}

function connect(options: RedisClientOptions, extra: RedisOptions): RedisClient {
  const connection = connectionOptions(options)
  const topology = options.topology ?? { kind: 'single' }
  if (topology.kind === 'single') return new Redis(connection.url, { ...connection.extra, ...dataNodeOptions(options, extra) })
  // Credentials and TLS from REDIS_URL (and REDIS_USERNAME/PASSWORD, REDIS_TLS_*) apply to every data node.
  const url = new URL(connection.url)
  const credentials = {
    username: connection.extra.username ?? (url.username ? decodeURIComponent(url.username) : undefined),
    password: connection.extra.password ?? (url.password ? decodeURIComponent(url.password) : undefined),
  }
  if (topology.kind === 'sentinel') {
    return new Redis({
      ...credentials,
      ...(connection.extra.tls ? { tls: connection.extra.tls, enableTLSForSentinelMode: true } : {}),
      ...dataNodeOptions(options, extra),
      sentinels: topology.sentinels,
      name: topology.masterName,
      role: 'master',
      sentinelUsername: topology.username,
      sentinelPassword: topology.password,
      sentinelMaxConnections: topology.sentinels.length,
      sentinelCommandTimeout: options.connectTimeoutMs,
      sentinelRetryStrategy: reconnectDelay,
      // A switch is noticed when the sentinels announce it (+switch-master), not only when the old socket closes.
      failoverDetector: true,
      // A hung master is noticed: a socket that answers nothing after a write is dropped and reconnected.
      socketTimeout: Math.max(options.commandTimeoutMs * 4, 1000),
      // A write that reaches a demoted master (READONLY) means the switch happened: reconnect to ask the sentinels.
      reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 1 : false),
    })
  }
  const nodeOptions = dataNodeOptions(options, extra)
  const clusterOptions: ClusterOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    enableAutoPipelining: true,
    scaleReads: 'master',
    maxRedirections: 16,
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    slotsRefreshTimeout: options.connectTimeoutMs,
    slotsRefreshInterval: options.slotsRefreshIntervalMs ?? 5000,
    clusterRetryStrategy: reconnectDelay,
    redisOptions: {
      ...credentials,
      ...(connection.extra.tls ? { tls: connection.extra.tls } : {}),
      ...nodeOptions,
      lazyConnect: false,
    },
  }
  const cluster = new Cluster(topology.nodes, clusterOptions)
  if (options.onRedirect) countRedirections(cluster, options.onRedirect)
  return cluster
}

/**
 * ioredis follows MOVED and ASK itself and emits nothing per redirection; its (internal) handleError sees each one
 * first. Wrapped here, guarded, so that a future ioredis without it only loses the count.
 */
function countRedirections(cluster: Cluster, onRedirect: (kind: 'moved' | 'ask') => void): void {
  const target = cluster as unknown as { handleError?: (error: Error, ...rest: unknown[]) => unknown }
  const original = target.handleError
  if (typeof original !== 'function') return
  target.handleError = function (error: Error, ...rest: unknown[]) {
    const kind = error.message.slice(0, 4)
    if (kind === 'MOVE') onRedirect('moved')
    else if (kind === 'ASK ') onRedirect('ask')
    return original.call(this, error, ...rest)
  }
}

/**
 * One ioredis connection (a Cluster client for a Cluster), set to fail fast: no offline queue (a command while
 * disconnected rejects at once), one attempt per command, a command timeout, and autopipelining so concurrent
 * requests share one write.
 */
export function createRedisClient(options: RedisClientOptions, log: Log, extra: RedisOptions = {}): RedisClient {
  const client = connect(options, extra)
  if (client instanceof Redis) reviveOnEnd(client)
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

/** Clients closeRedisClient is closing: their 'end' is wanted. */
const closing = new WeakSet<RedisClient>()

/**
 * ioredis gives up on a connection for good (status 'end', no retry) when its connector fails, as a Sentinel
 * connector does when the master the sentinels name refuses the connection during a failover. A pooled connection
 * that ended would stay dead in the pool (nothing validates on borrow) and fail every command sent on it, so any
 * 'end' this service did not ask for is followed by a new connect, with the same backoff as a reconnect.
 */
function reviveOnEnd(client: Redis): void {
  let attempt = 0
  client.on('ready', () => (attempt = 0))
  client.on('end', () => {
    if (closing.has(client)) return
    const timer = setTimeout(() => {
      if (!closing.has(client) && client.status === 'end') client.connect().catch(() => undefined)
    }, reconnectDelay(++attempt))
    timer.unref()
  })
}

/** Resolves once the client is ready, or after the connect timeout, whichever is first; never rejects. */
export function settleConnection(client: RedisClient, timeoutMs: number): Promise<void> {
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
export async function closeRedisClient(client: RedisClient): Promise<void> {
  closing.add(client)
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
