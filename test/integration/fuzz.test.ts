import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isCatalogued } from '../../src/errors.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { startTestApp, type TestApp } from '../support/app.js'

/**
 * Property tests of the two POST routes with arbitrary bodies: the edge never answers 5xx to anything a caller can
 * send, a 4xx always carries a catalogued code, and what is accepted is exactly what the schema says is valid.
 */

const TOKEN_MAX_LENGTH = 64
const NUM_RUNS = 250
const TARGETS = ['token', 'sessionId', 'userId'] as const
const INVALIDATE_FIELDS = new Set<string>([...TARGETS, 'revoke'])
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

let db: TestDatabase
let t: TestApp
/** The session every run may hit: its token shows up among the generated ones, so the 200 path is exercised too. */
let seeded: { token: string; sessionId: string; userId: string }

beforeAll(async () => {
  db = await createTestDatabase()
  t = await startTestApp({ db, env: { TOKEN_MAX_LENGTH: String(TOKEN_MAX_LENGTH), BODY_LIMIT_BYTES: '4096' } })
  seeded = await db.insertSession()
})
afterAll(async () => {
  await t?.close()
  await db?.drop()
})

// --- the oracle: what the schema accepts

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
const validToken = (v: unknown) =>
  typeof v === 'string' && v.length >= 1 && v.length <= TOKEN_MAX_LENGTH && /^[\x21-\x7e]+$/.test(v)

function validateAccepts(body: unknown): boolean {
  return isObject(body) && Object.keys(body).length === 1 && 'token' in body && validToken(body.token)
}

function invalidateAccepts(body: unknown): boolean {
  if (!isObject(body)) return false
  if (!Object.keys(body).every((k) => INVALIDATE_FIELDS.has(k))) return false
  if (TARGETS.filter((k) => k in body).length !== 1) return false
  if ('token' in body && !validToken(body.token)) return false
  for (const k of ['sessionId', 'userId'] as const) {
    if (k in body && !(typeof body[k] === 'string' && UUID.test(body[k] as string))) return false
  }
  return !('revoke' in body) || typeof body.revoke === 'boolean'
}

/**
 * secure-json-parse refuses prototype-poisoning keys as invalid JSON, whatever the schema would have said. Keys only:
 * a token whose value is "constructor" is an ordinary token (an escaped quote inside a string never matches).
 */
const poisoned = (text: string) => /"(__proto__|constructor)"\s*:/.test(text)

// --- arbitraries

const tokenish = fc.oneof(
  fc.string({ maxLength: 80 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.stringMatching(/^[\x21-\x7e]{1,70}$/),
  fc.constantFrom('', ' ', 'a'.repeat(TOKEN_MAX_LENGTH), 'a'.repeat(TOKEN_MAX_LENGTH + 1), 'tok\u0000en'),
  fc.constant(null).map(() => seeded.token),
)
const uuidish = fc.oneof(
  fc.uuid(),
  fc.uuid().map((u) => u.toUpperCase()),
  fc.uuid().map((u) => `urn:uuid:${u}`),
  fc.uuid().map((u) => `{${u}}`),
  fc.string({ maxLength: 40 }),
  fc.constant(null).map(() => seeded.sessionId),
)
const anyJson = fc.jsonValue({ maxDepth: 3 })
const fieldValue = fc.oneof(tokenish, uuidish, anyJson, fc.boolean())

/** Bodies shaped like the real ones, with each field maybe present, maybe of the wrong type, maybe an extra field. */
const validateBody = fc.oneof(
  fc.record({ token: tokenish }),
  fc.record({ token: fieldValue }, { requiredKeys: [] }),
  fc.tuple(fc.record({ token: tokenish }), fc.dictionary(fc.string({ maxLength: 8 }), anyJson, { maxKeys: 2 })).map(
    ([base, extra]) => ({ ...extra, ...base }),
  ),
  anyJson,
)
const invalidateBody = fc.oneof(
  fc.record(
    { token: tokenish, sessionId: uuidish, userId: uuidish, revoke: fc.oneof(fc.boolean(), anyJson) },
    { requiredKeys: [] },
  ),
  fc.record({ sessionId: uuidish, revoke: fc.constant(false) }),
  fc.record({ userId: fc.uuid(), revoke: fc.constant(false) }),
  fc.tuple(fc.record({ token: tokenish }), fc.dictionary(fc.string({ maxLength: 8 }), fieldValue, { maxKeys: 2 })).map(
    ([base, extra]) => ({ ...extra, ...base }),
  ),
  anyJson,
)
/** Raw payloads: almost-JSON, JSON with noise around it, and arbitrary text, all declared as application/json. */
const rawPayload = fc.oneof(
  fc.json({ maxDepth: 3 }),
  fc.string({ maxLength: 200 }),
  fc.string({ unit: 'binary', maxLength: 100 }),
  fc.tuple(fc.json({ maxDepth: 2 }), fc.string({ maxLength: 3 })).map(([j, noise]) => j + noise),
  fc.tuple(fc.string({ maxLength: 3 }), fc.json({ maxDepth: 2 })).map(([noise, j]) => noise + j),
  fc.json({ maxDepth: 2 }).map((j) => j.slice(0, Math.max(0, j.length - 1))),
  fc.json({ maxDepth: 2 }).map((j) => `\uFEFF${j}`),
)
const jsonType = fc.constantFrom(
  'application/json',
  'application/json; charset=utf-8',
  'application/json;charset=UTF-8',
  'APPLICATION/JSON',
)

// --- the properties

type Injected = Awaited<ReturnType<TestApp['app']['inject']>>

/** Never 5xx; 200 or a catalogued 4xx in the error shape. Returns the parsed body. */
function expectWellFormed(response: Injected, what: string): Record<string, unknown> {
  expect(response.statusCode, what).toBeLessThan(500)
  const body = response.json() as Record<string, unknown>
  if (response.statusCode !== 200) {
    expect(response.statusCode, what).toBeGreaterThanOrEqual(400)
    expect(isCatalogued({ code: String(body.code) }), `${what} → ${response.body}`).toBe(true)
    expect(body).toEqual({ statusCode: response.statusCode, code: body.code, error: expect.any(String), message: expect.any(String) })
  }
  return body
}

async function post(url: string, payload: string, contentType = 'application/json') {
  return t.app.inject({ method: 'POST', url, headers: { 'content-type': contentType }, payload })
}

describe('arbitrary bodies never get a 5xx', () => {
  it('POST /validate: accepted exactly when the body is {token: 1..max printable ASCII}, else a catalogued 400', async () => {
    await fc.assert(
      fc.asyncProperty(validateBody, async (body) => {
        const text = JSON.stringify(body)
        const response = await post('/validate', text)
        const answer = expectWellFormed(response, text)
        const expected = validateAccepts(body) && !poisoned(text) ? 200 : 400
        expect(response.statusCode, text).toBe(expected)
        if (expected === 200) {
          expect(answer.valid, text).toBe(isObject(body) && body.token === seeded.token)
        }
      }),
      { numRuns: NUM_RUNS },
    )
  })

  it('POST /invalidate: accepted exactly when the body names one well-formed target, else a catalogued 400', async () => {
    await fc.assert(
      fc.asyncProperty(invalidateBody, async (body) => {
        const text = JSON.stringify(body)
        const response = await post('/invalidate', text)
        const answer = expectWellFormed(response, text)
        const expected = invalidateAccepts(body) && !poisoned(text) ? 200 : 400
        expect(response.statusCode, text).toBe(expected)
        if (expected === 200) expect(answer).toEqual({ invalidated: expect.any(Number), revoked: expect.any(Number) })
      }),
      { numRuns: NUM_RUNS },
    )
  })

  it('raw payload strings declared as JSON, to either route: 200 or a catalogued 400, never a 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(
        rawPayload,
        fc.constantFrom('/validate', '/invalidate'),
        jsonType,
        async (payload, url, contentType) => {
          const response = await post(url, payload, contentType)
          const what = `${url} ${contentType} ${JSON.stringify(payload)}`
          expectWellFormed(response, what)
          let parsed: unknown
          let parses = true
          try {
            // Fastify's parser skips a leading byte-order mark; JSON.parse does not.
            parsed = JSON.parse(payload.replace(/^\uFEFF/, ''))
          } catch {
            parses = false
          }
          if (!parses) {
            expect(response.statusCode, what).toBe(400)
            // An empty body with a JSON type is refused before the schema; other unparsable text is INVALID_JSON.
            expect(response.json().code, what).toBe('INVALID_JSON')
          } else {
            const accepts = url === '/validate' ? validateAccepts(parsed) : invalidateAccepts(parsed)
            expect(response.statusCode, what).toBe(accepts && !poisoned(payload) ? 200 : 400)
          }
        },
      ),
      { numRuns: NUM_RUNS },
    )
  })

  it('arbitrary content types and bodies: never a 5xx, and anything not JSON is a 415', async () => {
    const contentType = fc.oneof(
      jsonType,
      fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml'),
      fc.stringMatching(/^[a-z]{1,8}\/[a-z+.-]{1,12}$/),
    )
    await fc.assert(
      fc.asyncProperty(contentType, rawPayload, fc.constantFrom('/validate', '/invalidate'), async (type, payload, url) => {
        const response = await post(url, payload, type)
        const what = `${url} ${type} ${JSON.stringify(payload)}`
        expectWellFormed(response, what)
        if (!/^application\/json/i.test(type)) expect(response.statusCode, what).toBe(415)
      }),
      { numRuns: NUM_RUNS },
    )
  })

  it('after all that, the seeded session still validates and no error line was logged', async () => {
    // Earlier runs may have revoked or invalidated it (the generators include its id); restore, then ask.
    await db.query('UPDATE $schema.user_sessions SET revoked_at = NULL WHERE id = $1', [seeded.sessionId])
    await t.invalidate({ sessionId: seeded.sessionId })
    await t.settle()
    expect((await t.validate(seeded.token)).json()).toMatchObject({ valid: true, session: { id: seeded.sessionId } })
    const errors = t.logs.entries().filter((l) => typeof l.level === 'number' && l.level >= 50)
    expect(errors).toEqual([])
  })
})
