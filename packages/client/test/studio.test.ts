import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestDatabase, type TestDatabase } from '../../../test/support/database.js'
import { startServerProcess, TEST_SERVICE_KEY, type ServerProcess } from '../../../test/support/server-process.js'
import { startTcpProxy, type TcpProxy } from '../../../test/support/tcp-proxy.js'
import { hashToken } from '../../../src/domain/token.js'
import { SessionServiceUnavailableError } from '../src/index.js'
import {
  closeSessionCache,
  configureSessionCache,
  getSessionCacheMetrics,
  revokeAllUserSessionsWithCache,
  revokeSessionWithCache,
  sessionCacheHealthCheck,
  validateSessionWithCache,
  type SessionWithUser,
} from '../src/studio.js'

/** The ./studio drop-in against the real service: the Studio's names and shapes; null only for valid:false. */

let db: TestDatabase
let pgProxy: TcpProxy
let service: ServerProcess

beforeAll(async () => {
  db = await createTestDatabase()
  pgProxy = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(db.url).port || 5432) })
  const url = new URL(db.url)
  url.host = `127.0.0.1:${pgProxy.port}`
  service = await startServerProcess({
    DATABASE_URL: url.toString(),
    DATABASE_SCHEMA: db.schema,
    DATABASE_CONNECT_TIMEOUT_MS: '500',
    DATABASE_STATEMENT_TIMEOUT_MS: '500',
    REDIS_KEY_PREFIX: `ssc-studio-${randomBytes(4).toString('hex')}:`,
    CACHE_ENCRYPTION_KEYS: `t:${randomBytes(32).toString('base64')}`,
    CACHE_TTL_SECONDS: '240',
    SHUTDOWN_DRAIN_DELAY_MS: '0',
  })
}, 90_000)

afterAll(async () => {
  await closeSessionCache()
  await service?.kill()
  await pgProxy?.close()
  await db?.drop()
})

describe('the Studio drop-in (./studio)', () => {
  it("validates into the Studio's SessionWithUser, null for valid:false and impossible tokens, revokes, reports health and metrics", async () => {
    configureSessionCache({ baseUrl: service.url, serviceKey: TEST_SERVICE_KEY, deadlineMs: 3000, logger: { warn: () => undefined } })
    const s = await db.insertSession()
    const session = await validateSessionWithCache(s.token)
    expect(session).toEqual<SessionWithUser>({
      id: s.sessionId,
      userId: s.userId,
      token: hashToken(s.token),
      expiresAt: expect.any(String),
      lastActivityAt: expect.any(String),
      createdAt: expect.any(String),
      email: expect.stringMatching(/@example\.test$/),
      firstName: 'Ada',
      lastName: 'Lovelace',
      username: 'ada',
    })
    expect(await validateSessionWithCache('tok_unknown_' + randomBytes(8).toString('hex'))).toBeNull()
    expect(await validateSessionWithCache('')).toBeNull()

    expect(await revokeSessionWithCache(s.sessionId, s.token)).toBe(true)
    expect(await validateSessionWithCache(s.token)).toBeNull()
    expect(await revokeSessionWithCache(s.sessionId)).toBe(false)

    const userId = await db.insertUser()
    await Promise.all([db.insertSession({ userId }), db.insertSession({ userId })])
    expect(await revokeAllUserSessionsWithCache(userId)).toBe(2)

    expect(await sessionCacheHealthCheck()).toBe(true)
    // errors: the empty token's 400 TOKEN_EMPTY (answered null, as no session can have it).
    expect(getSessionCacheMetrics()).toMatchObject({ enabled: true, ttl: 240, invalidations: 3, errors: 1, fallbacks: 0 })
  })

  it('Postgres down: throws a typed unavailable error, never null; with a fallback, the fallback answers', async () => {
    configureSessionCache({ baseUrl: service.url, serviceKey: TEST_SERVICE_KEY, deadlineMs: 2500, logger: { warn: () => undefined } })
    const s = await db.insertSession()
    pgProxy.blackhole('refuse')
    try {
      await expect(validateSessionWithCache(s.token)).rejects.toBeInstanceOf(SessionServiceUnavailableError)
      const fallback: SessionWithUser = {
        id: s.sessionId, userId: s.userId, token: hashToken(s.token), expiresAt: 'x', lastActivityAt: 'x', createdAt: 'x',
        email: 'fallback@example.test', firstName: null, lastName: null, username: null,
      }
      configureSessionCache({ baseUrl: service.url, serviceKey: TEST_SERVICE_KEY, deadlineMs: 2500, fallback: async () => fallback, logger: { warn: () => undefined } })
      expect(await validateSessionWithCache(s.token)).toBe(fallback)
      expect(getSessionCacheMetrics().fallbacks).toBeGreaterThanOrEqual(1)
    } finally {
      pgProxy.resume()
    }
  })
})
