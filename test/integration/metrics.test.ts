import { createHash } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { startTestApp, type TestApp } from '../support/app.js'

/**
 * GET /metrics: every series the test names is exposed, the counters move with traffic, and no label value carries a
 * token, its hash or a user id.
 */

let db: TestDatabase
let t: TestApp

beforeAll(async () => {
  db = await createTestDatabase()
  t = await startTestApp({ db })
})
afterAll(async () => {
  await t?.close()
  await db?.drop()
})

async function scrape() {
  const response = await t.app.inject({ method: 'GET', url: '/metrics' })
  expect(response.statusCode).toBe(200)
  expect(response.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/)
  return response.body
}

/** The sample's value for an exact series (labels in any order), undefined when the series is not exposed. */
function find(body: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of body.split('\n')) {
    if (line.startsWith('#')) continue
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)/.exec(line)
    if (!match || match[1] !== name) continue
    const found = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]))
    if (Object.keys(found).length !== Object.keys(labels).length) continue
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(match[3])
  }
  return undefined
}

/** The sample's value, 0 when the series does not exist yet (a counter before its first increment). */
function sample(body: string, name: string, labels: Record<string, string> = {}): number {
  return find(body, name, labels) ?? 0
}

/** The sample's value for a series that must be exposed: a missing one fails rather than reading as 0. */
function present(body: string, name: string, labels: Record<string, string> = {}): number {
  const value = find(body, name, labels)
  if (value === undefined) throw new Error(`${name}${JSON.stringify(labels)} is not exposed`)
  return value
}

/** Every label value in the exposition. */
function labelValues(body: string): string[] {
  return [...body.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => m[2] ?? '')
}

describe('GET /metrics', () => {
  it('exposes every series listed below, with its type', async () => {
    const body = await scrape()
    const types: Record<string, string> = {
      session_validations_total: 'counter',
      session_validation_duration_seconds: 'histogram',
      session_cache_hits_total: 'counter',
      session_cache_misses_total: 'counter',
      session_invalidations_total: 'counter',
      redis_pool_size: 'gauge',
      redis_pool_available: 'gauge',
      redis_pool_borrowed: 'gauge',
      redis_pool_pending: 'gauge',
      circuit_breaker_state: 'gauge',
      redis_command_duration_seconds: 'histogram',
      postgres_query_duration_seconds: 'histogram',
      process_cpu_user_seconds_total: 'counter',
      process_resident_memory_bytes: 'gauge',
      nodejs_eventloop_lag_seconds: 'gauge',
    }
    for (const [name, type] of Object.entries(types)) {
      expect(body, name).toContain(`# TYPE ${name} ${type}\n`)
    }
    // The breaker is closed at start, and its label is the breaker's name.
    expect(present(body, 'circuit_breaker_state', { breaker: 'redis' })).toBe(0)
    // The pool is open: it holds at least REDIS_POOL_MIN connections (opened at start, so polled), at most
    // REDIS_POOL_MAX, the gauge is the pool's own figure, and nothing waits on it at rest.
    await expect.poll(async () => present(await scrape(), 'redis_pool_size'), { timeout: 5000 }).toBeGreaterThanOrEqual(t.config.redis.poolMin)
    const rest = await scrape()
    expect(t.config.redis.poolMin).toBeGreaterThan(0)
    expect(present(rest, 'redis_pool_size')).toBeLessThanOrEqual(t.config.redis.poolMax)
    expect(present(rest, 'redis_pool_size')).toBe(t.app.internals.redisPool.size)
    expect(present(rest, 'redis_pool_available') + present(rest, 'redis_pool_borrowed')).toBe(present(rest, 'redis_pool_size'))
    expect(present(rest, 'redis_pool_pending')).toBe(0)
  })

  it('moves with traffic: a miss then a hit, Postgres then Redis as the source, and an invalidation', async () => {
    const { token, sessionId } = await db.insertSession()
    const before = await scrape()

    const first = await t.validate(token)
    expect(first.json()).toMatchObject({ valid: true, source: 'postgres' })
    await t.settle()
    const second = await t.validate(token)
    expect(second.json()).toMatchObject({ valid: true, source: 'redis' })
    const afterValidate = await scrape()

    const delta = (name: string, labels: Record<string, string> = {}) =>
      sample(afterValidate, name, labels) - sample(before, name, labels)
    expect(delta('session_cache_misses_total')).toBe(1)
    expect(delta('session_cache_hits_total')).toBe(1)
    expect(delta('session_validations_total', { result: 'valid', source: 'postgres' })).toBe(1)
    expect(delta('session_validations_total', { result: 'valid', source: 'redis' })).toBe(1)
    expect(delta('session_validation_duration_seconds_count', { source: 'postgres' })).toBe(1)
    expect(delta('session_validation_duration_seconds_count', { source: 'redis' })).toBe(1)
    expect(delta('session_validation_duration_seconds_bucket', { source: 'redis', le: '+Inf' })).toBe(1)
    expect(delta('redis_command_duration_seconds_count', { outcome: 'ok' })).toBeGreaterThanOrEqual(2)
    const pgCount = (body: string) =>
      body
        .split('\n')
        .filter((l) => l.startsWith('postgres_query_duration_seconds_count{') && l.includes('outcome="ok"'))
        .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0)
    expect(pgCount(afterValidate) - pgCount(before)).toBeGreaterThanOrEqual(1)

    const invalidated = await t.invalidate({ sessionId })
    expect(invalidated.json()).toMatchObject({ invalidated: 1 })
    const afterInvalidate = await scrape()
    expect(
      sample(afterInvalidate, 'session_invalidations_total', { kind: 'session' }) -
        sample(afterValidate, 'session_invalidations_total', { kind: 'session' }),
    ).toBe(1)
  })

  it('counts an unknown token as a miss answered not_found from Postgres', async () => {
    const before = await scrape()
    expect((await t.validate(`unknown-${Date.now()}`)).json()).toEqual({ valid: false, reason: 'not_found' })
    const after = await scrape()
    expect(sample(after, 'session_cache_misses_total') - sample(before, 'session_cache_misses_total')).toBe(1)
    expect(
      sample(after, 'session_validations_total', { result: 'not_found', source: 'postgres' }) -
        sample(before, 'session_validations_total', { result: 'not_found', source: 'postgres' }),
    ).toBe(1)
  })

  it('never carries a token, its SHA-256, a session id or a user id in any label, after every kind of traffic', async () => {
    const { token, sessionId, userId } = await db.insertSession()
    const other = await db.insertSession()
    const revoked = await db.insertSession({ revoked: true })
    await t.validate(token)
    await t.settle()
    await t.validate(token)
    await t.validate(revoked.token)
    await t.validate('no-such-token-anywhere')
    await t.validate(12345)
    await t.invalidate({ token })
    await t.invalidate({ sessionId: other.sessionId, revoke: true })
    await t.invalidate({ userId })
    await t.app.inject({ method: 'GET', url: `/nowhere/${token}` })
    await t.settle()

    const body = await scrape()
    const secrets = [token, revoked.token, other.token, sessionId, userId, other.sessionId, other.userId, revoked.userId]
    const hashes = [token, revoked.token, other.token].map((s) => createHash('sha256').update(s).digest('hex'))
    for (const secret of [...secrets, ...hashes]) expect(body).not.toContain(secret)
    // Stronger than the search above: every label value is from a small closed set, never an id-like string.
    for (const value of labelValues(body)) {
      expect(value, value).not.toMatch(/[0-9a-f]{32,}|[0-9a-f]{8}-[0-9a-f]{4}-/i)
      expect(value.length, value).toBeLessThanOrEqual(64)
    }
  })
})
