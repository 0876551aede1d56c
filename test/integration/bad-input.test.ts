import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { startTestApp, type TestApp } from '../support/app.js'

/**
 * Malformed requests to the two POST routes: each gets a 4xx with a stable code from src/errors.ts, in the catalogue's
 * body shape, and none of them writes to Redis or disturbs a valid session.
 */

const TOKEN_MAX_LENGTH = 64
const BODY_LIMIT_BYTES = 1024
const JSON_TYPE = { 'content-type': 'application/json' }
const UUID = '6f1c1f9e-3c1a-4a51-9a0a-1f6c7f3d2b10'

interface BadRequest {
  scenario: string
  url?: string
  method?: 'POST' | 'GET' | 'PUT' | 'DELETE'
  headers?: Record<string, string>
  /** A string is sent as is; anything else is JSON-encoded. */
  payload?: unknown
  status: number
  code: string
}

const raw = (payload: string, headers: Record<string, string> = JSON_TYPE) => ({ payload, headers })
const json = (body: unknown) => raw(JSON.stringify(body))

/** Requests that are malformed the same way whichever POST route receives them. */
const common: BadRequest[] = [
  { scenario: 'no body and no content type', status: 400, code: 'BODY_NOT_OBJECT' },
  { scenario: 'an empty body declared as JSON', ...raw(''), status: 400, code: 'INVALID_JSON' },
  { scenario: 'a body that is not valid JSON', ...raw('{"token": '), status: 400, code: 'INVALID_JSON' },
  { scenario: 'a JSON body with trailing garbage', ...raw('{"token":"a"} x'), status: 400, code: 'INVALID_JSON' },
  { scenario: 'a JSON array', ...json(['tok']), status: 400, code: 'BODY_NOT_OBJECT' },
  { scenario: 'a JSON string', ...json('tok'), status: 400, code: 'BODY_NOT_OBJECT' },
  { scenario: 'a JSON number', ...json(42), status: 400, code: 'BODY_NOT_OBJECT' },
  { scenario: 'JSON null', ...raw('null'), status: 400, code: 'BODY_NOT_OBJECT' },
  { scenario: 'a token that is a number', ...json({ token: 123 }), status: 400, code: 'TOKEN_NOT_STRING' },
  { scenario: 'a token that is null', ...json({ token: null }), status: 400, code: 'TOKEN_NOT_STRING' },
  { scenario: 'a token that is an object', ...json({ token: { a: 1 } }), status: 400, code: 'TOKEN_NOT_STRING' },
  { scenario: 'a token that is an array', ...json({ token: ['a'] }), status: 400, code: 'TOKEN_NOT_STRING' },
  { scenario: 'a token that is a boolean', ...json({ token: true }), status: 400, code: 'TOKEN_NOT_STRING' },
  { scenario: 'an empty token', ...json({ token: '' }), status: 400, code: 'TOKEN_EMPTY' },
  {
    scenario: 'a token one character over TOKEN_MAX_LENGTH',
    ...json({ token: 'a'.repeat(TOKEN_MAX_LENGTH + 1) }),
    status: 400,
    code: 'TOKEN_TOO_LONG',
  },
  { scenario: 'a token with a newline', ...json({ token: 'abc\ndef' }), status: 400, code: 'TOKEN_INVALID_CHARS' },
  { scenario: 'a token with a NUL', ...json({ token: 'abc\u0000def' }), status: 400, code: 'TOKEN_INVALID_CHARS' },
  { scenario: 'a token with DEL', ...json({ token: 'abc\u007fdef' }), status: 400, code: 'TOKEN_INVALID_CHARS' },
  { scenario: 'a token with a space', ...json({ token: 'abc def' }), status: 400, code: 'TOKEN_INVALID_CHARS' },
  { scenario: 'a token of only a space', ...json({ token: ' ' }), status: 400, code: 'TOKEN_INVALID_CHARS' },
  { scenario: 'a token with non-ASCII letters', ...json({ token: 'tökén' }), status: 400, code: 'TOKEN_INVALID_CHARS' },
  { scenario: 'a token with an emoji', ...json({ token: 'tok🙂' }), status: 400, code: 'TOKEN_INVALID_CHARS' },
  { scenario: 'an unknown field', ...json({ token: 'abc', extra: 1 }), status: 400, code: 'UNKNOWN_FIELD' },
  {
    scenario: 'a body over BODY_LIMIT_BYTES',
    ...json({ token: 'a'.repeat(BODY_LIMIT_BYTES + 10) }),
    status: 400,
    code: 'BODY_TOO_LARGE',
  },
  {
    scenario: 'a text/plain body',
    ...raw('{"token":"abc"}', { 'content-type': 'text/plain' }),
    status: 415,
    code: 'UNSUPPORTED_MEDIA_TYPE',
  },
  {
    scenario: 'a form-encoded body',
    ...raw('token=abc', { 'content-type': 'application/x-www-form-urlencoded' }),
    status: 415,
    code: 'UNSUPPORTED_MEDIA_TYPE',
  },
  {
    scenario: 'a multipart body',
    ...raw('--x\r\ncontent-disposition: form-data; name="token"\r\n\r\nabc\r\n--x--\r\n', {
      'content-type': 'multipart/form-data; boundary=x',
    }),
    status: 415,
    code: 'UNSUPPORTED_MEDIA_TYPE',
  },
  {
    scenario: 'an XML body',
    ...raw('<token>abc</token>', { 'content-type': 'application/xml' }),
    status: 415,
    code: 'UNSUPPORTED_MEDIA_TYPE',
  },
]

const validateOnly: BadRequest[] = [{ scenario: 'an empty object', ...json({}), status: 400, code: 'TOKEN_MISSING' }]

const invalidateOnly: BadRequest[] = [
  { scenario: 'none of token, sessionId or userId', ...json({}), status: 400, code: 'INVALIDATE_TARGET_REQUIRED' },
  { scenario: 'only revoke', ...json({ revoke: true }), status: 400, code: 'INVALIDATE_TARGET_REQUIRED' },
  {
    scenario: 'a token and a sessionId',
    ...json({ token: 'abc', sessionId: UUID }),
    status: 400,
    code: 'INVALIDATE_TARGET_AMBIGUOUS',
  },
  {
    scenario: 'a sessionId and a userId',
    ...json({ sessionId: UUID, userId: UUID }),
    status: 400,
    code: 'INVALIDATE_TARGET_AMBIGUOUS',
  },
  {
    scenario: 'all three targets',
    ...json({ token: 'abc', sessionId: UUID, userId: UUID }),
    status: 400,
    code: 'INVALIDATE_TARGET_AMBIGUOUS',
  },
  { scenario: 'a sessionId that is not a uuid', ...json({ sessionId: 'not-a-uuid' }), status: 400, code: 'INVALID_FIELD' },
  {
    scenario: 'a sessionId in urn:uuid: form (accepted by ajv-formats, refused by Postgres)',
    ...json({ sessionId: `urn:uuid:${UUID}`, revoke: true }),
    status: 400,
    code: 'INVALID_FIELD',
  },
  { scenario: 'a sessionId in braces', ...json({ sessionId: `{${UUID}}` }), status: 400, code: 'INVALID_FIELD' },
  { scenario: 'a sessionId without hyphens', ...json({ sessionId: UUID.replaceAll('-', '') }), status: 400, code: 'INVALID_FIELD' },
  { scenario: 'a sessionId that is a number', ...json({ sessionId: 7 }), status: 400, code: 'INVALID_FIELD' },
  { scenario: 'a userId that is not a uuid', ...json({ userId: `${UUID}x` }), status: 400, code: 'INVALID_FIELD' },
  { scenario: 'revoke that is a string', ...json({ sessionId: UUID, revoke: 'true' }), status: 400, code: 'INVALID_FIELD' },
  { scenario: 'revoke that is a number', ...json({ sessionId: UUID, revoke: 1 }), status: 400, code: 'INVALID_FIELD' },
]

const elsewhere: BadRequest[] = [
  { scenario: 'an unknown route', method: 'POST', url: '/nope', ...json({ token: 'abc' }), status: 404, code: 'ROUTE_NOT_FOUND' },
  { scenario: 'GET on /validate', method: 'GET', url: '/validate', status: 404, code: 'ROUTE_NOT_FOUND' },
  { scenario: 'a path with a query string', method: 'GET', url: '/missing?token=abc', status: 404, code: 'ROUTE_NOT_FOUND' },
]

const table: Array<BadRequest & { url: string }> = [
  ...[...common, ...validateOnly].map((r) => ({ ...r, url: '/validate' })),
  ...[...common, ...invalidateOnly].map((r) => ({ ...r, url: '/invalidate' })),
  ...elsewhere.map((r) => ({ ...r, url: r.url ?? '/' })),
]

function injectOptions(bad: BadRequest & { url: string }) {
  return {
    method: bad.method ?? 'POST',
    url: bad.url,
    ...(bad.headers ? { headers: bad.headers } : {}),
    ...(bad.payload === undefined ? {} : { payload: bad.payload as string }),
  } as const
}

let db: TestDatabase
let t: TestApp

beforeAll(async () => {
  db = await createTestDatabase()
  t = await startTestApp({
    db,
    env: { TOKEN_MAX_LENGTH: String(TOKEN_MAX_LENGTH), BODY_LIMIT_BYTES: String(BODY_LIMIT_BYTES) },
  })
})
afterAll(async () => {
  await t?.close()
  await db?.drop()
})

describe('malformed requests get a 4xx with a stable code', () => {
  it.each(table)('$url with $scenario → $status $code', async (bad) => {
    const response = await t.app.inject(injectOptions(bad))
    expect({ status: response.statusCode, code: response.json().code }).toEqual({ status: bad.status, code: bad.code })
    const body = response.json()
    expect(body).toEqual({
      statusCode: bad.status,
      code: bad.code,
      error: expect.any(String),
      message: expect.any(String),
    })
    expect(body.error.length).toBeGreaterThan(0)
    expect(body.message.length).toBeGreaterThan(0)
    expect(response.headers['content-type']).toMatch(/^application\/json/)
  })

  it('a token of exactly TOKEN_MAX_LENGTH printable characters is accepted (answered, not rejected)', async () => {
    const response = await t.validate('~'.repeat(TOKEN_MAX_LENGTH))
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ valid: false, reason: 'not_found' })
  })

  it('JSON with a charset parameter or an upper-case media type is accepted', async () => {
    for (const type of ['application/json; charset=utf-8', 'Application/JSON']) {
      const response = await t.app.inject({
        method: 'POST',
        url: '/validate',
        headers: { 'content-type': type },
        payload: JSON.stringify({ token: 'abc' }),
      })
      expect(response.statusCode, type).toBe(200)
    }
  })

  it('the too-long message names the configured limit, and the body-limit message names the byte limit', async () => {
    const long = await t.validate('a'.repeat(TOKEN_MAX_LENGTH + 1))
    expect(long.json().message).toContain(String(TOKEN_MAX_LENGTH))
    const large = await t.app.inject({
      method: 'POST',
      url: '/validate',
      headers: JSON_TYPE,
      payload: JSON.stringify({ token: 'a'.repeat(BODY_LIMIT_BYTES) }),
    })
    expect(large.json().message).toContain(String(BODY_LIMIT_BYTES))
  })
})

describe('after a burst of malformed requests nothing is lost or corrupted', () => {
  it('no Redis key was written and a seeded valid session still validates, first from Postgres then from Redis', async () => {
    // An app of its own, so the accepted-token probes above cannot have written anything under its prefix.
    const fresh = await startTestApp({
      db,
      env: { TOKEN_MAX_LENGTH: String(TOKEN_MAX_LENGTH), BODY_LIMIT_BYTES: String(BODY_LIMIT_BYTES) },
    })
    try {
      const seeded = await db.insertSession()
      // The start-up health probe writes its own key; the burst must add nothing next to it.
      const before = await fresh.dump()
      expect(Object.keys(before).every((key) => key === `${fresh.prefix}health`)).toBe(true)
      for (const bad of table) {
        const response = await fresh.app.inject(injectOptions(bad))
        expect(response.statusCode, bad.scenario).toBe(bad.status)
      }
      await fresh.settle()
      expect(await fresh.dump()).toEqual(before)

      const first = await fresh.validate(seeded.token)
      expect(first.json()).toMatchObject({ valid: true, source: 'postgres', session: { id: seeded.sessionId } })
      await fresh.settle()
      const second = await fresh.validate(seeded.token)
      expect(second.json()).toMatchObject({ valid: true, source: 'redis', session: { id: seeded.sessionId } })
      expect(await db.sessionRow(seeded.sessionId)).toMatchObject({ revoked_at: null })
    } finally {
      await fresh.close()
    }
  })
})
