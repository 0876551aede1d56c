import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { startTestApp, type TestApp } from '../support/app.js'

/**
 * x-request-id: a caller's id is kept and echoed when it is safe to log; otherwise the service makes a UUID. Either
 * way the id is on the response and on every log line of that request.
 */

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

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

function linesOf(requestId: string) {
  return t.logs.entries().filter((entry) => entry.requestId === requestId)
}

async function validateWith(headers: Record<string, string | string[]>, token = 'abc') {
  return t.app.inject({ method: 'POST', url: '/validate', headers, payload: { token } })
}

describe('a safe caller id is honoured', () => {
  it.each(['abc-123', 'req_2024.01:07', 'A'.repeat(128), '0'])('echoes %j and logs the request under it', async (id) => {
    const response = await validateWith({ 'x-request-id': id })
    expect(response.statusCode).toBe(200)
    expect(response.headers['x-request-id']).toBe(id)
    const lines = linesOf(id)
    expect(lines.map((l) => l.msg)).toContain('request completed')
    expect(lines.find((l) => l.msg === 'request completed')).toMatchObject({ statusCode: 200, url: '/validate' })
  })

  it('keeps the id on a rejected request too, including its "request rejected" line', async () => {
    const id = 'bad-input-7'
    const response = await t.app.inject({
      method: 'POST',
      url: '/validate',
      headers: { 'x-request-id': id, 'content-type': 'application/json' },
      payload: '{"token": 1}',
    })
    expect(response.statusCode).toBe(400)
    expect(response.headers['x-request-id']).toBe(id)
    expect(linesOf(id).map((l) => l.msg)).toEqual(expect.arrayContaining(['request rejected', 'request completed']))
    expect(linesOf(id).find((l) => l.msg === 'request rejected')).toMatchObject({ code: 'TOKEN_NOT_STRING' })
  })

  it('keeps the id on an unknown route (404)', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/nowhere', headers: { 'x-request-id': 'lost-1' } })
    expect(response.statusCode).toBe(404)
    expect(response.headers['x-request-id']).toBe('lost-1')
  })
})

describe('a missing or unsafe caller id is replaced by a generated UUID', () => {
  const unsafe: Array<[string, string]> = [
    ['with a space', 'abc 123'],
    ['with a tab', 'abc\t123'],
    ['of 129 characters', 'A'.repeat(129)],
    ['empty', ''],
    ['with non-ASCII letters', 'réq-1'],
    ['with JSON-breaking quotes and braces', 'a"}{"level":60'],
    ['with a slash', '../../etc'],
  ]

  it('makes one when the header is absent, and a new one per request', async () => {
    const first = await validateWith({})
    const second = await validateWith({})
    const ids = [first.headers['x-request-id'], second.headers['x-request-id']]
    for (const id of ids) expect(id).toMatch(UUID_V4)
    expect(ids[0]).not.toBe(ids[1])
    expect(linesOf(String(ids[0])).map((l) => l.msg)).toContain('request completed')
  })

  it.each(unsafe)('replaces an id %s', async (_label, id) => {
    const response = await validateWith({ 'x-request-id': id })
    expect(response.statusCode).toBe(200)
    const echoed = String(response.headers['x-request-id'])
    expect(echoed).toMatch(UUID_V4)
    expect(linesOf(echoed).map((l) => l.msg)).toContain('request completed')
    if (id.length > 0) expect(t.logs.text()).not.toContain(JSON.stringify(id).slice(1, -1))
  })

  it('replaces an id containing a newline (a log-injection attempt)', async () => {
    // Node's HTTP parser refuses such a header on the wire; inject hands it straight to the app, which must not trust it.
    const response = await validateWith({ 'x-request-id': 'abc\n{"msg":"forged"}' })
    expect(String(response.headers['x-request-id'])).toMatch(UUID_V4)
    expect(t.logs.entries().some((l) => l.msg === 'forged')).toBe(false)
  })

  it('replaces a header sent twice (ambiguous) rather than picking one', async () => {
    const response = await validateWith({ 'x-request-id': ['one-1', 'two-2'] })
    const echoed = String(response.headers['x-request-id'])
    expect(echoed).toMatch(UUID_V4)
  })
})
