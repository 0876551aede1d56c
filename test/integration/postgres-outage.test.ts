import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { hashToken } from '../../src/domain/token.js'
import { startTestApp, type TestApp } from '../support/app.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { TEST_DATABASE_URL } from '../support/env.js'
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js'

/**
 * Postgres cut or hung through a TCP proxy in front of the real server (the app's DATABASE_URL points at the proxy);
 * Redis is the shared one. Nothing is mocked.
 */

const CONNECT_TIMEOUT_MS = 300
const STATEMENT_TIMEOUT_MS = 300
/** pg's client-side query timeout is the statement timeout + 500 ms (see createPgPool); then a noisy machine. */
const HUNG_BUDGET_MS = STATEMENT_TIMEOUT_MS + 500 + 700
const CUT_BUDGET_MS = CONNECT_TIMEOUT_MS + 700

let db: TestDatabase
let proxy: TcpProxy
let t: TestApp | undefined

beforeAll(async () => {
  db = await createTestDatabase()
  const { hostname, port } = new URL(TEST_DATABASE_URL)
  proxy = await startTcpProxy({ host: hostname, port: Number(port) })
})
afterAll(async () => {
  await proxy?.close()
  await db?.drop()
})
afterEach(async () => {
  proxy.resume()
  await t?.close()
  t = undefined
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function proxiedDatabaseUrl(): string {
  const url = new URL(TEST_DATABASE_URL)
  url.hostname = '127.0.0.1'
  url.port = String(proxy.port)
  return url.toString()
}

async function startProxiedApp() {
  t = await startTestApp({
    db,
    env: {
      DATABASE_URL: proxiedDatabaseUrl(),
      DATABASE_CONNECT_TIMEOUT_MS: String(CONNECT_TIMEOUT_MS),
      DATABASE_STATEMENT_TIMEOUT_MS: String(STATEMENT_TIMEOUT_MS),
      RETRY_AFTER_SECONDS: '2',
      HEALTH_TIMEOUT_MS: '500',
    },
  })
  return t
}

/** Sum of the samples of one metric whose labels include `labels` (0 when it has none yet). */
async function metric(app: TestApp['app'], name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = (await app.inject({ method: 'GET', url: '/metrics' })).body
  let sum = 0
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line)
    if (!m || m[1] !== name) continue
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]))
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) sum += Number(m[3])
  }
  return sum
}

async function timedValidate(app: TestApp, token: string) {
  const started = performance.now()
  const res = await app.validate(token)
  return { res, ms: performance.now() - started }
}

/** Validates a token and waits for its fill, so that it is a Redis hit from then on. */
async function cache(app: TestApp, token: string) {
  expect((await app.validate(token)).json()).toMatchObject({ valid: true, source: 'postgres' })
  await app.settle()
  expect((await app.validate(token)).json()).toMatchObject({ valid: true, source: 'redis' })
}

/** After the proxy resumes, pooled connections that were cut may fail once; retries (bounded) until an answer. */
async function validateOnceBack(app: TestApp, token: string) {
  const deadline = Date.now() + 5000
  for (let attempt = 0; attempt < 50 && Date.now() < deadline; attempt++) {
    const res = await app.validate(token)
    if (res.statusCode !== 503) return res
    await sleep(100)
  }
  throw new Error('Postgres did not come back through the proxy')
}

function expectUnavailable(res: Awaited<ReturnType<TestApp['validate']>>) {
  expect(res.statusCode).toBe(503)
  expect(res.headers['retry-after']).toBe('2')
  expect(res.json()).toMatchObject({ statusCode: 503, code: 'SESSION_STORE_UNAVAILABLE' })
  expect(res.json()).not.toHaveProperty('valid')
}

describe('Postgres outage (through a TCP proxy)', () => {
  it('when Postgres is cut, a cached token still validates from Redis and an uncached one gets 503 with Retry-After, never valid:false; once it is back, the uncached one validates', async () => {
    const app = await startProxiedApp()
    const a = await db.insertSession()
    const b = await db.insertSession()
    const revoked = await db.insertSession({ revoked: true })
    await cache(app, a.token)

    proxy.blackhole()
    const hit = await app.validate(a.token)
    expect(hit.statusCode).toBe(200)
    expect(hit.json()).toMatchObject({ valid: true, source: 'redis', session: { id: a.sessionId } })

    // Neither a valid nor a revoked session is guessed at: both are "cannot know right now".
    for (const token of [b.token, revoked.token, b.token]) {
      const { res, ms } = await timedValidate(app, token)
      expectUnavailable(res)
      expect(ms).toBeLessThan(CUT_BUDGET_MS)
    }

    // State: nothing was cached for the unanswered tokens (no negative entry that would outlive the outage).
    await app.settle()
    const keys = Object.keys(await app.dump())
    expect(keys).toContain(app.keys.entry(hashToken(a.token)))
    expect(keys).not.toContain(app.keys.entry(hashToken(b.token)))
    expect(keys).not.toContain(app.keys.entry(hashToken(revoked.token)))
    // Metrics: 503s counted by code, failed queries counted, no "not valid" answer recorded from Postgres.
    expect(await metric(app.app, 'session_service_errors_total', { code: 'SESSION_STORE_UNAVAILABLE' })).toBe(3)
    expect(await metric(app.app, 'postgres_query_duration_seconds_count', { query: 'find_session', outcome: 'error' })).toBeGreaterThanOrEqual(1)
    expect(await metric(app.app, 'session_validations_total', { source: 'postgres', result: 'not_found' })).toBe(0)
    expect(await metric(app.app, 'session_validations_total', { source: 'postgres', result: 'revoked' })).toBe(0)
    // The Redis breaker is not what failed: it stays closed.
    expect(app.app.internals.breaker.closed).toBe(true)

    const health = await app.app.inject({ method: 'GET', url: '/health/redis' })
    expect(health.statusCode).toBe(200)
    expect(health.json()).toMatchObject({ status: 'degraded', redis: { connected: true }, postgres: { connected: false } })

    proxy.resume()
    const back = await validateOnceBack(app, b.token)
    expect(back.statusCode).toBe(200)
    expect(back.json()).toMatchObject({ valid: true, source: 'postgres', session: { id: b.sessionId } })
    expect((await app.validate(revoked.token)).json()).toEqual({ valid: false, reason: 'revoked' })
    await app.settle()
    expect(Object.keys(await app.dump())).toContain(app.keys.entry(hashToken(b.token)))
    expect((await app.validate(b.token)).json()).toMatchObject({ valid: true, source: 'redis' })
    expect(app.logs.text()).not.toContain(b.token)
  })

  it('when Postgres hangs (bytes dropped, connections kept), an uncached token gets 503 within the statement timeout and a margin', async () => {
    const app = await startProxiedApp()
    const a = await db.insertSession()
    const b = await db.insertSession()
    await cache(app, a.token)

    proxy.blackhole('hang')
    expect((await app.validate(a.token)).json()).toMatchObject({ valid: true, source: 'redis' })
    // Twice: once on a pooled connection that hangs mid-query, once on a new connection that never completes.
    for (let i = 0; i < 2; i++) {
      const { res, ms } = await timedValidate(app, b.token)
      expectUnavailable(res)
      expect(ms, `a validation against a hung Postgres took ${ms.toFixed(0)} ms`).toBeLessThan(HUNG_BUDGET_MS)
    }
    const started = performance.now()
    const health = await app.app.inject({ method: 'GET', url: '/health/redis' })
    expect(performance.now() - started).toBeLessThan(500 + 700)
    expect(health.json()).toMatchObject({ status: 'degraded', postgres: { connected: false } })

    proxy.resume()
    const back = await validateOnceBack(app, b.token)
    expect(back.json()).toMatchObject({ valid: true, source: 'postgres', session: { id: b.sessionId } })
  })
})
