import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { hashToken } from '../../src/domain/token.js'
import { startTestApp, type TestApp } from '../support/app.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { TEST_REDIS_URL } from '../support/env.js'
import { startRedisServer, type RedisServer } from '../support/redis-server.js'
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js'

/**
 * Degradation against real servers: a private redis-server that is SIGKILLed and restarted, and a TCP proxy that
 * slows the shared one. Nothing of Redis or Postgres is mocked.
 */

/**
 * Kills and restarts fail commands at once (connection refused or reset), so these tests do not need a small command
 * timeout; a small one (it was 100 ms) failed healthy reads on a busy machine and opened the breaker before the test
 * had begun. The slowed-Redis test sets its own.
 */
const COMMAND_TIMEOUT_MS = 1000
const POOL_MAX = 4
const BREAKER_TIMEOUT_MS = 1000
/** Postgres bounds of the config under test: generous, so a loaded machine's slow query is still an answer. */
const PG_CONNECT_TIMEOUT_MS = 1000
const PG_STATEMENT_TIMEOUT_MS = 1000

/**
 * What the config under test promises one validation may take while Redis fails: the cache read is cut at the
 * breaker's timeout (capped at the command timeout), then Postgres gets at most a connection and a statement. Not a
 * guess at how fast this machine is: a wait past it is the service breaking its own bounds.
 */
function requestBudgetMs(config: TestApp['config']): number {
  return Math.min(config.breaker.timeoutMs, config.redis.commandTimeoutMs) + config.database.connectTimeoutMs + config.database.statementTimeoutMs
}

/** Small breaker settings so it opens after a handful of failures and probes again after half a second. */
const CHAOS_ENV = {
  // The revoked token's answer is cached at its first miss, so warm() can put both kinds of entry in Redis.
  NEGATIVE_CACHE_MIN_MISSES: '1',
  REDIS_COMMAND_TIMEOUT_MS: String(COMMAND_TIMEOUT_MS),
  REDIS_CONNECT_TIMEOUT_MS: '200',
  REDIS_POOL_ACQUIRE_TIMEOUT_MS: '200',
  REDIS_POOL_MIN: '2',
  REDIS_POOL_MAX: String(POOL_MAX),
  BREAKER_TIMEOUT_MS: String(BREAKER_TIMEOUT_MS),
  BREAKER_VOLUME_THRESHOLD: '3',
  BREAKER_ERROR_THRESHOLD_PERCENT: '50',
  BREAKER_RESET_TIMEOUT_MS: '500',
  BREAKER_ROLLING_WINDOW_MS: '5000',
  CACHE_WRITE_RETRIES: '1',
  CACHE_WRITE_RETRY_BASE_MS: '10',
  HEALTH_TIMEOUT_MS: '300',
  DATABASE_CONNECT_TIMEOUT_MS: String(PG_CONNECT_TIMEOUT_MS),
  DATABASE_STATEMENT_TIMEOUT_MS: String(PG_STATEMENT_TIMEOUT_MS),
}

let db: TestDatabase
let server: RedisServer
let t: TestApp | undefined
let proxy: TcpProxy | undefined

beforeAll(async () => {
  db = await createTestDatabase()
  server = await startRedisServer()
})
afterAll(async () => {
  await server?.close()
  await db?.drop()
})
beforeEach(async () => {
  if (!server.running) await server.restart()
})
afterEach(async () => {
  proxy?.resume()
  await t?.close()
  t = undefined
  await proxy?.close()
  proxy = undefined
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Sum of the samples of one metric whose labels include `labels`, from the app's own /metrics. */
async function metric(app: TestApp['app'], name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = (await app.inject({ method: 'GET', url: '/metrics' })).body
  let sum = 0
  let found = false
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line)
    if (!m || m[1] !== name) continue
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]))
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) {
      sum += Number(m[3])
      found = true
    }
  }
  if (!found) throw new Error(`metric ${name}${JSON.stringify(labels)} not found`)
  return sum
}

async function timedValidate(app: TestApp, token: string) {
  const started = performance.now()
  const res = await app.validate(token)
  return { res, ms: performance.now() - started }
}

/** Validates a valid and a revoked token until both answers are in Redis (the negative one included). */
async function warm(app: TestApp, valid: string, revoked: string) {
  await app.validate(valid)
  await app.validate(revoked)
  await app.settle()
  // A read slower than the command timeout (a very busy machine) is a miss by design, not a failure; and commands sent
  // before a fresh pool's connections are up fail at once (no offline queue), which can open the breaker for its reset
  // timeout. So ask again, a bounded number of times, a reset timeout apart.
  let source: unknown
  for (let i = 0; i < 10 && source !== 'redis'; i++) {
    const hit = await app.validate(valid)
    expect(hit.json()).toMatchObject({ valid: true })
    source = hit.json().source
    if (source !== 'redis') {
      await app.settle()
      await sleep(app.config.breaker.resetTimeoutMs)
    }
  }
  expect(source).toBe('redis')
  const keys = Object.keys(await app.dump())
  expect(keys).toEqual(expect.arrayContaining([app.keys.entry(hashToken(valid)), app.keys.entry(hashToken(revoked))]))
}

/** Sends validations (bounded in count and time) until the breaker has opened; returns how many it took. */
async function driveUntilOpen(app: TestApp, token: string): Promise<number> {
  // Each request is bounded by the budget; the breaker opens after a handful of them (BREAKER_VOLUME_THRESHOLD).
  const deadline = Date.now() + 20 * requestBudgetMs(app.config)
  for (let sent = 1; sent <= 200 && Date.now() < deadline; sent++) {
    const res = await app.validate(token)
    expect(res.statusCode).toBe(200)
    if (app.app.internals.breaker.opened) return sent
  }
  throw new Error('the breaker did not open')
}

async function startChaosApp(redisUrl = server.url, env: Record<string, string> = {}) {
  t = await startTestApp({ db, redisUrl, env: { ...CHAOS_ENV, ...env } })
  // The inspection connection loses its server too; its reconnect errors are expected.
  t.redis.on('error', () => undefined)
  return t
}

describe('Redis outage (private redis-server, SIGKILL)', () => {
  it('when the private redis-server is killed mid-traffic, every validation still answers correctly from Postgres, the breaker opens, and no request waits past the budget', async () => {
    const app = await startChaosApp()
    const good = await db.insertSession()
    const revoked = await db.insertSession({ revoked: true })
    await warm(app, good.token, revoked.token)

    const answers: { token: 'good' | 'revoked'; status: number; body: Record<string, unknown>; ms: number; afterKill: boolean }[] = []
    let killing: Promise<void> | undefined
    let killed = false
    let roundsAfterOpen = 0
    const deadline = Date.now() + 10_000
    for (let round = 0; round < 80 && Date.now() < deadline && roundsAfterOpen < 5; round++) {
      // The kill lands while this round's requests are in flight.
      if (round === 3) killing = server.stop().then(() => void (killed = true))
      const afterKill = killing !== undefined
      const batch = await Promise.all(
        (['good', 'revoked', 'good', 'revoked'] as const).map(async (which) => {
          const { res, ms } = await timedValidate(app, which === 'good' ? good.token : revoked.token)
          return { token: which, status: res.statusCode, body: res.json() as Record<string, unknown>, ms, afterKill }
        }),
      )
      answers.push(...batch)
      if (killed && app.app.internals.breaker.opened) roundsAfterOpen++
    }
    await killing

    // Every answer is the right one, whatever it came from.
    for (const a of answers) {
      expect(a.status).toBe(200)
      if (a.token === 'good') expect(a.body).toMatchObject({ valid: true, session: { id: good.sessionId } })
      else expect(a.body).toEqual({ valid: false, reason: 'revoked' })
    }
    // No request waited past the budget, not even the ones in flight when Redis died.
    const slowest = Math.max(...answers.map((a) => a.ms))
    expect(slowest, `slowest validation took ${slowest.toFixed(0)} ms`).toBeLessThan(requestBudgetMs(app.config))
    // Once Redis was gone, valid answers came from Postgres.
    const lastGood = answers.filter((a) => a.token === 'good' && a.afterKill).at(-1)
    expect(lastGood?.body.source).toBe('postgres')

    // State left behind: breaker open (gauge 2), failures counted, fills skipped while open.
    expect(roundsAfterOpen).toBe(5)
    expect(app.app.internals.breaker.opened).toBe(true)
    expect(await metric(app.app, 'circuit_breaker_state', { breaker: 'redis' })).toBe(2)
    expect(await metric(app.app, 'circuit_breaker_events_total', { breaker: 'redis', event: 'open' })).toBeGreaterThanOrEqual(1)
    expect(await metric(app.app, 'session_cache_errors_total')).toBeGreaterThan(0)
    expect(await metric(app.app, 'session_validations_total', { source: 'postgres', result: 'revoked' })).toBeGreaterThan(0)
    expect(await metric(app.app, 'session_cache_writes_total', { kind: 'fill', outcome: 'skipped' })).toBeGreaterThan(0)
    expect(await metric(app.app, 'session_service_errors_total').catch(() => 0)).toBe(0)

    const health = await app.app.inject({ method: 'GET', url: '/health/redis' })
    expect(health.statusCode).toBe(200)
    expect(health.json()).toMatchObject({
      status: 'degraded',
      redis: { connected: false },
      // Open, or already half-open: the checks above can outlast BREAKER_RESET_TIMEOUT_MS (500 ms) on a busy machine.
      circuitBreaker: { state: expect.stringMatching(/^(open|half-open)$/) },
      postgres: { connected: true },
    })
    expect(app.logs.text()).toContain('circuit breaker opened')
    expect(app.logs.text()).not.toContain(good.token)
  })

  it('when the private redis-server restarts, the breaker closes after its half-open probe and hits come from Redis again', async () => {
    const app = await startChaosApp()
    const good = await db.insertSession()
    const revoked = await db.insertSession({ revoked: true })
    await warm(app, good.token, revoked.token)

    await server.stop()
    await driveUntilOpen(app, good.token)
    expect(await metric(app.app, 'circuit_breaker_state', { breaker: 'redis' })).toBe(2)

    await server.restart()
    // The restarted server is empty: the first answers come from Postgres and refill it, then from Redis. Bounded:
    // the clients' reconnect backoff is at most 2 s, the breaker probes every 500 ms.
    const sources: unknown[] = []
    const deadline = Date.now() + 10_000
    let last: Record<string, unknown> = {}
    while (Date.now() < deadline && sources.length < 400) {
      const { res, ms } = await timedValidate(app, good.token)
      expect(res.statusCode).toBe(200)
      expect(ms).toBeLessThan(requestBudgetMs(app.config))
      last = res.json()
      expect(last).toMatchObject({ valid: true, session: { id: good.sessionId } })
      sources.push(last.source)
      if (last.source === 'redis') break
      await app.settle()
      await sleep(50)
    }
    expect(last.source, `sources seen: ${sources.join(',')}`).toBe('redis')

    // State: breaker closed (gauge 0) after a half-open probe; the entry is back in the restarted Redis with a TTL.
    expect(app.app.internals.breaker.closed).toBe(true)
    expect(await metric(app.app, 'circuit_breaker_state', { breaker: 'redis' })).toBe(0)
    expect(await metric(app.app, 'circuit_breaker_events_total', { breaker: 'redis', event: 'halfOpen' })).toBeGreaterThanOrEqual(1)
    expect(await metric(app.app, 'circuit_breaker_events_total', { breaker: 'redis', event: 'close' })).toBeGreaterThanOrEqual(1)
    const entry = app.keys.entry(hashToken(good.token))
    expect(Object.keys(await app.dump())).toContain(entry)
    const ttl = await app.redis.pttl(entry)
    expect(ttl).toBeGreaterThan(0)

    // The revoked token is answered right too, and once refilled it is a (negative) hit.
    expect((await app.validate(revoked.token)).json()).toEqual({ valid: false, reason: 'revoked' })
    const health = await app.app.inject({ method: 'GET', url: '/health/redis' })
    expect(health.statusCode).toBe(200)
    expect(health.json()).toMatchObject({ status: 'healthy', redis: { connected: true }, circuitBreaker: { state: 'closed' } })
    expect(app.logs.text()).toContain('circuit breaker closed')
  })

  it('while Redis is down, the pool does not busy-loop and stays within REDIS_POOL_MAX', async () => {
    const app = await startChaosApp()
    const good = await db.insertSession()
    await server.stop()
    await driveUntilOpen(app, good.token)

    // A burst wider than the pool, through open and half-open breaker states.
    for (let round = 0; round < 3; round++) {
      const burst = await Promise.all(Array.from({ length: 3 * POOL_MAX }, () => app.validate(good.token)))
      for (const res of burst) expect(res.json()).toMatchObject({ valid: true, source: 'postgres' })
      await sleep(250)
    }

    // Idle with Redis down for about a second (two breaker reset periods, several reconnect attempts).
    const cpuBefore = process.cpuUsage()
    const wallBefore = performance.now()
    await sleep(1000)
    const cpu = process.cpuUsage(cpuBefore)
    const wallMs = performance.now() - wallBefore
    const share = (cpu.user + cpu.system) / 1000 / wallMs
    expect(share, `CPU while idle with Redis down: ${(share * 100).toFixed(1)}% of one core`).toBeLessThan(0.3)

    const pool = app.app.internals.redisPool
    expect(pool.size).toBeLessThanOrEqual(POOL_MAX)
    expect(pool.pending).toBe(0)
    expect(await metric(app.app, 'redis_pool_size')).toBeLessThanOrEqual(POOL_MAX)
    expect(await metric(app.app, 'redis_pool_pending')).toBe(0)
    // The reconnect errors are logged once per run of failures, not once per attempt: at most once per pooled
    // connection, and once for the invalidation feed's subscriber.
    const connectionErrors = app.logs.entries().filter((e) => e.msg === 'redis connection error')
    expect(connectionErrors.length).toBeLessThanOrEqual(POOL_MAX + 1)
  })

  it('when Redis is down at start-up, the app starts, warns, answers from Postgres and does not busy-loop', async () => {
    await server.stop()
    const started = performance.now()
    const app = await startChaosApp()
    expect(performance.now() - started).toBeLessThan(5000)
    expect(app.logs.text()).toContain('Redis is unreachable')
    const good = await db.insertSession()
    const { res, ms } = await timedValidate(app, good.token)
    expect(res.json()).toMatchObject({ valid: true, source: 'postgres' })
    expect(ms).toBeLessThan(requestBudgetMs(app.config))

    const cpuBefore = process.cpuUsage()
    const wallBefore = performance.now()
    await sleep(1000)
    const cpu = process.cpuUsage(cpuBefore)
    const share = (cpu.user + cpu.system) / 1000 / (performance.now() - wallBefore)
    expect(share, `CPU while idle with Redis down: ${(share * 100).toFixed(1)}% of one core`).toBeLessThan(0.3)
    expect(app.app.internals.redisPool.size).toBeLessThanOrEqual(POOL_MAX)
  })
})

describe('Redis slowed through a proxy', () => {
  it('when Redis is slowed beyond REDIS_COMMAND_TIMEOUT_MS, requests fall through to Postgres within the command timeout and a margin', async () => {
    // A longer command timeout than the outage tests, and BREAKER_TIMEOUT_MS far above it: a request must still be
    // held to the command timeout, although ioredis starts its own timer only when a queued command is written.
    const commandTimeoutMs = 500
    const { hostname, port } = new URL(TEST_REDIS_URL)
    proxy = await startTcpProxy({ host: hostname, port: Number(port) })
    const app = await startChaosApp(`redis://127.0.0.1:${proxy.port}`, {
      REDIS_COMMAND_TIMEOUT_MS: String(commandTimeoutMs),
      BREAKER_TIMEOUT_MS: '5000',
      BREAKER_VOLUME_THRESHOLD: '8',
      // Once open it must stay open while this test looks at it: with a short reset timeout the breaker can open and
      // turn half-open between two checks, and a half-open probe against the slow Redis takes a full timeout.
      BREAKER_RESET_TIMEOUT_MS: '10000',
    })
    const budgetMs = requestBudgetMs(app.config)
    const good = await db.insertSession()
    await app.validate(good.token)
    await app.settle()
    expect((await app.validate(good.token)).json()).toMatchObject({ source: 'redis' })

    // Slower than the whole budget: a request that waited for this Redis could not come in under it.
    proxy.setDelay(2 * budgetMs)
    // Sequential requests, each followed (while the breaker is closed) by a background refill on the same slow
    // connection, and then two that overlap: each must still be bounded by its own command timeout.
    const answers: { source: unknown; ms: number }[] = []
    for (let i = 0; i < 3; i++) {
      const { res, ms } = await timedValidate(app, good.token)
      expect(res.statusCode).toBe(200)
      expect(res.json()).toMatchObject({ valid: true, session: { id: good.sessionId } })
      answers.push({ source: res.json().source, ms })
    }
    const first = timedValidate(app, good.token)
    await sleep(commandTimeoutMs / 2)
    for (const { res, ms } of await Promise.all([first, timedValidate(app, good.token)])) {
      expect(res.json()).toMatchObject({ valid: true, session: { id: good.sessionId } })
      answers.push({ source: res.json().source, ms })
    }
    for (const a of answers) {
      expect(a.source).toBe('postgres')
      expect(a.ms, `slowed validations took ${answers.map((x) => x.ms.toFixed(0)).join(', ')} ms`).toBeLessThan(budgetMs)
    }

    // Timeouts count as failures: the breaker opens and Redis is then skipped outright, at Postgres speed.
    await driveUntilOpen(app, good.token)
    const rejectsBefore = await metric(app.app, 'circuit_breaker_events_total', { breaker: 'redis', event: 'reject' })
    const skipped = await timedValidate(app, good.token)
    expect(skipped.res.json()).toMatchObject({ valid: true, source: 'postgres' })
    // Skipped, not tried: the breaker rejected the read (commands sent before it opened may still be finishing, so
    // the command count proves nothing here), and no command timeout was waited.
    expect(await metric(app.app, 'circuit_breaker_events_total', { breaker: 'redis', event: 'reject' })).toBe(rejectsBefore + 1)
    expect(skipped.ms).toBeLessThan(budgetMs - commandTimeoutMs)
    expect(await metric(app.app, 'circuit_breaker_state', { breaker: 'redis' })).toBe(2)
    expect(await metric(app.app, 'session_cache_errors_total')).toBeGreaterThanOrEqual(5)

    // The cached entry is untouched: a slow Redis is no reason to drop it.
    proxy.setDelay(0)
    expect(Object.keys(await app.dump())).toContain(app.keys.entry(hashToken(good.token)))
  })
})
