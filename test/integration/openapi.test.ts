import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { SessionStore } from '../../src/domain/ports.js'
import { Errors } from '../../src/errors.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { startTestApp, type TestApp } from '../support/app.js'
import { assertMatchesOpenApi, createOpenApiAjv, DOC_ID, loadOpenApi, OpenApiMismatch } from '../support/openapi.js'

/**
 * openapi.yaml is the contract: it parses as OpenAPI 3.1, lists every route the app registers and every error code of
 * src/errors.ts under the status that code is sent with, and the validator built from it (test/support/openapi.ts,
 * wired into startTestApp) accepts what the app sends and rejects drift.
 */

const doc = loadOpenApi()
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the parsed document; the assertions are the type check
type Json = Record<string, any>
const components = doc.components as Json

const catalogue = Object.values(Errors).map((E) => {
  const err = new E()
  return { code: err.code, statusCode: err.statusCode ?? 500 }
})

/** The status → response component that carries each error status. */
const RESPONSE_FOR_STATUS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  404: 'ClientError',
  415: 'UnsupportedMediaType',
  500: 'InternalError',
  503: 'ServiceUnavailable',
}

function codesOf(responseName: string): string[] {
  const schema = components.responses[responseName].content['application/json'].schema
  const overlay = (schema.allOf as Json[]).find((s) => s.properties?.code)
  return overlay?.properties.code.enum ?? []
}

describe('openapi.yaml, the document', () => {
  it('is OpenAPI 3.1 with info, paths and components', () => {
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/)
    expect(Object.keys(doc.paths).length).toBeGreaterThan(0)
    expect(components.schemas.Error).toBeDefined()
  })

  it('lists every error code of src/errors.ts in the ErrorCode enum, and nothing else', () => {
    const documented: string[] = components.schemas.ErrorCode.enum
    expect([...documented].sort()).toEqual(catalogue.map((c) => c.code).sort())
  })

  it('lists each code under the response of the status it is sent with', () => {
    for (const { code, statusCode } of catalogue) {
      const name = RESPONSE_FOR_STATUS[statusCode]
      expect(name, `${code} is sent with ${statusCode}, which openapi.yaml has no error response for`).toBeDefined()
      expect(codesOf(name!), `${code} (${statusCode}) missing from components.responses.${name}`).toContain(code)
    }
    for (const [status, name] of Object.entries(RESPONSE_FOR_STATUS)) {
      for (const code of codesOf(name)) {
        expect(catalogue.find((c) => c.code === code)?.statusCode, `${name} lists ${code}`).toBe(Number(status))
      }
    }
  })

  it('puts Retry-After on every 503 error, bearer security on /invalidate, and an error response on every 4xx/5xx', () => {
    expect(components.responses.ServiceUnavailable.headers['Retry-After'].$ref).toBe('#/components/headers/RetryAfter')
    expect(components.headers.RetryAfter.required).toBe(true)
    expect(components.securitySchemes.serviceKey).toMatchObject({ type: 'http', scheme: 'bearer' })
    expect(doc.paths['/invalidate']!.post!).toMatchObject({ security: [{ serviceKey: [] }] })
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(item)) {
        for (const [status, response] of Object.entries(operation.responses ?? {})) {
          const ref = (response as { $ref?: string }).$ref
          if (/^(4|5)\d\d$/.test(status) && !path.startsWith('/health')) {
            expect(ref, `${method.toUpperCase()} ${path} ${status} should use a components.responses error`).toMatch(/^#\/components\/responses\//)
          }
        }
      }
    }
  })

  it('has schemas that compile under JSON Schema 2020-12 in strict mode (every format known, every type explicit)', () => {
    const ajv = createOpenApiAjv(doc)
    for (const name of Object.keys(components.schemas)) {
      expect(() => ajv.compile({ $ref: `${DOC_ID}#/components/schemas/${name}` }), name).not.toThrow()
    }
    for (const name of Object.keys(components.responses)) {
      expect(() => ajv.compile({ $ref: `${DOC_ID}#/components/responses/${name}/content/application~1json/schema` }), name).not.toThrow()
    }
  })

  it('documents the routes the code registers, and only those', () => {
    const sources = ['health', 'invalidate', 'metrics', 'validate']
      .map((f) => readFileSync(fileURLToPath(new URL(`../../src/http/routes/${f}.ts`, import.meta.url)), 'utf8'))
      .join('\n')
    const registered = [...sources.matchAll(/app\.(get|post|put|delete|patch)\(\s*'([^']+)'/g)].map((m) => `${m[1]} ${m[2]}`).sort()
    const documented = Object.entries(doc.paths)
      .flatMap(([path, item]) => Object.keys(item).filter((k) => k !== 'parameters').map((m) => `${m} ${path}`))
      .sort()
    expect(documented).toEqual(registered)
  })
})

describe('the validator (test/support/openapi.ts)', () => {
  const json = { 'content-type': 'application/json; charset=utf-8', 'x-request-id': 'r-1' }

  it('accepts documented answers', () => {
    assertMatchesOpenApi('POST', '/validate', 200, { valid: false, reason: 'not_found' }, json)
    assertMatchesOpenApi('POST', '/invalidate', 200, JSON.stringify({ invalidated: 2, revoked: 0 }), json)
    assertMatchesOpenApi('GET', '/metrics', 200, '# HELP x\n', { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'x-request-id': 'r' })
    assertMatchesOpenApi(
      'POST',
      '/validate',
      503,
      { statusCode: 503, code: 'SESSION_STORE_UNAVAILABLE', error: 'Service Unavailable', message: 'Session store unavailable' },
      { ...json, 'retry-after': '1' },
    )
    assertMatchesOpenApi('DELETE', '/nowhere', 404, { statusCode: 404, code: 'ROUTE_NOT_FOUND', error: 'Not Found', message: 'x' }, json)
  })

  it('rejects drift: an unknown field, a wrong code for the status, a missing Retry-After, an undocumented status', () => {
    expect(() => assertMatchesOpenApi('POST', '/invalidate', 200, { invalidated: 1, revoked: 0, extra: true }, json)).toThrow(OpenApiMismatch)
    expect(() =>
      assertMatchesOpenApi('POST', '/validate', 400, { statusCode: 400, code: 'UNAUTHORIZED', error: 'Bad Request', message: 'x' }, json),
    ).toThrow(/code/)
    expect(() =>
      assertMatchesOpenApi(
        'POST',
        '/validate',
        503,
        { statusCode: 503, code: 'SESSION_STORE_UNAVAILABLE', error: 'Service Unavailable', message: 'x' },
        json,
      ),
    ).toThrow(/Retry-After/)
    expect(() => assertMatchesOpenApi('GET', '/health/live', 500, { status: 'ok' }, json)).toThrow(/not documented/)
    expect(() => assertMatchesOpenApi('POST', '/validate', 200, { valid: true, reason: 'expired' }, json)).toThrow(OpenApiMismatch)
    expect(() => assertMatchesOpenApi('GET', '/validate', 200, {}, json)).toThrow(/documents no GET/)
  })
})

describe('the app against openapi.yaml', () => {
  let db: TestDatabase
  let t: TestApp

  beforeAll(async () => {
    db = await createTestDatabase()
  })
  afterAll(async () => {
    await db.drop()
  })
  afterEach(async () => {
    await t?.close()
  })

  // startTestApp validates every injected response; these requests walk each documented status so a drift in any of
  // them fails here even if no other suite happens to send that request.
  it('answers every route with documented responses', async () => {
    t = await startTestApp({ db, env: { SERVICE_API_KEYS: 'k-openapi' } })
    const bearer = { authorization: 'Bearer k-openapi' }
    const { token, sessionId, userId } = await db.insertSession()
    const revoked = await db.insertSession({ revoked: true })

    expect((await t.validate(token)).json()).toMatchObject({ valid: true, source: 'postgres' })
    await t.settle()
    expect((await t.validate(token)).json()).toMatchObject({ valid: true, source: 'redis' })
    expect((await t.validate(revoked.token)).json()).toEqual({ valid: false, reason: 'revoked' })
    expect((await t.validate('never-issued')).json()).toEqual({ valid: false, reason: 'not_found' })
    expect((await t.validate('')).statusCode).toBe(400)
    expect((await t.app.inject({ method: 'POST', url: '/validate', payload: 'x', headers: { 'content-type': 'text/plain' } })).statusCode).toBe(415)

    expect((await t.invalidate({ sessionId })).statusCode).toBe(401)
    expect((await t.invalidate({ sessionId }, bearer)).json()).toMatchObject({ invalidated: 1, revoked: 0 })
    expect((await t.invalidate({ userId, revoke: true }, bearer)).json()).toMatchObject({ revoked: 1 })
    expect((await t.invalidate({}, bearer)).json()).toMatchObject({ code: 'INVALIDATE_TARGET_REQUIRED' })

    for (const url of ['/health/redis', '/health/live', '/health/ready', '/metrics']) {
      expect((await t.app.inject({ method: 'GET', url })).statusCode, url).toBe(200)
    }
    expect((await t.app.inject({ method: 'HEAD', url: '/health/live' })).statusCode).toBe(200)
    expect((await t.app.inject({ method: 'GET', url: '/nowhere' })).statusCode).toBe(404)
  })

  it('fails the request that drifts: the wrapped inject throws, naming the operation and the field', async () => {
    // A store that answers a session id the contract does not allow: the route serialises it, the validator refuses it.
    const wrapStore = (store: SessionStore): SessionStore => ({
      ...store,
      async findByTokenHash(hash) {
        const record = await store.findByTokenHash(hash)
        return record && { ...record, session: { ...record.session, id: 'not-a-uuid' } }
      },
    })
    t = await startTestApp({ db, overrides: { wrapStore } })
    const { token } = await db.insertSession()
    const error = await t.validate(token).then(
      () => undefined,
      (err: unknown) => err,
    )
    expect(error).toBeInstanceOf(OpenApiMismatch)
    expect(String(error)).toMatch(/POST \/validate → 200 does not match openapi\.yaml[\s\S]*\/session\/id/)

    // openapi: false turns the check off for a test that means to send something undocumented.
    const unchecked = await startTestApp({ db, overrides: { wrapStore }, openapi: false })
    try {
      expect((await unchecked.validate(token)).json()).toMatchObject({ valid: true, session: { id: 'not-a-uuid' } })
    } finally {
      await unchecked.close()
    }
  })
})
