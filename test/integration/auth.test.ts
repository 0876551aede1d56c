import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { startTestApp, type TestApp } from '../support/app.js'

/**
 * The service-key check: SERVICE_API_KEYS guards /invalidate (and /validate when REQUIRE_API_KEY_FOR_VALIDATE), several
 * keys are accepted at once for rotation, and no key ever reaches a log line.
 */

// Random suffixes make "the key is not in the logs" a meaningful search.
const K1 = `k1-${randomBytes(8).toString('hex')}`
const K2 = `k2-${randomBytes(8).toString('hex')}`
const bearer = (key: string) => ({ authorization: `Bearer ${key}` })

let db: TestDatabase
let t: TestApp | undefined

beforeAll(async () => {
  db = await createTestDatabase()
})
afterAll(async () => {
  await db?.drop()
})
afterEach(async () => {
  await t?.close()
  t = undefined
})

function expectUnauthorized(response: { statusCode: number; json(): unknown; headers: Record<string, unknown> }) {
  expect(response.statusCode).toBe(401)
  expect(response.json()).toEqual({
    statusCode: 401,
    code: 'UNAUTHORIZED',
    error: 'Unauthorized',
    message: expect.any(String),
  })
  expect(response.headers['www-authenticate']).toBe('Bearer')
}

describe('with SERVICE_API_KEYS set to two keys', () => {
  it('refuses /invalidate without an Authorization header, and changes nothing', async () => {
    t = await startTestApp({ db, env: { SERVICE_API_KEYS: `${K1},${K2}` } })
    const { token, sessionId } = await db.insertSession({ revoked: false })
    const response = await t.invalidate({ sessionId, revoke: true })
    expectUnauthorized(response)
    expect(await db.sessionRow(sessionId)).toMatchObject({ revoked_at: null })
    expect((await t.validate(token)).json()).toMatchObject({ valid: true })
  })

  it('refuses /invalidate with a wrong key, a key of another scheme, an empty bearer, or a key with extra text', async () => {
    t = await startTestApp({ db, env: { SERVICE_API_KEYS: `${K1},${K2}` } })
    const { sessionId } = await db.insertSession()
    const attempts = [
      bearer('wrong'),
      bearer(`${K1}x`),
      bearer(K1.slice(0, -1)),
      bearer(`${K1},${K2}`),
      { authorization: `Basic ${Buffer.from(`user:${K1}`).toString('base64')}` },
      { authorization: K1 },
      { authorization: 'Bearer ' },
      { authorization: 'Bearer' },
      { authorization: '' },
    ]
    for (const headers of attempts) {
      const response = await t.invalidate({ sessionId }, headers)
      expectUnauthorized(response)
    }
  })

  it('accepts either key on /invalidate, so one can be rotated out while the other is in use', async () => {
    t = await startTestApp({ db, env: { SERVICE_API_KEYS: `${K1},${K2}` } })
    const one = await db.insertSession()
    const two = await db.insertSession()
    const byK2 = await t.invalidate({ sessionId: one.sessionId, revoke: true }, bearer(K2))
    expect(byK2.statusCode).toBe(200)
    expect(byK2.json()).toMatchObject({ revoked: 1 })
    const byK1 = await t.invalidate({ sessionId: two.sessionId, revoke: true }, bearer(K1))
    expect(byK1.statusCode).toBe(200)
    expect(byK1.json()).toMatchObject({ revoked: 1 })
    expect((await t.validate(one.token)).json()).toEqual({ valid: false, reason: 'revoked' })
  })

  it('treats the scheme name case-insensitively and tolerates surrounding spaces (RFC 7235)', async () => {
    t = await startTestApp({ db, env: { SERVICE_API_KEYS: ` ${K1} , ${K2} ` } })
    const { sessionId } = await db.insertSession()
    for (const authorization of [`bearer ${K1}`, `BEARER ${K2}`, `Bearer   ${K1}  `]) {
      const response = await t.invalidate({ sessionId }, { authorization })
      expect(response.statusCode, authorization).toBe(200)
    }
  })

  it('checks the key before the body: an unauthenticated malformed request gets 401, not a validation error', async () => {
    t = await startTestApp({ db, env: { SERVICE_API_KEYS: `${K1},${K2}` } })
    const response = await t.app.inject({
      method: 'POST',
      url: '/invalidate',
      headers: { 'content-type': 'application/json' },
      payload: '{"nope": ',
    })
    expectUnauthorized(response)
  })

  it('leaves /validate open by default', async () => {
    t = await startTestApp({ db, env: { SERVICE_API_KEYS: `${K1},${K2}` } })
    const { token } = await db.insertSession()
    const response = await t.validate(token)
    expect(response.statusCode).toBe(200)
    expect(response.json()).toMatchObject({ valid: true })
  })

  it('guards /validate too when REQUIRE_API_KEY_FOR_VALIDATE=true: 401 without a key, 200 with either', async () => {
    t = await startTestApp({ db, env: { SERVICE_API_KEYS: `${K1},${K2}`, REQUIRE_API_KEY_FOR_VALIDATE: 'true' } })
    const { token } = await db.insertSession()
    expectUnauthorized(await t.validate(token))
    expectUnauthorized(await t.validate(token, bearer('wrong')))
    for (const key of [K1, K2]) {
      const response = await t.validate(token, bearer(key))
      expect(response.statusCode).toBe(200)
      expect(response.json()).toMatchObject({ valid: true })
    }
  })

  it('never guards the health and metrics routes (probes carry no key)', async () => {
    t = await startTestApp({ db, env: { SERVICE_API_KEYS: `${K1},${K2}`, REQUIRE_API_KEY_FOR_VALIDATE: 'true' } })
    for (const url of ['/health/live', '/health/ready', '/metrics']) {
      expect((await t.app.inject({ method: 'GET', url })).statusCode, url).toBe(200)
    }
  })

  it('never writes a key, right or wrong, into a log line', async () => {
    t = await startTestApp({ db, env: { SERVICE_API_KEYS: `${K1},${K2}`, REQUIRE_API_KEY_FOR_VALIDATE: 'true' } })
    const { token, sessionId } = await db.insertSession()
    const wrong = `wrong-${randomBytes(8).toString('hex')}`
    await t.validate(token, bearer(K1))
    await t.validate(token, bearer(wrong))
    await t.invalidate({ sessionId }, bearer(K2))
    await t.invalidate({ sessionId }, bearer(wrong))
    await t.app.inject({ method: 'POST', url: '/invalidate', headers: bearer(K1), payload: 'not json' })
    await t.settle()
    await t.close()
    const text = t.logs.text()
    expect(t.logs.lines.length).toBeGreaterThan(0)
    // The request lines are there (debug), so the absence below is not just an empty log.
    expect(text).toContain('request completed')
    for (const secret of [K1, K2, wrong, token]) expect(text).not.toContain(secret)
    t = undefined
  })
})

describe('with no SERVICE_API_KEYS', () => {
  it('leaves /invalidate open, and ignores an Authorization header', async () => {
    t = await startTestApp({ db })
    const one = await db.insertSession()
    const two = await db.insertSession()
    expect((await t.invalidate({ sessionId: one.sessionId })).statusCode).toBe(200)
    expect((await t.invalidate({ sessionId: two.sessionId }, bearer('anything'))).statusCode).toBe(200)
  })
})

describe('key ids', () => {
  it('names the key a caller used by its id (given as `id:key`, or derived from the hash), never the key', async () => {
    const named = `studio-${randomBytes(8).toString('hex')}`
    const bare = `bare-${randomBytes(8).toString('hex')}`
    t = await startTestApp({ db, env: { SERVICE_API_KEYS: `studio:${named},${bare}` } })
    const one = await db.insertSession()
    const two = await db.insertSession()
    expect((await t.invalidate({ sessionId: one.sessionId }, bearer(named))).statusCode).toBe(200)
    expect((await t.invalidate({ sessionId: two.sessionId }, bearer(bare))).statusCode).toBe(200)
    const keyIds = t.logs.entries().filter((e) => e.msg === 'sessions invalidated').map((e) => e.keyId)
    expect(keyIds[0]).toBe('studio')
    expect(keyIds[1]).toMatch(/^key-[0-9a-f]{8}$/)
    expect(t.app.internals.config.http.apiKeys.map((k) => k.id)).toEqual(keyIds)
    // `id:key` means the key is only what follows the id: the whole string is not a key.
    expectUnauthorized(await t.invalidate({ sessionId: one.sessionId }, bearer(`studio:${named}`)))
    for (const secret of [named, bare]) expect(t.logs.text()).not.toContain(secret)
  })
})

describe('with METRICS_API_KEYS', () => {
  const M = `metrics-${randomBytes(8).toString('hex')}`

  it('guards /metrics with its own keys: a service key is not one of them; health stays open', async () => {
    t = await startTestApp({ db, env: { SERVICE_API_KEYS: `studio:${K1}`, METRICS_API_KEYS: `prometheus:${M}` } })
    expectUnauthorized(await t.app.inject({ method: 'GET', url: '/metrics' }))
    expectUnauthorized(await t.app.inject({ method: 'GET', url: '/metrics', headers: bearer(K1) }))
    const scraped = await t.app.inject({ method: 'GET', url: '/metrics', headers: bearer(M) })
    expect(scraped.statusCode).toBe(200)
    expect(scraped.body).toContain('session_validations_total')
    // A metrics key opens nothing else.
    const { sessionId } = await db.insertSession()
    expectUnauthorized(await t.invalidate({ sessionId }, bearer(M)))
    for (const url of ['/health/live', '/health/ready', '/health/redis']) {
      expect((await t.app.inject({ method: 'GET', url })).statusCode, url).toBe(200)
    }
    expect(t.logs.text()).not.toContain(M)
  })
})
