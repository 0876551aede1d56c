import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { startTestApp, type TestApp } from '../support/app.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { eventually } from '../support/gate.js'
import { TEST_DATABASE_URL, TEST_REDIS_URL } from '../support/env.js'
import { startRedisServer, type RedisServer } from '../support/redis-server.js'
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js'

/**
 * /health/redis, /health/live and /health/ready against real servers: a private redis-server to kill, a TCP proxy in
 * front of Postgres to cut, and one in front of Redis to slow.
 */

/**
 * The health deadline of the config under test. Every backend timeout is set to it too, so a healthy backend on a busy
 * machine (these once were 150-300 ms, and a loaded host reported healthy servers as down) is only reported down
 * when the health check itself would have given up on it.
 */
const HEALTH_TIMEOUT_MS = 1000
/** One /health/redis answer: its deadline, and as much again for a noisy shared machine. */
const HEALTH_BUDGET_MS = 2 * HEALTH_TIMEOUT_MS
/** Slow enough that only the health deadline can bound an answer. */
const SLOW_MS = 3 * HEALTH_TIMEOUT_MS

let db: TestDatabase
let server: RedisServer
let pgProxy: TcpProxy
let redisProxy: TcpProxy | undefined
let t: TestApp | undefined
const extraServers: RedisServer[] = []

beforeAll(async () => {
  db = await createTestDatabase()
  server = await startRedisServer()
  const { hostname, port } = new URL(TEST_DATABASE_URL)
  pgProxy = await startTcpProxy({ host: hostname, port: Number(port) })
})
afterAll(async () => {
  await server?.close()
  await pgProxy?.close()
  await db?.drop()
})
beforeEach(async () => {
  if (!server.running) await server.restart()
})
afterEach(async () => {
  pgProxy.resume()
  // Undelayed first, so that the app's close (QUIT) does not wait behind held-back bytes.
  redisProxy?.resume()
  await t?.close()
  t = undefined
  await redisProxy?.close()
  redisProxy = undefined
  for (const extra of extraServers.splice(0)) await extra.close()
})

function proxiedDatabaseUrl(): string {
  const url = new URL(TEST_DATABASE_URL)
  url.hostname = '127.0.0.1'
  url.port = String(pgProxy.port)
  return url.toString()
}

async function startHealthApp(redisUrl = server.url, env: Record<string, string> = {}) {
  t = await startTestApp({
    db,
    redisUrl,
    env: {
      DATABASE_URL: proxiedDatabaseUrl(),
      DATABASE_CONNECT_TIMEOUT_MS: String(HEALTH_TIMEOUT_MS),
      DATABASE_STATEMENT_TIMEOUT_MS: String(HEALTH_TIMEOUT_MS),
      REDIS_COMMAND_TIMEOUT_MS: String(HEALTH_TIMEOUT_MS),
      REDIS_CONNECT_TIMEOUT_MS: String(HEALTH_TIMEOUT_MS),
      REDIS_POOL_MAX: '4',
      HEALTH_TIMEOUT_MS: String(HEALTH_TIMEOUT_MS),
      ...env,
    },
  })
  // The inspection connection loses its server too when a test kills it; those errors are expected.
  t.redis.on('error', () => undefined)
  return t
}

/**
 * "healthy" needs the revocation feed listening, and its LISTEN connection is opened on ready, not awaited: a test that
 * reads the report right after start waits for it first (on a busy machine the first read can beat it).
 */
async function listening(app: TestApp): Promise<void> {
  await eventually(() => app.app.internals.revocation.status().listener === 'listening', 5000, 'the LISTEN connection up')
}

async function health(app: TestApp) {
  const started = performance.now()
  const res = await app.app.inject({ method: 'GET', url: '/health/redis' })
  return { res, body: res.json(), ms: performance.now() - started }
}

const get = (app: TestApp, url: string) => app.app.inject({ method: 'GET', url })
const nullableNumber = expect.toSatisfy((v: unknown) => v === null || typeof v === 'number')

/** Every field the contract names, with its type, whatever the status. */
function expectShape(body: Record<string, unknown>) {
  expect(body).toMatchObject({
    status: expect.stringMatching(/^(healthy|degraded|unhealthy)$/),
    redis: {
      connected: expect.any(Boolean),
      version: expect.toSatisfy((v: unknown) => v === null || typeof v === 'string'),
      uptimeSeconds: nullableNumber,
      usedMemoryBytes: nullableNumber,
      totalKeys: nullableNumber,
      maxmemoryPolicy: expect.toSatisfy((v: unknown) => v === null || typeof v === 'string'),
      warnings: expect.any(Array),
    },
    circuitBreaker: { state: expect.stringMatching(/^(closed|half-open|open)$/) },
    pool: { size: expect.any(Number), available: expect.any(Number), borrowed: expect.any(Number), pending: expect.any(Number) },
    postgres: { connected: expect.any(Boolean) },
    sessionCache: { hits: expect.any(Number), misses: expect.any(Number), hitRate: expect.any(Number) },
    performance: { pingMs: nullableNumber, getMs: nullableNumber, setMs: nullableNumber },
  })
}

describe('GET /health/redis, /health/live, /health/ready', () => {
  it('when Redis and Postgres are up, /health/redis is 200 healthy with every field, and live and ready are 200', async () => {
    const app = await startHealthApp()
    const { token } = await db.insertSession()
    await app.validate(token)
    await app.settle()
    await app.validate(token)
    await listening(app)

    const { res, body, ms } = await health(app)
    expect(res.statusCode).toBe(200)
    expectShape(body)
    expect(ms).toBeLessThan(HEALTH_BUDGET_MS)
    expect(body).toMatchObject({
      status: 'healthy',
      draining: false,
      redis: { connected: true, version: expect.stringMatching(/^\d+\.\d+\.\d+/), maxmemoryPolicy: expect.any(String) },
      circuitBreaker: { state: 'closed' },
      postgres: { connected: true },
      // One miss (first validation), one hit (second).
      sessionCache: { hits: 1, misses: 1, hitRate: 50 },
    })
    expect(body.redis.uptimeSeconds).toBeGreaterThanOrEqual(0)
    expect(body.redis.usedMemoryBytes).toBeGreaterThan(0)
    // The private server holds this app's entry, index keys and the health key at least.
    expect(body.redis.totalKeys).toBeGreaterThanOrEqual(2)
    expect(body.pool.size).toBeGreaterThanOrEqual(1)
    expect(body.pool.size).toBeLessThanOrEqual(4)
    expect(body.pool.borrowed + body.pool.available).toBeLessThanOrEqual(body.pool.size)
    for (const timing of Object.values(body.performance)) expect(timing).toBeGreaterThanOrEqual(0)
    // The probe's key carries a TTL, like every key the service writes.
    const healthTtl = await app.redis.pttl(`${app.prefix}health`)
    expect(healthTtl).toBeGreaterThan(0)
    expect(healthTtl).toBeLessThanOrEqual(10_000)

    expect((await get(app, '/health/live')).statusCode).toBe(200)
    const ready = await get(app, '/health/ready')
    expect(ready.statusCode).toBe(200)
    expect(ready.json()).toEqual({ status: 'ready' })
  })

  it('when the private Redis is killed, /health/redis is 200 degraded: Redis not connected, Postgres connected', async () => {
    const app = await startHealthApp()
    await server.stop()
    const { res, body, ms } = await health(app)
    expect(res.statusCode).toBe(200)
    expectShape(body)
    expect(ms).toBeLessThan(HEALTH_BUDGET_MS)
    expect(body).toMatchObject({
      status: 'degraded',
      redis: { connected: false, version: null, totalKeys: null, error: expect.any(String) },
      postgres: { connected: true },
      performance: { pingMs: null, getMs: null, setMs: null },
    })
    expect((await get(app, '/health/ready')).statusCode).toBe(200)
  })

  it('when Postgres is cut through the proxy, /health/redis is 200 degraded: Redis connected, Postgres not', async () => {
    const app = await startHealthApp()
    pgProxy.blackhole()
    const { res, body, ms } = await health(app)
    expect(res.statusCode).toBe(200)
    expectShape(body)
    expect(ms).toBeLessThan(HEALTH_BUDGET_MS)
    expect(body).toMatchObject({ status: 'degraded', redis: { connected: true }, postgres: { connected: false } })
  })

  it('when both Redis and Postgres are down, /health/redis is 503 unhealthy, still with every field', async () => {
    const app = await startHealthApp()
    await server.stop()
    pgProxy.blackhole()
    const { res, body, ms } = await health(app)
    expect(res.statusCode).toBe(503)
    expectShape(body)
    expect(ms).toBeLessThan(HEALTH_BUDGET_MS)
    expect(body).toMatchObject({ status: 'unhealthy', redis: { connected: false }, postgres: { connected: false } })
    // The process is up: liveness does not depend on its backends.
    expect((await get(app, '/health/live')).statusCode).toBe(200)
  })

  it('after markDraining, /health/redis and /health/ready are 503 while /health/live stays 200', async () => {
    const app = await startHealthApp()
    expect((await get(app, '/health/ready')).statusCode).toBe(200)
    expect((await health(app)).res.statusCode).toBe(200)

    app.app.markDraining()
    const ready = await get(app, '/health/ready')
    expect(ready.statusCode).toBe(503)
    expect(ready.json()).toEqual({ status: 'not_ready' })
    const { res, body } = await health(app)
    expect(res.statusCode).toBe(503)
    expectShape(body)
    expect(body).toMatchObject({ status: 'unhealthy', draining: true, redis: { connected: true }, postgres: { connected: true } })
    expect((await get(app, '/health/live')).statusCode).toBe(200)
  })

  it('when Redis is slowed far beyond the health timeout, /health/redis still answers within HEALTH_TIMEOUT_MS and a margin', async () => {
    const { hostname, port } = new URL(TEST_REDIS_URL)
    redisProxy = await startTcpProxy({ host: hostname, port: Number(port) })
    // A command timeout far above the health timeout: only the health deadline can bound the answer.
    const app = await startHealthApp(`redis://127.0.0.1:${redisProxy.port}`, { REDIS_COMMAND_TIMEOUT_MS: '5000' })
    redisProxy.setDelay(SLOW_MS)

    const slowRedis = await health(app)
    expect(slowRedis.ms, `took ${slowRedis.ms.toFixed(0)} ms`).toBeLessThan(HEALTH_BUDGET_MS)
    expect(slowRedis.res.statusCode).toBe(200)
    expectShape(slowRedis.body)
    // The error names whichever bound hit first: the health deadline ('timed out'), or a pooled connection that the
    // slow link left unwritable (no offline queue). Both are the same verdict: not usable within the deadline.
    expect(slowRedis.body).toMatchObject({ status: 'degraded', redis: { connected: false, error: expect.any(String) }, postgres: { connected: true } })

    // Both slowed: unhealthy, and still on time.
    pgProxy.setDelay(SLOW_MS)
    const bothSlow = await health(app)
    expect(bothSlow.ms, `took ${bothSlow.ms.toFixed(0)} ms`).toBeLessThan(HEALTH_BUDGET_MS)
    expect(bothSlow.res.statusCode).toBe(503)
    expect(bothSlow.body).toMatchObject({ status: 'unhealthy', redis: { connected: false }, postgres: { connected: false } })
  })

  it('when Redis runs with noeviction and no maxmemory, /health/redis warns with the recommended setting, and so does the start-up log', async () => {
    const lax = await startRedisServer({ args: ['--maxmemory', '0', '--maxmemory-policy', 'noeviction'] })
    extraServers.push(lax)
    const app = await startHealthApp(lax.url)
    await listening(app)
    const { res, body } = await health(app)
    expect(res.statusCode).toBe(200)
    expect(body).toMatchObject({ status: 'healthy', redis: { connected: true, maxmemoryPolicy: 'noeviction' } })
    const warnings = body.redis.warnings as string[]
    expect(warnings).toEqual(
      expect.arrayContaining([expect.stringMatching(/noeviction.*allkeys-lru/), expect.stringMatching(/maxmemory is unlimited/)]),
    )
    const startupWarnings = app.logs
      .entries()
      .filter((e) => e.level === 40)
      .map((e) => String(e.msg))
    expect(startupWarnings).toEqual(expect.arrayContaining([expect.stringContaining('noeviction'), expect.stringContaining('maxmemory is unlimited')]))
    // The URL is logged without credentials (there are none here, but the field is the redacted one).
    expect(app.logs.entries().find((e) => String(e.msg).includes('noeviction'))).toHaveProperty('redisUrl')
  })

  it('when Redis has a memory limit and allkeys-lru, there is no eviction warning, in /health/redis or at start-up', async () => {
    const tidy = await startRedisServer({ args: ['--maxmemory', '64mb', '--maxmemory-policy', 'allkeys-lru'] })
    extraServers.push(tidy)
    const app = await startHealthApp(tidy.url)
    await listening(app)
    const { body } = await health(app)
    expect(body).toMatchObject({ status: 'healthy', redis: { maxmemoryPolicy: 'allkeys-lru', warnings: [] } })
    // No eviction warning. (Other warnings may come and go with the machine: the slow-log poller reports an INFO that
    // took over 10 ms on a busy host, which says nothing about memory.)
    const warnings = app.logs.entries().filter((e) => e.level === 40 && e.msg !== 'redis slow command')
    expect(warnings).toEqual([])
  })
})
