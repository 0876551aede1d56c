import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { TEST_REDIS_URL } from '../support/env.js'
import { startRoundRobinProxy, type RoundRobinProxy } from '../support/round-robin-proxy.js'
import { startServerProcess, type ServerProcess } from '../support/server-process.js'
import { dropSharedRedisKeys } from '../support/shared-redis.js'

/**
 * A rolling deploy: two real server processes (src/server.ts) sharing the test Redis and one Postgres schema, behind a
 * round-robin proxy that routes only to upstreams whose readiness answers 200 (as a platform's load balancer does).
 * Keep-alive load runs through it while one instance is sent SIGTERM, a replacement starts, and the other is sent
 * SIGTERM. Every request must be answered; the old instances must exit 0.
 */

/** The proxy's readiness poll; the drain delay gives it ten polls to notice, as a real deploy gives its balancer. */
const POLL_INTERVAL_MS = 100
const DRAIN_DELAY_MS = 10 * POLL_INTERVAL_MS
const SHUTDOWN_TIMEOUT_MS = DRAIN_DELAY_MS + 10_000
const CLIENTS = 6
const KEY_PREFIX = `ssc-rolling-${process.pid}-${Date.now()}:`

let db: TestDatabase
let proxy: RoundRobinProxy | undefined
const instances: ServerProcess[] = []

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function start(): Promise<ServerProcess> {
  return startServerProcess({
    DATABASE_URL: db.url,
    DATABASE_SCHEMA: db.schema,
    DATABASE_POOL_MAX: '4',
    REDIS_URL: TEST_REDIS_URL,
    // One deployment: a shared key prefix and encryption key, so each instance reads what the others cached.
    REDIS_KEY_PREFIX: KEY_PREFIX,
    CACHE_ENCRYPTION_KEYS: CACHE_KEY,
    SHUTDOWN_DRAIN_DELAY_MS: String(DRAIN_DELAY_MS),
    SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
  }).then((instance) => (instances.push(instance), instance))
}
const CACHE_KEY = `t:${randomBytes(32).toString('base64')}`

beforeAll(async () => {
  db = await createTestDatabase()
}, 60_000)

afterAll(async () => {
  await proxy?.close()
  await Promise.all(instances.map((i) => i.kill()))
  await db?.drop()
  await dropSharedRedisKeys(KEY_PREFIX)
})

interface Result {
  status: number | string
  upstream: string | null
  body?: Record<string, unknown>
  token: number
}

describe('rolling deploy behind a readiness-aware load balancer', () => {
  it('answers every request while one instance drains, a replacement starts and the other drains; the old ones exit 0', async () => {
    const [a, b] = await Promise.all([start(), start()])
    const lb = (proxy = await startRoundRobinProxy({ pollIntervalMs: POLL_INTERVAL_MS }))
    lb.add('a', a!.port)
    lb.add('b', b!.port)
    await expect.poll(() => lb.upstream('a')!.ready && lb.upstream('b')!.ready, { timeout: 10_000 }).toBe(true)

    const valid = await Promise.all(Array.from({ length: 12 }, () => db.insertSession()))
    const revoked = await Promise.all(Array.from({ length: 3 }, () => db.insertSession({ revoked: true })))
    const sessions = [...valid, ...revoked]

    // Keep-alive clients (Node's fetch) through the balancer, bounded in count and time.
    const results: Result[] = []
    let stop = false
    const clients = Array.from({ length: CLIENTS }, async (_, c) => {
      const stopBy = Date.now() + 180_000
      for (let i = 0; !stop && i < 20_000 && Date.now() < stopBy; i++) {
        const token = (c + i * CLIENTS) % sessions.length
        try {
          const res = await fetch(`${lb.url}/validate`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ token: sessions[token]!.token }),
            signal: AbortSignal.timeout(SHUTDOWN_TIMEOUT_MS),
          })
          const body = (await res.json().catch(() => undefined)) as Record<string, unknown> | undefined
          results.push({ status: res.status, upstream: res.headers.get('x-upstream'), body, token })
          if (res.status === 503 && res.headers.get('retry-after') === null) results.at(-1)!.status = '503 without Retry-After'
        } catch (err) {
          results.push({ status: (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message, upstream: null, token })
        }
        await sleep(5)
      }
    })
    const servedBy = (name: string) => results.filter((r) => r.upstream === name).length

    // Both old instances take traffic; then A drains while B carries the load.
    await expect.poll(() => servedBy('a') > 20 && servedBy('b') > 20, { timeout: 20_000 }).toBe(true)
    const atASignal = results.length
    a!.signal('SIGTERM')
    // The replacement starts meanwhile and joins once ready.
    const c = await start()
    lb.add('c', c.port)
    await expect.poll(() => lb.upstream('c')!.ready, { timeout: 10_000 }).toBe(true)
    const aExit = await a!.exit(SHUTDOWN_TIMEOUT_MS)
    const afterA = results.length
    await expect.poll(() => servedBy('c') > 20, { timeout: 20_000 }).toBe(true)

    b!.signal('SIGTERM')
    const bExit = await b!.exit(SHUTDOWN_TIMEOUT_MS)
    const afterB = results.length
    await expect.poll(() => results.length - afterB > 20, { timeout: 20_000 }).toBe(true)
    stop = true
    await Promise.all(clients)

    // Every request was answered, and answered right, by whichever instance the balancer chose.
    const failed = results.filter((r) => r.status !== 200)
    expect(failed, `failed: ${JSON.stringify(failed.slice(0, 10))}; proxy: ${lb.failures.slice(0, 10).join('; ')}`).toEqual([])
    expect(lb.failures).toEqual([])
    for (const r of results) {
      const s = sessions[r.token]!
      if (r.token < valid.length) expect(r.body).toMatchObject({ valid: true, session: { id: s.sessionId } })
      else expect(r.body).toEqual({ valid: false, reason: 'revoked' })
    }
    // While A drained, B carried traffic; the last requests were all the replacement's.
    expect(results.slice(atASignal, afterA).filter((r) => r.upstream === 'b').length, 'answered by b while a drained').toBeGreaterThan(0)
    expect(results.slice(afterB).every((r) => r.upstream === 'c')).toBe(true)
    // The replacement started warm: its first answer for each valid session came from the Redis the old instances had
    // filled, not from Postgres (the cache's format and key names are the same across this deploy).
    const firstFromC = new Map<number, unknown>()
    for (const r of results) if (r.upstream === 'c' && r.token < valid.length && !firstFromC.has(r.token)) firstFromC.set(r.token, r.body?.source)
    expect(firstFromC.size).toBe(valid.length)
    expect([...firstFromC.values()].every((source) => source === 'redis'), JSON.stringify([...firstFromC])).toBe(true)

    // The old instances: exit 0 (past the deadline close-with-grace exits 1), after telling the balancer (readiness 503
    // before the port closed).
    expect(aExit, a!.text().slice(-3000)).toEqual({ code: 0, signal: null })
    expect(bExit, b!.text().slice(-3000)).toEqual({ code: 0, signal: null })
    for (const [name, instance] of [['a', a!], ['b', b!]] as const) {
      const polls = lb.upstream(name)!.polls
      const firstNotReady = polls.indexOf(503)
      expect(firstNotReady, `${name} polls: ${polls.join(',')}`).toBeGreaterThan(0)
      expect(polls.slice(firstNotReady).every((p) => p !== 200)).toBe(true)
      const logs = instance.logs()
      const drains = logs.filter((l) => String(l.msg).startsWith('drain complete'))
      expect(drains, name).toHaveLength(1)
      // The balancer stopped sending before the listener closed: nothing was turned away.
      expect(drains[0]).toMatchObject({ level: 30, turnedAway: 0 })
      expect(logs.filter((l) => typeof l.level === 'number' && l.level >= 50), name).toEqual([])
    }
    c.signal('SIGTERM')
    expect(await c.exit(SHUTDOWN_TIMEOUT_MS)).toEqual({ code: 0, signal: null })
  }, 240_000)
})
