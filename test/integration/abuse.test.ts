import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { SessionStore } from '../../src/domain/ports.js'
import { startTestApp, type TestApp } from '../support/app.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { eventually } from '../support/gate.js'

/**
 * Abuse resistance. A flood of unknown tokens (every one a cache miss) beside valid traffic: Postgres sees a bounded
 * number of lookups at once (the pool never queues), the excess is shed with 503 SESSION_STORE_BUSY rather than piled
 * up, and cached sessions keep validating from Redis throughout. Under event-loop lag the session routes shed with
 * 503 OVERLOADED while health and metrics keep answering.
 */

const POOL_MAX = 3
const QUEUE_MAX = 6

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

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Slows every lookup (so the flood saturates the limit deterministically) and records how many run at once. */
function slowLookups(delayMs: number) {
  let running = 0
  let peak = 0
  let calls = 0
  return {
    get peak() {
      return peak
    },
    get calls() {
      return calls
    },
    wrap: (store: SessionStore): SessionStore => ({
      ...store,
      async findByTokenHash(hash) {
        calls++
        running++
        peak = Math.max(peak, running)
        try {
          await sleep(delayMs)
          return await store.findByTokenHash(hash)
        } finally {
          running--
        }
      },
    }),
  }
}

describe('an unknown-token flood beside valid traffic', () => {
  it('keeps valid cached requests succeeding from Redis, bounds Postgres, and sheds the excess with 503 SESSION_STORE_BUSY', async () => {
    const lookups = slowLookups(20)
    t = await startTestApp({
      db,
      env: {
        DATABASE_POOL_MAX: String(POOL_MAX),
        DATABASE_LOOKUP_QUEUE_MAX: String(QUEUE_MAX),
        DATABASE_LOOKUP_QUEUE_TIMEOUT_MS: '5000',
        // Only the lookup bulkhead is under test here (event-loop shedding has its own test below).
        LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: '0',
        // Nor the Redis command timeout: the flood lags this process's event loop, and on a busy machine a cached read
        // can pass the default 250 ms, which is a miss by design (and then a lookup, possibly shed). Above the queue
        // timeout, a cached session is read from Redis however slow the machine is.
        REDIS_COMMAND_TIMEOUT_MS: '5000',
        BREAKER_TIMEOUT_MS: '5000',
      },
      overrides: { wrapStore: lookups.wrap },
    })
    const app = t
    const valid = await Promise.all(Array.from({ length: 8 }, () => db.insertSession()))
    for (const s of valid) await app.validate(s.token)
    await app.settle()

    // Watch the pg pool the whole time.
    const pool = app.app.internals.pgPool
    let poolPeak = 0
    let waitingPeak = 0
    const watch = setInterval(() => {
      poolPeak = Math.max(poolPeak, pool.totalCount)
      waitingPeak = Math.max(waitingPeak, pool.waitingCount)
    }, 1)

    const floodAnswers: Array<{ statusCode: number; body: Record<string, unknown>; retryAfter: unknown }> = []
    const validAnswers: Array<{ statusCode: number; body: Record<string, unknown> }> = []
    let flooding = true
    const flood = (async () => {
      try {
        for (let wave = 0; wave < 5; wave++) {
          const responses = await Promise.all(
            Array.from({ length: 60 }, () => app.validate(`flood-${randomBytes(12).toString('hex')}`)),
          )
          for (const r of responses) floodAnswers.push({ statusCode: r.statusCode, body: r.json(), retryAfter: r.headers['retry-after'] })
        }
      } finally {
        flooding = false
      }
    })()
    const steady = (async () => {
      for (let i = 0; flooding; i++) {
        const r = await app.validate(valid[i % valid.length]!.token)
        validAnswers.push({ statusCode: r.statusCode, body: r.json() })
      }
    })()
    await Promise.all([flood, steady])
    clearInterval(watch)

    // Valid traffic: every request answered, valid, from the cache.
    expect(validAnswers.length).toBeGreaterThan(10)
    for (const answer of validAnswers) expect(answer).toMatchObject({ statusCode: 200, body: { valid: true, source: 'redis' } })

    // The flood: each request either answered (not_found) or shed at once with Retry-After; never anything else.
    const shed = floodAnswers.filter((a) => a.statusCode === 503)
    const answered = floodAnswers.filter((a) => a.statusCode === 200)
    expect(shed.length + answered.length).toBe(floodAnswers.length)
    expect(shed.length).toBeGreaterThan(0)
    expect(answered.length).toBeGreaterThan(0)
    for (const a of shed) expect(a).toMatchObject({ body: { code: 'SESSION_STORE_BUSY' }, retryAfter: '1' })
    for (const a of answered) expect(a.body).toEqual({ valid: false, reason: 'not_found' })

    // Postgres: never more than the limit at once, and the pool never had a queue of its own.
    expect(lookups.peak).toBeLessThanOrEqual(POOL_MAX)
    expect(poolPeak).toBeLessThanOrEqual(POOL_MAX)
    expect(waitingPeak).toBe(0)
    expect(lookups.calls).toBeLessThan(floodAnswers.length)

    // Shedding is counted by code and logged, but not once per request.
    const metrics = (await app.app.inject({ method: 'GET', url: '/metrics' })).body
    expect(metrics).toMatch(new RegExp(`session_service_errors_total\\{code="SESSION_STORE_BUSY"\\} ${shed.length}\\b`))
    const shedLines = app.logs.entries().filter((e) => /shedding/.test(String(e.msg)))
    expect(shedLines.length).toBeGreaterThan(0)
    expect(shedLines.length).toBeLessThanOrEqual(2)
    expect(app.logs.entries().filter((e) => e.level === 50)).toEqual([])

    // Once the flood is over, lookups are served again.
    expect((await app.validate(`after-${randomBytes(8).toString('hex')}`)).json()).toEqual({ valid: false, reason: 'not_found' })
  })
})

/** Every loop turn blocks for `turnMs`, for `totalMs`: the sustained lag of a CPU-starved instance. */
function lagLoop(turnMs: number, totalMs: number): Promise<void> {
  const end = Date.now() + totalMs
  return new Promise((resolve) => {
    const turn = () => {
      const until = Date.now() + turnMs
      while (Date.now() < until) {
        // busy
      }
      if (Date.now() < end) setTimeout(turn, 0)
      else resolve()
    }
    setTimeout(turn, 0)
  })
}

function busyFor(ms: number): void {
  const until = Date.now() + ms
  while (Date.now() < until) {
    // busy
  }
}

describe('event-loop lag', () => {
  async function laggyApp(env: Record<string, string>) {
    t = await startTestApp({ db, env: { ...env, SERVICE_API_KEYS: 'ops:lag-test-key' } })
    const app = t
    const session = await db.insertSession()
    // Start-up itself (and a busy test machine) can trip a low threshold: wait for a calm sample first.
    await eventually(async () => (await app.validate(session.token)).statusCode === 200, 5000, 'a calm event loop')
    await app.settle()
    await eventually(async () => (await app.validate(session.token)).json().source === 'redis', 5000, 'a cache hit')
    return { app, ...session }
  }

  async function expectShedThenRecovery(app: TestApp, token: string, sessionId: string, during: () => Promise<void>) {
    const [validate, invalidate, live, ready, metrics] = await during().then(() => Promise.all([
      app.validate(token),
      app.invalidate({ sessionId }, { authorization: 'Bearer lag-test-key' }),
      app.app.inject({ method: 'GET', url: '/health/live' }),
      app.app.inject({ method: 'GET', url: '/health/ready' }),
      app.app.inject({ method: 'GET', url: '/metrics' }),
    ]))
    for (const shed of [validate, invalidate]) {
      expect(shed.statusCode).toBe(503)
      expect(shed.json()).toMatchObject({ code: 'OVERLOADED', error: 'Service Unavailable' })
      expect(shed.headers['retry-after']).toBe('1')
    }
    for (const probe of [live, ready, metrics]) expect(probe.statusCode).toBe(200)
    await eventually(async () => (await app.validate(token)).statusCode === 200, 5000, 'recovery')
    expect((await app.validate(token)).json()).toMatchObject({ valid: true })
    expect(app.logs.entries().filter((e) => e.msg === 'shedding load: requests answered 503 (at most one line per code every 10 s)')).toHaveLength(1)
  }

  it('sheds the session routes with 503 OVERLOADED under sustained event-loop delay, keeps health and metrics answering, then recovers', async () => {
    const { app, token, sessionId } = await laggyApp({ LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: '12', LOAD_SHED_SAMPLE_INTERVAL_MS: '50' })
    // Requests arrive while every turn of the loop takes 30 ms, i.e. after several samples have seen the lag.
    const lag = lagLoop(30, 700)
    await expectShedThenRecovery(app, token, sessionId, async () => {
      await sleep(300)
    })
    await lag
  })

  it('sheds on event-loop utilisation too (LOAD_SHED_MAX_EVENT_LOOP_UTILIZATION), which also sees one long stall', async () => {
    const { app, token, sessionId } = await laggyApp({
      LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: '0',
      LOAD_SHED_MAX_EVENT_LOOP_UTILIZATION: '0.9',
      LOAD_SHED_SAMPLE_INTERVAL_MS: '50',
    })
    // One 400 ms stall, then the sampler runs (its timer is overdue, so it fires before this 1 ms one).
    await expectShedThenRecovery(app, token, sessionId, async () => {
      busyFor(400)
      await sleep(1)
    })
  })
})

