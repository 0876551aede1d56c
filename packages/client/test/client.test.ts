import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestDatabase, type TestDatabase } from '../../../test/support/database.js'
import { freePort } from '../../../src/dev/free-port.js'
import { startRedisServer, type RedisServer } from '../../../test/support/redis-server.js'
import { startServerProcess, TEST_SERVICE_KEY, type ServerProcess } from '../../../test/support/server-process.js'
import { startTcpProxy, type TcpProxy } from '../../../test/support/tcp-proxy.js'
import {
  createSessionClient,
  RevokeNotConfirmedError,
  SessionServiceConfigError,
  SessionServiceUnavailableError,
  type SessionClient,
  type ValidateResponse,
} from '../src/index.js'

/**
 * The client against the real service process (src/server.ts), its own Redis (stopped in one test) and the shared
 * Postgres behind a TCP proxy (cut in others). No mocks: every disturbance is real and asserted.
 */

/** The service's Postgres timeouts under test: short, so an outage is a quick 503. */
const PG_CONNECT_TIMEOUT_MS = 500
const PG_STATEMENT_TIMEOUT_MS = 500
const RETRY_AFTER_SECONDS = 1
/**
 * The client's deadline for this configuration, derived as deadline.ts derives the default: Redis 250 ms + queue wait
 * 1000 ms + connect + statement + the 500 ms query-timer margin, plus a retry after Retry-After.
 */
const DEADLINE_MS = 250 + 1000 + PG_CONNECT_TIMEOUT_MS + PG_STATEMENT_TIMEOUT_MS + 500 + RETRY_AFTER_SECONDS * 1000

let db: TestDatabase
let redis: RedisServer
let pgProxy: TcpProxy
let service: ServerProcess
const clients: SessionClient[] = []
const quiet = { warn: () => undefined }
const logged: Array<{ fields: Record<string, unknown>; message: string }> = []

function client(options: Partial<Parameters<typeof createSessionClient>[0]> = {}): SessionClient {
  const c = createSessionClient({ baseUrl: service.url, serviceKey: TEST_SERVICE_KEY, deadlineMs: DEADLINE_MS, logger: quiet, ...options })
  clients.push(c)
  return c
}

const fallbackAnswer: ValidateResponse = { valid: false, reason: 'not_found' }

beforeAll(async () => {
  db = await createTestDatabase()
  redis = await startRedisServer()
  pgProxy = await startTcpProxy({ host: '127.0.0.1', port: new URL(db.url).port ? Number(new URL(db.url).port) : 5432 })
  const url = new URL(db.url)
  url.host = `127.0.0.1:${pgProxy.port}`
  service = await startServerProcess({
    DATABASE_URL: url.toString(),
    DATABASE_SCHEMA: db.schema,
    DATABASE_CONNECT_TIMEOUT_MS: String(PG_CONNECT_TIMEOUT_MS),
    DATABASE_STATEMENT_TIMEOUT_MS: String(PG_STATEMENT_TIMEOUT_MS),
    REDIS_URL: redis.url,
    CACHE_ENCRYPTION_KEYS: `t:${randomBytes(32).toString('base64')}`,
    RETRY_AFTER_SECONDS: String(RETRY_AFTER_SECONDS),
    SHUTDOWN_DRAIN_DELAY_MS: '0',
    // Per-request lines (with the request id) are logged at debug only.
    LOG_LEVEL: 'debug',
  })
}, 90_000)

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()))
  await service?.kill()
  await pgProxy?.close()
  await redis?.close()
  await db?.drop()
})

describe('the client against the real service', () => {
  it('answers valid and valid:false exactly, and forwards the request id', async () => {
    const c = client()
    const live = await db.insertSession()
    const revoked = await db.insertSession({ revoked: true })
    const answer = await c.validate(live.token, { requestId: 'client-test-1' })
    expect(answer).toMatchObject({ valid: true, session: { id: live.sessionId, userId: live.userId }, source: 'postgres' })
    expect(await c.validate(revoked.token)).toEqual({ valid: false, reason: 'revoked' })
    expect(c.metrics()).toMatchObject({ calls: 2, answers: 2, retries: 0 })
    await expect.poll(() => service.logs().some((l) => l.requestId === 'client-test-1')).toBe(true)
  })

  it('a wrong service key is a typed configuration error after one attempt, no retries', async () => {
    const c = client({ serviceKey: 'wrong-key-wrong-key-wrong' })
    const { sessionId } = await db.insertSession()
    const err = await c.invalidate({ sessionId }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(SessionServiceConfigError)
    expect(err).toMatchObject({ kind: 'configuration', status: 401, code: 'UNAUTHORIZED', attempts: 1 })
    expect(c.metrics()).toMatchObject({ retries: 0, errors: { configuration: 1 } })
  })

  it('Postgres down: an uncached token gets a typed unavailable error (never valid:false), or the fallback', async () => {
    const cached = await db.insertSession()
    const c = client()
    expect(await c.validate(cached.token)).toMatchObject({ valid: true })
    // The cache fill is in the background: wait until Redis answers it.
    await expect.poll(async () => (await c.validate(cached.token)).valid && (await c.validate(cached.token) as { source: string }).source, { timeout: 5000 }).toBe('redis')
    const uncached = await db.insertSession()
    pgProxy.blackhole('refuse')
    try {
      // The disturbance: Postgres is unreachable for the service.
      await expect.poll(async () => ((await c.health()).report as { postgres?: { connected: boolean } }).postgres?.connected, { timeout: 5000 }).toBe(false)
      const err = await c.validate(uncached.token).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(SessionServiceUnavailableError)
      expect(err).toMatchObject({ kind: 'unavailable', reason: 'status', status: 503, code: 'SESSION_STORE_UNAVAILABLE', retryAfterMs: RETRY_AFTER_SECONDS * 1000 })
      expect((err as SessionServiceUnavailableError).attempts).toBeGreaterThan(1)
      // A cached session is still answered.
      expect(await c.validate(cached.token)).toMatchObject({ valid: true, source: 'redis' })

      const fallbackCalls: string[] = []
      const withFallback = client({
        onUnavailable: 'throw',
        fallback: async (token) => (fallbackCalls.push(token), fallbackAnswer),
        logger: { warn: (fields, message) => logged.push({ fields, message }) },
      })
      expect(await withFallback.validate(uncached.token)).toEqual({ ...fallbackAnswer, fallback: true })
      expect(fallbackCalls).toEqual([uncached.token])
      expect(withFallback.metrics()).toMatchObject({ fallbacks: 1, retries: 0 })
      expect(logged.at(-1)).toMatchObject({ message: 'session service could not answer; using the fallback', fields: { code: 'SESSION_STORE_UNAVAILABLE' } })
      expect(JSON.stringify(logged)).not.toContain(uncached.token)
    } finally {
      pgProxy.resume()
    }
  })

  it('a revoke answered 503 while Postgres is down lands once it heals: the client keeps retrying', async () => {
    const c = client()
    const s = await db.insertSession()
    pgProxy.blackhole('refuse')
    let healed = false
    try {
      const revoking = c.invalidate({ sessionId: s.sessionId, revoke: true })
      // The disturbance: the service answered 503 at least once, and the client retried.
      await expect.poll(() => c.metrics().retries, { timeout: 5000 }).toBeGreaterThan(0)
      expect((await db.sessionRow(s.sessionId))!.revoked_at).toBeNull()
      pgProxy.resume()
      healed = true
      expect(await revoking).toEqual({ invalidated: expect.any(Number), revoked: 1 })
    } finally {
      if (!healed) pgProxy.resume()
    }
    expect((await db.sessionRow(s.sessionId))!.revoked_at).not.toBeNull()
    expect(await c.validate(s.token)).toEqual({ valid: false, reason: 'revoked' })
  })

  it('a revoke that cannot land before its deadline says it may not have happened', async () => {
    const c = client({ revokeDeadlineMs: 1500 })
    const s = await db.insertSession()
    pgProxy.blackhole('refuse')
    try {
      const err = await c.invalidate({ sessionId: s.sessionId, revoke: true }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(RevokeNotConfirmedError)
      expect((err as Error).message).toMatch(/revoke may not have happened/)
      expect(err).toMatchObject({ kind: 'unavailable', code: 'SESSION_STORE_UNAVAILABLE' })
    } finally {
      pgProxy.resume()
    }
  })

  it('Redis down: answers continue (from Postgres)', async () => {
    const c = client()
    const s = await db.insertSession()
    await redis.stop()
    await expect.poll(async () => ((await c.health()).report as { redis?: { connected: boolean } }).redis?.connected, { timeout: 5000 }).toBe(false)
    for (let i = 0; i < 5; i++) expect(await c.validate(s.token)).toMatchObject({ valid: true, source: 'postgres' })
    expect(c.metrics().errors).toEqual({ unavailable: 0, configuration: 0, request: 0, server: 0 })
  })

  it('hedging: a second request after the hedge delay, the first answer wins', async () => {
    const s = await db.insertSession()
    // Postgres slowed past the hedge delay: the first request waits on it, the hedge is sent, one answer is used.
    pgProxy.setDelay(150)
    try {
      const c = client({ hedgeAfterMs: 50 })
      expect(await c.validate(s.token)).toMatchObject({ valid: true, session: { id: s.sessionId } })
      expect(c.metrics()).toMatchObject({ hedges: 1, answers: 1, retries: 0 })
    } finally {
      pgProxy.setDelay(0)
    }
  })

  it('service down: the fallback answers; without one, a typed transport error', async () => {
    const nowhere = `http://127.0.0.1:${await freePort()}`
    const fallbackCalls: string[] = []
    const withFallback = client({ baseUrl: nowhere, fallback: async (t) => (fallbackCalls.push(t), fallbackAnswer) })
    expect(await withFallback.validate('tok_whatever')).toEqual({ ...fallbackAnswer, fallback: true })
    expect(fallbackCalls).toEqual(['tok_whatever'])
    const bare = client({ baseUrl: nowhere, deadlineMs: 500 })
    const err = await bare.validate('tok_whatever').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(SessionServiceUnavailableError)
    expect(err).toMatchObject({ kind: 'unavailable', code: 'ECONNREFUSED' })
  })
})
