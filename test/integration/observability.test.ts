import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { Redis } from 'ioredis'
import type { SessionCache } from '../../src/domain/ports.js'
import { hashToken } from '../../src/domain/token.js'
import { startTestApp, type TestApp } from '../support/app.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { eventually } from '../support/gate.js'
import { freePort, startRedisServer, type RedisServer } from '../support/redis-server.js'

/**
 * The metrics and logs beyond metrics.test.ts's list: Redis INFO and SLOWLOG pollers, hot keys and miss spikes, negative
 * cache, breaker events, pool gauges, and the audit trail of invalidations.
 */

let db: TestDatabase
let t: TestApp | undefined

beforeAll(async () => {
  db = await createTestDatabase()
})
afterEach(async () => {
  await t?.close()
  t = undefined
})
afterAll(async () => {
  await db?.drop()
})

async function scrape(app: TestApp): Promise<string> {
  const response = await app.app.inject({ method: 'GET', url: '/metrics' })
  expect(response.statusCode).toBe(200)
  return response.body
}

/** The value of one exact series (labels in any order); undefined when it does not exist. */
function sample(body: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of body.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!match || match[1] !== name) continue
    const found = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]))
    if (Object.keys(found).length !== Object.keys(labels).length) continue
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(match[3])
  }
  return undefined
}

const value = async (app: TestApp, name: string, labels: Record<string, string> = {}) => sample(await scrape(app), name, labels)

describe('Redis INFO poller', () => {
  it('exports memory, maxmemory, connected clients, evictions and expirations, and redis_up, through the pool', async () => {
    t = await startTestApp({ db, env: { TELEMETRY_REDIS_INFO_INTERVAL_MS: '100' } })
    const app = t
    await eventually(async () => (await value(app, 'redis_up')) === 1, 10_000, 'redis_up 1')
    const body = await scrape(app)
    expect(sample(body, 'redis_memory_used_bytes')).toBeGreaterThan(0)
    expect(sample(body, 'redis_memory_max_bytes')).toBeGreaterThanOrEqual(0)
    expect(sample(body, 'redis_connected_clients')).toBeGreaterThanOrEqual(1)
    expect(sample(body, 'redis_evicted_keys_total')).toBeGreaterThanOrEqual(0)
    expect(sample(body, 'redis_expired_keys_total')).toBeGreaterThanOrEqual(0)
    // Polls bypass the breaker: they neither count as cache traffic nor towards opening it.
    expect(sample(body, 'redis_command_duration_seconds_count', { outcome: 'ok' }) ?? 0).toBe(0)
  })

  it('reports redis_up 0 when Redis cannot be reached, and the service still answers', async () => {
    t = await startTestApp({ db, redisUrl: `redis://127.0.0.1:${await freePort()}`, env: { TELEMETRY_REDIS_INFO_INTERVAL_MS: '100' } })
    const app = t
    await eventually(async () => (await value(app, 'redis_up')) === 0, 10_000, 'redis_up 0')
    const { token } = await db.insertSession()
    expect((await app.validate(token)).json()).toMatchObject({ valid: true, source: 'postgres' })
  })
})

describe('Redis SLOWLOG poller', () => {
  let redis: RedisServer
  beforeAll(async () => {
    // Every command is "slow" on this private server, so the app's own traffic fills the log.
    redis = await startRedisServer({ args: ['--slowlog-log-slower-than', '0', '--slowlog-max-len', '1024'] })
  })
  afterAll(async () => {
    await redis?.close()
  })

  it('counts new entries by command and logs each with its command name and duration only', async () => {
    t = await startTestApp({ db, redisUrl: redis.url, env: { TELEMETRY_SLOWLOG_INTERVAL_MS: '100' } })
    const app = t
    const { token } = await db.insertSession()
    await app.validate(token)
    await app.settle()
    await app.validate(token)
    await eventually(async () => ((await value(app, 'redis_slowlog_entries_total', { command: 'get' })) ?? 0) >= 2, 10_000, 'slow GETs counted')
    // The fill script: EVAL the first time on this fresh server (EVALSHA answered NOSCRIPT), EVALSHA afterwards.
    const body = await scrape(app)
    expect((sample(body, 'redis_slowlog_entries_total', { command: 'eval' }) ?? 0) + (sample(body, 'redis_slowlog_entries_total', { command: 'evalsha' }) ?? 0)).toBeGreaterThanOrEqual(1)
    expect(await value(app, 'redis_slowlog_duration_seconds_total', { command: 'get' })).toBeGreaterThan(0)

    const lines = app.logs.entries().filter((l) => l.msg === 'redis slow command')
    expect(lines.length).toBeGreaterThanOrEqual(3)
    for (const line of lines) {
      const { level, time, service, msg, command, durationMs, ...rest } = line
      expect({ level, msg, service }).toEqual({ level: 40, msg: 'redis slow command', service: 'studio-session-cache' })
      expect(time).toBeDefined()
      expect(command).toMatch(/^[a-z|]+$/)
      expect(durationMs).toBeGreaterThanOrEqual(0)
      expect(rest).toEqual({})
    }
    // Never an argument: no key (the prefix), no hash, no token.
    const text = lines.map((l) => JSON.stringify(l)).join('\n')
    expect(text).not.toContain(app.prefix)
    expect(text).not.toContain(hashToken(token).slice(0, 16))
    expect(text).not.toContain(token)
  })

  it('turns itself off, once and with a hint, when the Redis user may not run SLOWLOG', async () => {
    const admin = new Redis(redis.url)
    await admin.call('ACL', 'SETUSER', 'no-slowlog', 'on', '>secret-pass', '~*', '&*', '+@all', '-slowlog')
    admin.disconnect()
    // The INFO poller runs at the same interval: its calls, counted by the server, prove that the slow-log poller has
    // had its turns too, whatever the machine's speed (a fixed sleep proves nothing on a loaded machine).
    const intervalMs = 50
    t = await startTestApp({
      db,
      redisUrl: `redis://no-slowlog:secret-pass@127.0.0.1:${redis.port}`,
      env: { TELEMETRY_SLOWLOG_INTERVAL_MS: String(intervalMs), TELEMETRY_REDIS_INFO_INTERVAL_MS: String(intervalMs) },
    })
    const app = t
    const stats = new Redis(redis.url)
    let ownInfoCalls = 0
    /** calls (less this test's own INFO calls) and rejected_calls of one command, from INFO commandstats. */
    const commandStats = async (command: string) => {
      const own = ownInfoCalls++
      const line = (await stats.info('commandstats')).split('\r\n').find((l) => l.startsWith(`cmdstat_${command}:`)) ?? ''
      const calls = Number(/calls=(\d+)/.exec(line)?.[1] ?? 0)
      return { calls: command === 'info' ? calls - own : calls, rejected: Number(/rejected_calls=(\d+)/.exec(line)?.[1] ?? 0) }
    }
    try {
      await eventually(() => app.logs.entries().some((l) => String(l.msg).startsWith('SLOWLOG is not permitted')), 10_000, 'the hint')
      const refusedAtHint = (await commandStats('slowlog|get')).rejected
      expect(refusedAtHint).toBeGreaterThanOrEqual(1)
      const infoAtHint = (await commandStats('info')).calls
      await eventually(async () => (await commandStats('info')).calls >= infoAtHint + 5, 10_000, 'five more poller turns')
      // Said once, and never tried again: the server refused no further SLOWLOG.
      expect(app.logs.entries().filter((l) => String(l.msg).startsWith('SLOWLOG is not permitted'))).toHaveLength(1)
      expect((await commandStats('slowlog|get')).rejected).toBe(refusedAtHint)
    } finally {
      stats.disconnect()
    }
    const { token } = await db.insertSession()
    expect((await app.validate(token)).json()).toMatchObject({ valid: true })
  })
})

describe('hot keys and miss spikes', () => {
  it('detects a miss spike on one session at once; a window closes with its top-K, most-missed key and hit ratio', async () => {
    t = await startTestApp({
      db,
      env: {
        TELEMETRY_HOT_KEYS_TOP_K: '2',
        TELEMETRY_MISS_SPIKE_THRESHOLD: '5',
        // Exact counts: every lookup counted.
        TELEMETRY_HOT_KEYS_SAMPLE_EVERY: '1',
        // Unknown tokens are not cached, so each repeat misses.
        NEGATIVE_CACHE_TTL_SECONDS: '0',
      },
    })
    const app = t
    const a = await db.insertSession()
    const b = await db.insertSession()
    const hammered = 'never-issued-but-asked-again-and-again'
    for (const [token, times] of [
      [a.token, 7],
      [b.token, 3],
    ] as const) {
      await app.validate(token)
      await app.settle()
      for (let i = 1; i < times; i++) expect((await app.validate(token)).json()).toMatchObject({ source: 'redis' })
    }
    for (let i = 0; i < 4; i++) await app.validate(hammered)
    expect(await value(app, 'session_miss_spikes_total')).toBe(0)
    await app.validate(hammered)
    expect(await value(app, 'session_miss_spikes_total')).toBe(1)
    await app.validate(hammered) // the same spike: reported once per window
    expect(await value(app, 'session_miss_spikes_total')).toBe(1)
    const id = (token: string) => hashToken(token).slice(0, 8)
    const spike = app.logs.entries().filter((l) => String(l.msg).startsWith('miss spike'))
    expect(spike).toHaveLength(1)
    expect(spike[0]).toMatchObject({ level: 40, key: id(hammered), misses: 5, threshold: 5 })

    const window = app.app.internals.telemetry.closeWindow()
    expect(window).toMatchObject({ lookups: 16, hits: 8 })
    const body = await scrape(app)
    expect(sample(body, 'session_hot_key_requests', { rank: '1', key: id(a.token) })).toBe(7)
    expect(sample(body, 'session_hot_key_requests', { rank: '2', key: id(hammered) })).toBe(6)
    expect(body).not.toContain(`key="${id(b.token)}"`)
    expect(sample(body, 'session_key_misses_max')).toBe(6)
    expect(sample(body, 'session_cache_hit_ratio')).toBe(0.5)
    const logged = app.logs.entries().find((l) => String(l.msg).startsWith('cache window'))
    expect(logged).toMatchObject({
      level: 30,
      lookups: 16,
      hitRatio: 0.5,
      hotKeys: [
        { key: id(a.token), requests: 7 },
        { key: id(hammered), requests: 6 },
      ],
      mostMissed: { key: id(hammered), misses: 6 },
    })
    // Only ever 8 hex characters of a hash leave the process.
    for (const token of [a.token, b.token, hammered]) {
      expect(body).not.toContain(hashToken(token).slice(0, 9))
      expect(app.logs.text()).not.toContain(hashToken(token).slice(0, 9))
    }

    // The next window starts empty: no hot keys until traffic comes back, and no ratio without lookups.
    app.app.internals.telemetry.closeWindow()
    const empty = await scrape(app)
    expect(empty).not.toMatch(/^session_hot_key_requests\{/m)
    expect(sample(empty, 'session_cache_hit_ratio')).toBeNaN()
    expect(sample(empty, 'session_key_misses_max')).toBe(0)
  })
})

describe('negative cache, breaker events and pool gauges', () => {
  it('counts negative fills and negative hits', async () => {
    t = await startTestApp({ db })
    const before = await scrape(t)
    // Cached at its second miss (NEGATIVE_CACHE_MIN_MISSES=2).
    for (let i = 0; i < 2; i++) {
      await t.validate('unknown-token-for-the-negative-cache')
      await t.settle()
    }
    expect((await t.validate('unknown-token-for-the-negative-cache')).json()).toEqual({ valid: false, reason: 'not_found' })
    const after = await scrape(t)
    const delta = (name: string) => (sample(after, name) ?? 0) - (sample(before, name) ?? 0)
    expect(delta('session_negative_cache_fills_total')).toBe(1)
    expect(delta('session_negative_cache_hits_total')).toBe(1)
    expect(delta('session_cache_hits_total')).toBe(1)
  })

  it('has every breaker event from start, and counts open, reject, fallback and close', async () => {
    t = await startTestApp({ db })
    const events = ['open', 'halfOpen', 'close', 'reject', 'timeout', 'failure', 'fallback']
    const before = await scrape(t)
    for (const event of events) expect(sample(before, 'circuit_breaker_events_total', { breaker: 'redis', event }), event).toBe(0)
    const { token } = await db.insertSession()
    t.app.internals.breaker.open()
    expect((await t.validate(token)).json()).toMatchObject({ valid: true, source: 'postgres' })
    t.app.internals.breaker.close()
    const after = await scrape(t)
    const count = (event: string) => sample(after, 'circuit_breaker_events_total', { breaker: 'redis', event })
    expect({ open: count('open'), reject: count('reject'), fallback: count('fallback'), close: count('close') }).toEqual({
      open: 1,
      reject: 1,
      fallback: 1,
      close: 1,
    })
  })

  it('exports both pools: size, available, borrowed, pending and max', async () => {
    t = await startTestApp({ db, env: { DATABASE_POOL_MAX: '7', REDIS_POOL_MAX: '9' } })
    const { token } = await db.insertSession()
    await t.validate(token)
    const body = await scrape(t)
    expect(sample(body, 'postgres_pool_max')).toBe(7)
    expect(sample(body, 'postgres_pool_size')).toBeGreaterThanOrEqual(1)
    expect(sample(body, 'postgres_pool_available')).toBe(sample(body, 'postgres_pool_size'))
    expect(sample(body, 'postgres_pool_borrowed')).toBe(0)
    expect(sample(body, 'postgres_pool_pending')).toBe(0)
    expect(sample(body, 'redis_pool_max')).toBe(9)
  })
})

describe('audit log', () => {
  const KEY = 'an-invalidation-key-long-enough-0123'

  function auditLines(app: TestApp) {
    return app.logs.entries().filter((l) => l.audit === 'session.invalidate')
  }

  it('writes one structured audit event per invalidation: caller key id, kind, counts, request id; never the key or target', async () => {
    t = await startTestApp({ db, env: { SERVICE_API_KEYS: `studio-backend:${KEY}` } })
    const { token, sessionId, userId } = await db.insertSession()
    await t.validate(token)
    await t.settle()
    const auth = { authorization: `Bearer ${KEY}` }
    expect((await t.invalidate({ sessionId, revoke: true }, { ...auth, 'x-request-id': 'audit-1' })).statusCode).toBe(200)
    expect((await t.invalidate({ userId }, { ...auth, 'x-request-id': 'audit-2' })).statusCode).toBe(200)
    expect((await t.invalidate({ token }, { authorization: 'Bearer wrong-key', 'x-request-id': 'audit-3' })).statusCode).toBe(401)
    expect((await t.invalidate({ token, userId }, { ...auth, 'x-request-id': 'audit-4' })).statusCode).toBe(400)

    const lines = auditLines(t)
    expect(lines.map((l) => ({ ...l, time: undefined }))).toEqual([
      {
        level: 30,
        time: undefined,
        service: 'studio-session-cache',
        audit: 'session.invalidate',
        requestId: 'audit-1',
        outcome: 'invalidated',
        statusCode: 200,
        keyId: 'studio-backend',
        kind: 'session',
        revoke: true,
        invalidated: 1,
        revoked: 1,
        msg: 'sessions invalidated',
      },
      expect.objectContaining({ requestId: 'audit-2', outcome: 'invalidated', keyId: 'studio-backend', kind: 'user', revoke: false, invalidated: 0, revoked: 0 }),
      expect.objectContaining({ requestId: 'audit-3', outcome: 'denied', statusCode: 401, keyId: null, kind: null, code: 'UNAUTHORIZED' }),
      expect.objectContaining({ requestId: 'audit-4', outcome: 'rejected', statusCode: 400, keyId: 'studio-backend', kind: null }),
    ])
    const text = lines.map((l) => JSON.stringify(l)).join('\n')
    for (const secret of [KEY, 'wrong-key', token, hashToken(token), sessionId, userId]) expect(text).not.toContain(secret)
  })

  it('audits a failed invalidation with its error code, and names an unnamed key by its SHA-256 prefix', async () => {
    let failNext = true
    const flaky = (cache: SessionCache): SessionCache => ({
      ...cache,
      async invalidate(targets) {
        // The request's own invalidation fails once (not the revocation feed's replay of earlier outbox rows).
        if (failNext && targets.length === 1 && targets[0]!.kind === 'session') {
          failNext = false
          throw new Error('redis down')
        }
        return cache.invalidate(targets)
      },
    })
    t = await startTestApp({ db, env: { SERVICE_API_KEYS: KEY }, overrides: { wrapCache: flaky } })
    const { sessionId } = await db.insertSession()
    expect((await t.invalidate({ sessionId }, { authorization: `Bearer ${KEY}`, 'x-request-id': 'audit-5' })).statusCode).toBe(503)
    const [line] = auditLines(t)
    const { createHash } = await import('node:crypto')
    expect(line).toMatchObject({
      requestId: 'audit-5',
      outcome: 'failed',
      statusCode: 503,
      code: 'SESSION_CACHE_UNAVAILABLE',
      keyId: `key-${createHash('sha256').update(KEY).digest('hex').slice(0, 8)}`,
      kind: 'session',
    })
    expect(JSON.stringify(line)).not.toContain(KEY)
  })
})
