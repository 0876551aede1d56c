import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestDatabase, type TestDatabase } from '../../../test/support/database.js'
import { TEST_REDIS_URL } from '../../../test/support/env.js'
import { startRoundRobinProxy, type RoundRobinProxy } from '../../../test/support/round-robin-proxy.js'
import { startServerProcess, TEST_SERVICE_KEY, type ServerProcess } from '../../../test/support/server-process.js'
import { dropSharedRedisKeys } from '../../../test/support/shared-redis.js'
import { createSessionClient, type SessionClient } from '../src/index.js'

/**
 * A rolling deploy as the client sees it: two real instances behind a readiness-aware round-robin balancer; one gets
 * SIGTERM while the client's calls run. Not one validate call may fail.
 */
const POLL_INTERVAL_MS = 100
const DRAIN_DELAY_MS = 5 * POLL_INTERVAL_MS
const SHUTDOWN_TIMEOUT_MS = DRAIN_DELAY_MS + 10_000
const CALLERS = 4
const KEY_PREFIX = `ssc-client-rolling-${process.pid}-${Date.now()}:`
const CACHE_KEY = `t:${randomBytes(32).toString('base64')}`

let db: TestDatabase
const balancers: RoundRobinProxy[] = []
const clients: SessionClient[] = []
const instances: ServerProcess[] = []

beforeAll(async () => {
  db = await createTestDatabase()
}, 60_000)

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()))
  await Promise.all(balancers.map((b) => b.close()))
  await Promise.all(instances.map((i) => i.kill()))
  await db?.drop()
  await dropSharedRedisKeys(KEY_PREFIX)
})

const start = (drainDelayMs = DRAIN_DELAY_MS) =>
  startServerProcess({
    DATABASE_URL: db.url,
    DATABASE_SCHEMA: db.schema,
    DATABASE_POOL_MAX: '4',
    REDIS_URL: TEST_REDIS_URL,
    REDIS_KEY_PREFIX: KEY_PREFIX,
    CACHE_ENCRYPTION_KEYS: CACHE_KEY,
    SHUTDOWN_DRAIN_DELAY_MS: String(drainDelayMs),
    SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
  }).then((i) => (instances.push(i), i))

/** CALLERS loops validating through `client` until `stop()`; every failure and wrong answer is recorded. */
function callLoop(client: SessionClient, sessions: Array<{ token: string; sessionId: string }>) {
  const failures: string[] = []
  let answered = 0
  let stop = false
  const done = Promise.all(
    Array.from({ length: CALLERS }, async (_, c) => {
      for (let i = 0; !stop && i < 50_000; i++) {
        const s = sessions[(c + i) % sessions.length]!
        try {
          const answer = await client.validate(s.token)
          if (!answer.valid || answer.session.id !== s.sessionId) failures.push(`wrong answer: ${JSON.stringify(answer)}`)
          else answered++
        } catch (err) {
          failures.push(String(err))
        }
      }
    }),
  )
  return {
    failures,
    answered: () => answered,
    stop: async () => {
      stop = true
      await done
    },
  }
}

describe('rolling deploy, through the client', () => {
  it('loses no validate call while one of two instances drains and exits', async () => {
    const [a, b] = await Promise.all([start(), start()])
    const lb = await startRoundRobinProxy({ pollIntervalMs: POLL_INTERVAL_MS })
    balancers.push(lb)
    lb.add('a', a!.port)
    lb.add('b', b!.port)
    await expect.poll(() => lb.upstream('a')!.ready && lb.upstream('b')!.ready, { timeout: 10_000 }).toBe(true)
    const sessions = await Promise.all(Array.from({ length: 8 }, () => db.insertSession()))
    const client = createSessionClient({ baseUrl: lb.url, serviceKey: TEST_SERVICE_KEY, logger: { warn: () => undefined } })
    clients.push(client)
    const { failures, answered, stop } = callLoop(client, sessions)

    await expect.poll(() => lb.upstream('a')!.routed > 50 && lb.upstream('b')!.routed > 50, { timeout: 20_000 }).toBe(true)
    a!.signal('SIGTERM')
    expect(await a!.exit(SHUTDOWN_TIMEOUT_MS)).toEqual({ code: 0, signal: null })
    const afterExit = answered()
    await expect.poll(() => answered() - afterExit, { timeout: 20_000 }).toBeGreaterThan(100)
    await stop()

    // The disturbance happened: A left the balancer's rotation (readiness 503, then refused) and B carried on.
    expect(lb.upstream('a')!.polls).toContain(503)
    expect(lb.upstream('a')!.ready).toBe(false)
    expect(failures.slice(0, 5)).toEqual([])
    expect(answered()).toBeGreaterThan(200)
    expect(client.metrics().errors).toEqual({ unavailable: 0, configuration: 0, request: 0, server: 0 })
    await b!.kill()
  }, 90_000)

  it('loses no validate call when the balancer is slow to notice: its 502s are retried', async () => {
    // No drain delay and a balancer polling every 2 s: for up to 2 s it keeps routing to an instance that has closed
    // its listener and answers 502 for each such request. The client must absorb those.
    const SLOW_POLL_MS = 2000
    const [a, b] = await Promise.all([start(0), start(0)])
    const lb = await startRoundRobinProxy({ pollIntervalMs: SLOW_POLL_MS })
    balancers.push(lb)
    lb.add('a', a!.port)
    lb.add('b', b!.port)
    await expect.poll(() => lb.upstream('a')!.ready && lb.upstream('b')!.ready, { timeout: 10_000 }).toBe(true)
    const sessions = await Promise.all(Array.from({ length: 8 }, () => db.insertSession()))
    const client = createSessionClient({ baseUrl: lb.url, serviceKey: TEST_SERVICE_KEY, logger: { warn: () => undefined } })
    clients.push(client)
    const { failures, answered, stop } = callLoop(client, sessions)

    await expect.poll(() => lb.upstream('a')!.routed > 50 && lb.upstream('b')!.routed > 50, { timeout: 20_000 }).toBe(true)
    a!.signal('SIGTERM')
    expect(await a!.exit(SHUTDOWN_TIMEOUT_MS)).toEqual({ code: 0, signal: null })
    await expect.poll(() => lb.upstream('a')!.ready, { timeout: 3 * SLOW_POLL_MS }).toBe(false)
    const afterOut = answered()
    await expect.poll(() => answered() - afterOut, { timeout: 20_000 }).toBeGreaterThan(50)
    await stop()

    // The disturbance: a caller without retries would have seen these 502s.
    expect(lb.failures.length, 'the balancer answered no 502: the scenario did not happen').toBeGreaterThan(0)
    expect(client.metrics().retries).toBeGreaterThan(0)
    expect(failures.slice(0, 5), JSON.stringify({ metrics: client.metrics(), lb: lb.failures.length, polls: lb.upstream('a')!.polls })).toEqual([])
    expect(client.metrics().errors).toEqual({ unavailable: 0, configuration: 0, request: 0, server: 0 })
  }, 90_000)
})
