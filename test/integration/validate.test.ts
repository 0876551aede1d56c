import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { hashToken } from '../../src/domain/token.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { startTestApp, type TestApp } from '../support/app.js'

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

describe('POST /validate', () => {
  it('answers a valid session from Postgres first, then from Redis, with the session and its user', async () => {
    t = await startTestApp({ db })
    const { token, sessionId, userId, expiresAt } = await db.insertSession()

    const first = await t.validate(token)
    expect(first.statusCode).toBe(200)
    expect(first.json()).toMatchObject({
      valid: true,
      source: 'postgres',
      session: { id: sessionId, userId, expiresAt: expiresAt.toISOString() },
      user: { id: userId, firstName: 'Ada', lastName: 'Lovelace', username: 'ada' },
    })
    await t.settle()

    const second = await t.validate(token)
    expect(second.json()).toMatchObject({ valid: true, source: 'redis', session: { id: sessionId } })
    expect(second.json().user).toEqual(first.json().user)
  })

  it('keys the cache on the SHA-256 of the token and never stores the token itself', async () => {
    t = await startTestApp({ db })
    const { token } = await db.insertSession()
    await t.validate(token)
    await t.settle()
    const dump = await t.dump()
    expect(Object.keys(dump)).toContain(`${t.prefix}e:${hashToken(token)}`)
    const everything = JSON.stringify(dump)
    expect(everything).not.toContain(token)
    expect(t.logs.lines.length).toBeGreaterThan(0)
    expect(t.logs.text()).not.toContain(token)
  })
})
