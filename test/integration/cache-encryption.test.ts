import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { hashToken } from '../../src/domain/token.js'
import { startTestApp, type TestApp } from '../support/app.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'

/**
 * AES-256-GCM on what Redis holds about a person (src/cache/codec.ts): raw values carry no PII; keys rotate without a
 * flush (the first key seals, every listed key opens); and a value that does not open (unknown key, wrong key,
 * tampered, moved onto another token's key, garbage) is a miss answered from Postgres: never a crash, never someone
 * else's session.
 */

const key = () => randomBytes(32).toString('base64')
const OLD = `old:${key()}`
const NEW = `new:${key()}`

let db: TestDatabase
const apps: TestApp[] = []
let prefix: string

beforeAll(async () => {
  db = await createTestDatabase()
})
afterAll(async () => {
  await db?.drop()
})
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close()
})

/** Instances of one deployment: they share a key prefix, each with its own CACHE_ENCRYPTION_KEYS. */
async function instance(keys: string, env: Record<string, string> = {}) {
  const app = await startTestApp({
    db,
    // Not-valid answers are cached at their first miss, so a test can read one back from Redis.
    env: { CACHE_ENCRYPTION_KEYS: keys, NEGATIVE_CACHE_MIN_MISSES: '1', ...(apps.length > 0 ? { REDIS_KEY_PREFIX: prefix } : {}), ...env },
  })
  if (apps.length === 0) prefix = app.prefix
  apps.push(app)
  return app
}

async function counter(app: TestApp, name: string, labels: Record<string, string>): Promise<number> {
  const text = (await app.app.inject({ method: 'GET', url: '/metrics' })).body
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`)
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && wanted.every((w) => l.includes(w)))
  return line ? Number(line.split(' ').at(-1)) : 0
}

/** A user whose every personal field is distinctive, so a raw scan for it means something. */
async function personalSession() {
  const mark = randomBytes(6).toString('hex')
  const fields = {
    email: `grace.hopper.${mark}@navy.example`,
    firstName: `Grace${mark}`,
    lastName: `Hopper${mark}`,
    username: `ghopper${mark}`,
  }
  const userId = await db.insertUser(fields)
  return { ...(await db.insertSession({ userId })), fields }
}

/** The key id a value names (format 4: [0x40 | id length − 1][id]…). */
const sealedBy = (raw: Buffer | null) => (raw === null ? null : raw.toString('latin1', 1, 2 + (raw[0]! & 0x0f)))

describe('cached values are encrypted', () => {
  it('holds no token, no id and no personal field in clear: one sealed blob naming its key', async () => {
    const t = await instance(`${NEW},${OLD}`)
    const { token, sessionId, userId, fields } = await personalSession()
    await t.validate(token)
    await t.settle()
    expect((await t.validate(token)).json()).toMatchObject({ valid: true, source: 'redis', user: { email: fields.email } })

    const raw = (await t.redis.getBuffer(t.keys.entry(hashToken(token))))!
    expect(raw[0]).toBe(0x40 | ('new'.length - 1))
    expect(sealedBy(raw)).toBe('new')
    const everything = JSON.stringify(await t.dump())
    for (const secret of [token, hashToken(token), sessionId, userId, ...Object.values(fields)]) expect(everything).not.toContain(secret)
    // Nor any case-folded or partial form of the email, nor the ids' bytes in the value.
    expect(everything.toLowerCase()).not.toContain(fields.email.split('@')[0]!.toLowerCase())
    for (const id of [sessionId, userId]) expect(raw.includes(Buffer.from(id.replaceAll('-', ''), 'hex'))).toBe(false)
  })

  it('rotates without a flush: values sealed by the old key still open while the new key seals, and old ones become misses once it is dropped', async () => {
    const before = await instance(OLD)
    const a = await personalSession()
    await before.validate(a.token)
    await before.settle()

    // Step 2 of a rotation: the new key seals, the old one still opens.
    const during = await instance(`${NEW},${OLD}`)
    expect((await during.validate(a.token)).json()).toMatchObject({ valid: true, source: 'redis', user: { email: a.fields.email } })
    const b = await personalSession()
    await during.validate(b.token)
    await during.settle()
    expect(sealedBy(await during.redis.getBuffer(during.keys.entry(hashToken(b.token))))).toBe('new')

    // Step 3: the old key is gone. B's value opens; A's (sealed by `old`) is a miss, answered by Postgres and resealed.
    const after = await instance(NEW)
    expect((await after.validate(b.token)).json()).toMatchObject({ valid: true, source: 'redis' })
    expect((await after.validate(a.token)).json()).toMatchObject({ valid: true, source: 'postgres', user: { email: a.fields.email } })
    expect(await counter(after, 'session_cache_undecodable_total', { reason: 'unknown_key' })).toBe(1)
    await after.settle()
    expect((await after.validate(a.token)).json()).toMatchObject({ valid: true, source: 'redis' })
    expect(sealedBy(await after.redis.getBuffer(after.keys.entry(hashToken(a.token))))).toBe('new')
  })

  it('treats a value that does not open as a miss and answers from Postgres, for every kind of damage', async () => {
    const t = await instance(NEW)
    const victim = await personalSession()
    const other = await personalSession()
    await t.validate(victim.token)
    await t.validate(other.token)
    await t.validate('not-a-session-token')
    await t.settle()
    const entry = (token: string) => t.keys.entry(hashToken(token))
    const original = (await t.redis.getBuffer(entry(victim.token)))!
    const otherValue = (await t.redis.getBuffer(entry(other.token)))!
    const negative = (await t.redis.getBuffer(entry('not-a-session-token')))!
    // [0x42]['new'][iv 12][ciphertext][tag 16]
    const head = 1 + 'new'.length
    const flip = (at: number) => {
      const copy = Buffer.from(original)
      copy[at]! ^= 0x01
      return copy
    }

    const damaged: Array<[string, Buffer | string, 'rejected' | 'malformed' | 'unknown_key']> = [
      ['a flipped ciphertext bit', flip(head + 12 + 5), 'rejected'],
      ['a flipped tag bit', flip(original.length - 1), 'rejected'],
      ['a flipped IV bit', flip(head), 'rejected'],
      ["another session's value copied onto this key", otherValue, 'rejected'],
      ["a 'not valid' answer copied from another token", negative, 'rejected'],
      ['a value sealed by a key with the same id but other bytes', Buffer.concat([original.subarray(0, head), randomBytes(150)]), 'rejected'],
      ['a key id this instance does not hold', Buffer.concat([Buffer.from([0x43]), Buffer.from('gone'), original.subarray(head)]), 'unknown_key'],
      ['a truncated blob', original.subarray(0, 20), 'rejected'],
      [
        'a format-3 value (JSON) left by an older instance',
        JSON.stringify({ v: 3, sid: victim.sessionId, uid: victim.userId, p: `new.${randomBytes(180).toString('base64')}` }),
        'malformed',
      ],
      ['the previous plaintext format', JSON.stringify({ v: 1, sid: victim.sessionId, uid: victim.userId, em: 'mallory@example.test', x: Date.now() + 1e6 }), 'malformed'],
      ['not JSON at all', 'garbage{', 'malformed'],
      ['an empty value', '', 'malformed'],
    ]
    for (const [what, value, reason] of damaged) {
      const before = await counter(t, 'session_cache_undecodable_total', { reason })
      await t.redis.set(entry(victim.token), value, 'PX', 60_000)
      const response = await t.validate(victim.token)
      expect(response.statusCode, what).toBe(200)
      expect(response.json(), what).toMatchObject({
        valid: true,
        source: 'postgres',
        session: { id: victim.sessionId, userId: victim.userId },
        user: { email: victim.fields.email },
      })
      expect(await counter(t, 'session_cache_undecodable_total', { reason }), what).toBe(before + 1)
      await t.settle()
    }
    // After all that, the entry was refilled by the service and opens again.
    expect((await t.validate(victim.token)).json()).toMatchObject({ valid: true, source: 'redis', user: { email: victim.fields.email } })
    expect(t.logs.entries().filter((e) => (e.level as number) >= 50)).toEqual([])
  })
})
