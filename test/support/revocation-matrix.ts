import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashToken } from '../../src/domain/token.js'
import { startTestApp, type TestApp } from './app.js'
import { createTestDatabase, type TestDatabase, type TestDatabaseOptions } from './database.js'
import { eventually } from './gate.js'
import { studioStatements } from './studio-statements.js'

/**
 * The revocation matrix (docs/architecture.md, "The bounds, path by path"): every way a session ends,
 * under one disturbance per test file, against two instances sharing one Redis and one Postgres schema.
 */

export interface Session {
  token: string
  sessionId: string
  userId: string
}

export interface MatrixContext {
  db: TestDatabase
  a: TestApp
  b: TestApp
  session: Session
}

export interface Ending {
  name: string
  /** sql: the Studio writes its tables; http: the Studio calls /invalidate on instance a. */
  via: 'sql' | 'http'
  /** Whether Postgres says the session is over afterwards (every SQL ending; /invalidate with revoke). */
  ends: boolean
  /** A statement the Studio's schema refuses (its CHECK (expires_at > created_at)): run on the plain schema only. */
  plainOnly?: boolean
  run(ctx: MatrixContext): Promise<{ status: number } | void>
}

const sql = (name: string, statement: string, param: (s: Session) => string): Ending => ({
  name: `SQL: ${name}`,
  via: 'sql',
  ends: true,
  async run({ db, session }) {
    await db.query(statement, [param(session)])
  },
})

const http = (name: string, body: (s: Session) => Record<string, unknown>, revoke: boolean): Ending => ({
  name: `/invalidate ${name}${revoke ? ' with revoke' : ''}`,
  via: 'http',
  ends: revoke,
  async run({ a, session }) {
    const res = await a.invalidate({ ...body(session), ...(revoke ? { revoke: true } : {}) })
    return { status: res.statusCode }
  },
})

/** One of the Studio's own statements (studio-statements.ts), run as the Studio runs it. */
const studio = (name: string, run: (ctx: MatrixContext, statements: ReturnType<typeof studioStatements>) => Promise<unknown>): Ending => ({
  name: `the Studio: ${name}`,
  via: 'sql',
  ends: true,
  async run(ctx) {
    await run(ctx, studioStatements(ctx.db))
  },
})

export const ENDINGS: Ending[] = [
  sql('user banned', "UPDATE $schema.users SET banned_until = now() + interval '1 day' WHERE id = $1", (s) => s.userId),
  sql('user soft-deleted', 'UPDATE $schema.users SET deleted_at = now() WHERE id = $1', (s) => s.userId),
  sql('user deleted', 'DELETE FROM $schema.users WHERE id = $1', (s) => s.userId),
  sql('session deleted (the Studio logout)', 'DELETE FROM $schema.user_sessions WHERE id = $1', (s) => s.sessionId),
  sql('revoked_at set', 'UPDATE $schema.user_sessions SET revoked_at = now() WHERE id = $1', (s) => s.sessionId),
  {
    ...sql('expires_at moved into the past', "UPDATE $schema.user_sessions SET expires_at = now() - interval '1 second' WHERE id = $1", (s) => s.sessionId),
    plainOnly: true,
  },
  studio('refresh rotates the token (the old one ends)', ({ session }, st) => st.refresh(session.sessionId)),
  studio('signout (DELETE by token)', ({ session }, st) => st.signout(session.token)),
  studio('revoke the other sessions', async ({ session }, st) => {
    const current = await st.signin(session.userId)
    await st.revokeOthers(session.userId, current.sessionId)
  }),
  studio('revoke all sessions', ({ session }, st) => st.revokeAll(session.userId)),
  studio('cleanup of sessions inactive 30 days', async ({ a, b, db, session }, st) => {
    // Activity the instances recorded for this session goes out first; it is then 31 days idle, and the Studio's job
    // deletes it (the service's next write for it is an interval away, so nothing makes it active again meanwhile).
    await Promise.all([a, b].map((x) => x.app.internals.postgres.activity?.flush()))
    await db.query("UPDATE $schema.user_sessions SET last_activity_at = now() - interval '31 days' WHERE id = $1", [session.sessionId])
    const { rowCount } = await st.cleanupInactive()
    expect(rowCount, 'the cleanup deleted the idle session').toBeGreaterThanOrEqual(1)
  }),
  http('by token', (s) => ({ token: s.token }), false),
  http('by token', (s) => ({ token: s.token }), true),
  http('by session id', (s) => ({ sessionId: s.sessionId }), false),
  http('by session id', (s) => ({ sessionId: s.sessionId }), true),
  http('by user id', (s) => ({ userId: s.userId }), false),
  http('by user id', (s) => ({ userId: s.userId }), true),
]

export interface Disturbance {
  name: string
  /** Extra environment for both instances. */
  env?: Record<string, string>
  /**
   * Whatever the disturbance needs before the instances start (a private Redis, a proxy in front of Postgres): the
   * environment and Redis URL both instances use, and how to close it all after them.
   */
  setup?(db: TestDatabase): Promise<{ env?: Record<string, string>; redisUrl?: string; close(): Promise<void> }>
  /** After the session is cached on both instances, before it ends. */
  before?(ctx: MatrixContext): Promise<void>
  /** Right after it ended. */
  after?(ctx: MatrixContext): Promise<void>
  /** The bound (ms) within which both instances must stop answering valid from a cache, measured from the ending. */
  boundMs(ending: Ending): number
  /** Endings this disturbance does not apply to. */
  skip?(ending: Ending): boolean
  /** What /invalidate must answer first (default 200). */
  expectStatus?(ending: Ending): number
  /**
   * After `after()`, the caller sends the /invalidate again until it answers 200, for at most this long, as the
   * Studio's client does on a 503 with Retry-After. The bound then runs from that 200.
   */
  retryUntil200Ms?: number
  /** The check after the ending (default: not valid, or re-read from Postgres, on both instances within the bound). */
  verify?(ctx: MatrixContext, ending: Ending): Promise<void>
}

export interface Answer {
  status: number
  valid?: boolean
  source?: string
  reason?: string
}

export async function ask(app: TestApp, token: string): Promise<Answer> {
  const res = await app.validate(token)
  const body = res.statusCode === 200 ? (res.json() as Omit<Answer, 'status'>) : {}
  return { status: res.statusCode, ...body }
}

/** A cached answer that should no longer be given: valid from L1 or Redis. */
const fromCache = (x: Answer) => x.valid === true && (x.source === 'redis' || x.source === 'l1')

/**
 * Puts the session in Redis (and in each instance's L1 when it is on), checking that each instance answers it from a
 * cache, so the ending has something to undo. An instance still recovering from the previous cell's disturbance
 * (breaker open, events pending) is given a few seconds to.
 */
export async function cacheOnBoth(ctx: MatrixContext, budgetMs = 5000): Promise<void> {
  const { a, b, session } = ctx
  const deadline = Date.now() + budgetMs
  for (const app of [a, b]) {
    let last: Answer | undefined
    while (Date.now() < deadline) {
      await ask(app, session.token)
      await app.settle()
      last = await ask(app, session.token)
      if (fromCache(last)) break
      await new Promise((r) => setTimeout(r, 50))
    }
    expect(last && fromCache(last), `cached on ${app === a ? 'a' : 'b'}: ${JSON.stringify(last)}`).toBe(true)
  }
  // A's answer may have been put back in its L1 while b filled: ask both once more, both from a cache.
  for (const app of [a, b]) expect(fromCache(await ask(app, session.token))).toBe(true)
}

/**
 * Polls both instances until neither answers the session valid from a cache (and, where Postgres ended it, neither
 * answers it valid at all), within `boundMs`. Returns the time it took.
 */
export async function waitUntilGone(ctx: MatrixContext, ending: Ending, startedAt: number, boundMs: number): Promise<number> {
  // Over means answered, and answered right: a 200 with valid:false where Postgres ended the session (a 503 is not
  // "gone", it is "unknown"), and a 200 that is not from a cache where only the cache was dropped.
  const over = (x: Answer) =>
    x.status === 200 && (ending.ends ? x.valid === false : x.valid === false || x.source === 'postgres')
  if (boundMs === 0) {
    // "At once": the first answer on each instance after the 200 is already right; no polling, no second chance.
    const [x, y] = await Promise.all([ask(ctx.a, ctx.session.token), ask(ctx.b, ctx.session.token)])
    expect(over(x), `${ending.name}: instance a's first answer after the 200: ${JSON.stringify(x)}`).toBe(true)
    expect(over(y), `${ending.name}: instance b's first answer after the 200: ${JSON.stringify(y)}`).toBe(true)
    return 0
  }
  const deadline = startedAt + boundMs + 2000
  const settled = { a: false, b: false }
  let lastSeen: Record<string, Answer> = {}
  while (Date.now() < deadline) {
    const [x, y] = await Promise.all([ask(ctx.a, ctx.session.token), ask(ctx.b, ctx.session.token)])
    lastSeen = { a: x, b: y }
    settled.a ||= over(x)
    settled.b ||= over(y)
    if (settled.a && settled.b) return Date.now() - startedAt
    await new Promise((r) => setTimeout(r, 10))
  }
  throw new Error(`${ending.name}: still answered from a cache after ${boundMs + 2000} ms: ${JSON.stringify(lastSeen)}`)
}

/** Once over, never back: repeated answers on both instances, before and after background writes settle. */
export async function neverFlipsBack(ctx: MatrixContext): Promise<void> {
  for (let round = 0; round < 8; round++) {
    if (round === 4) await Promise.all([ctx.a.settle(), ctx.b.settle()])
    for (const app of [ctx.a, ctx.b]) {
      const x = await ask(app, ctx.session.token)
      expect({ status: x.status, valid: x.valid }, `round ${round}: ${JSON.stringify(x)}`).toEqual({ status: 200, valid: false })
    }
    await new Promise((r) => setTimeout(r, 25))
  }
}

/**
 * Registers one `it` per ending under this disturbance, and prints the measured lags when the file is done. `database`
 * picks the schema (this project's, or the Studio's own) and the role the service runs as.
 */
export function revocationMatrix(disturbance: Disturbance, database: TestDatabaseOptions = {}): void {
  const on = database.shape === 'studio' ? ` (the Studio's schema, ${database.role ?? 'owner'} role)` : ''
  describe(`revocation under: ${disturbance.name}${on}`, () => {
    let db: TestDatabase
    let a: TestApp
    let b: TestApp
    let resources: { env?: Record<string, string>; redisUrl?: string; close(): Promise<void> } | undefined
    const lags: Array<{ ending: string; lagMs: number; boundMs: number }> = []

    beforeAll(async () => {
      db = await createTestDatabase(undefined, database)
      resources = await disturbance.setup?.(db)
      const env = { REDIS_KEY_PREFIX: `ssc-matrix-${randomBytes(4).toString('hex')}:`, ...resources?.env, ...disturbance.env }
      a = await startTestApp({ db, env, redisUrl: resources?.redisUrl })
      b = await startTestApp({ db, env, redisUrl: resources?.redisUrl })
    })
    afterAll(async () => {
      await a?.close()
      await b?.close()
      await resources?.close()
      await db?.drop()
      if (lags.length > 0) {
        console.warn(
          `revocation lag under "${disturbance.name}" (from the ending to both instances):\n` +
            lags.map((l) => `  ${l.ending.padEnd(44)} ${String(l.lagMs).padStart(5)} ms  (bound ${l.boundMs} ms)`).join('\n'),
        )
      }
    })

    for (const ending of ENDINGS) {
      if (ending.plainOnly && database.shape === 'studio') continue
      const test = disturbance.skip?.(ending) ? it.skip : it
      test(`${ending.name}: both instances stop answering it valid within the bound, and never again`, async () => {
        const session = await db.insertSession()
        const ctx: MatrixContext = { db, a, b, session }
        await cacheOnBoth(ctx)
        await disturbance.before?.(ctx)
        const outcome = await ending.run(ctx)
        // Bounds run from the commit (SQL) or the answer (/invalidate).
        const startedAt = Date.now()
        if (outcome) expect(outcome.status, `${ending.name} answered`).toBe(disturbance.expectStatus?.(ending) ?? 200)
        await disturbance.after?.(ctx)
        let answeredAt = startedAt
        if (ending.via === 'http' && disturbance.retryUntil200Ms !== undefined) {
          const deadline = Date.now() + disturbance.retryUntil200Ms
          let status = outcome?.status
          while (status !== 200 && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 100))
            status = (await ending.run(ctx))?.status
          }
          expect(status, `${ending.name}: retried until 200`).toBe(200)
          answeredAt = Date.now()
        }
        if (disturbance.verify) {
          await disturbance.verify(ctx, ending)
          return
        }
        const bound = disturbance.boundMs(ending)
        const lagMs = await waitUntilGone(ctx, ending, answeredAt, bound)
        lags.push({ ending: ending.name, lagMs, boundMs: bound })
        expect(lagMs, `${ending.name}: lag ${lagMs} ms over the ${bound} ms bound`).toBeLessThanOrEqual(bound)
        if (ending.ends) {
          await neverFlipsBack(ctx)
          // Once both feeds have caught up (an event the cache refused has landed, within the bound), nothing valid for
          // it is left in Redis either: the entry is gone, or holds a not-valid answer.
          await eventually(() => [a, b].every((x) => x.app.internals.revocation.feed.trusted()), bound + 2000, 'feeds caught up')
          await eventually(() => a.redis.status === 'ready', 5000, 'inspection connection back')
          const raw = await a.redis.getBuffer(a.keys.entry(hashToken(session.token)))
          if (raw !== null) expect(a.codec.decode(hashToken(session.token), raw)?.valid, 'a valid entry is back in Redis').not.toBe(true)
        }
      })
    }
  })
}
