import { randomBytes, randomUUID } from 'node:crypto'
import { Cluster } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { keyScheme } from '../../../src/cache/keys.js'
import { defineCacheScripts } from '../../../src/cache/redis-session-cache.js'
import { hashToken } from '../../../src/domain/token.js'
import { startTestApp, type TestApp } from '../../support/app.js'
import { createTestDatabase, type TestDatabase } from '../../support/database.js'
import { eventually } from '../../support/gate.js'
import { redisCacheUnderTest } from '../../support/redis-cache.js'
import { startRedisCluster } from '../../support/redis-cluster.js'
import { startTraffic, type TrafficSession } from '../../support/traffic.js'
import { sessionCacheContract } from '../../contract/session-cache.contract.js'

/**
 * Redis Cluster: three masters and three replicas, real processes on loopback, made with redis-cli --cluster create.
 * The cache contract and the service's core run against it; invalidation spans slots; 1000 slots are resharded and a
 * master is killed under continuous keep-alive traffic: no wrong answer, no 5xx.
 */
let cluster: Awaited<ReturnType<typeof startRedisCluster>>
let db: TestDatabase
let a: TestApp
let b: TestApp
let urls: string[]

const nodes = () => cluster.nodesEnv.split(',').map((hp) => ({ host: hp.split(':')[0]!, port: Number(hp.split(':')[1]) }))

beforeAll(async () => {
  cluster = await startRedisCluster()
  db = await createTestDatabase()
  const env = {
    REDIS_CLUSTER_NODES: cluster.nodesEnv,
    REDIS_KEY_PREFIX: `ssc-cluster-${randomBytes(4).toString('hex')}:`,
    REDIS_COMMAND_TIMEOUT_MS: '300',
    REDIS_CONNECT_TIMEOUT_MS: '1000',
    BREAKER_RESET_TIMEOUT_MS: '500',
    REDIS_POOL_MIN: '1',
    REDIS_POOL_MAX: '2',
  }
  a = await startTestApp({ db, env, redisUrl: 'redis://127.0.0.1:1', inspect: { url: `redis://127.0.0.1:${nodes()[0]!.port}` } })
  b = await startTestApp({ db, env, redisUrl: 'redis://127.0.0.1:1' })
  urls = []
  for (const app of [a, b]) urls.push(await app.app.listen({ host: '127.0.0.1', port: 0 }))
}, 90_000)

afterAll(async () => {
  await a?.close()
  await b?.close()
  await cluster?.close()
  await db?.drop()
})

/** A direct Cluster client for inspecting what the service wrote. */
async function inspect<T>(work: (c: Cluster) => Promise<T>): Promise<T> {
  const direct = new Cluster(nodes(), { lazyConnect: true })
  try {
    await direct.connect()
    return await work(direct)
  } finally {
    direct.disconnect()
  }
}

sessionCacheContract('Redis Cluster (pool + breaker + scripts, hash-tagged keys)', (tombstoneTtlMs) =>
  redisCacheUnderTest('redis://127.0.0.1:1', tombstoneTtlMs, { kind: 'cluster', nodes: nodes() }),
)

describe('the service on a Redis Cluster', () => {
  it('validates from Postgres, then from Redis; /invalidate by user drops sessions that live on different slots', async () => {
    const userId = await db.insertUser()
    const sessions = await Promise.all(Array.from({ length: 6 }, () => db.insertSession({ userId })))
    const keys = keyScheme(a.prefix)
    const slots = new Set(
      await inspect((c) => Promise.all(sessions.map((s) => c.call('CLUSTER', 'KEYSLOT', keys.entry(hashToken(s.token))) as Promise<number>))),
    )
    expect(slots.size).toBeGreaterThan(1)
    for (const s of sessions) {
      expect((await a.validate(s.token)).json()).toMatchObject({ valid: true, source: 'postgres' })
    }
    await a.settle()
    for (const s of sessions) expect((await b.validate(s.token)).json()).toMatchObject({ valid: true, source: 'redis' })
    expect((await b.invalidate({ userId, revoke: true })).json()).toEqual({ invalidated: 6, revoked: 6 })
    for (const s of sessions) {
      for (const app of [a, b]) expect((await app.validate(s.token)).json()).toEqual({ valid: false, reason: 'revoked' })
    }
    await a.settle()
    const left = await inspect((c) => Promise.all(sessions.map((s) => c.getBuffer(keys.entry(hashToken(s.token))))))
    // Nothing valid is left: an entry is gone, or holds the "revoked" answer of a later read.
    left.forEach((raw, i) => {
      if (raw !== null) expect(a.codec.decode(hashToken(sessions[i]!.token), raw)?.valid).not.toBe(true)
    })
  })

  it('a fill whose index claims landed before an invalidation by user cannot write its entry after it (the ordering)', async () => {
    const keys = keyScheme(a.prefix)
    const userId = randomUUID()
    const sessionId = randomUUID()
    const hash = hashToken(`race-${randomUUID()}`)
    type Scripted = Cluster & {
      sscClaim(t: string, i: string, k: string, member: Buffer, ttl: number): Promise<number>
      sscFill(e: string, t: string, v: string, ttl: number): Promise<number>
    }
    await inspect(async (raw) => {
      defineCacheScripts(raw)
      const c = raw as Scripted
      // The fill's step 1: both claims land (no tombstone yet).
      expect(await c.sscClaim(keys.sessionTombstone(sessionId), keys.sessionIndex(sessionId), 'sid', keys.indexMember(hash), 60_000)).toBe(1)
      expect(await c.sscClaim(keys.userTombstone(userId), keys.userIndex(userId), 'ui', keys.indexMember(hash), 60_000)).toBe(1)
      // The invalidation runs completely between the fill's two steps.
      expect((await a.invalidate({ userId })).statusCode).toBe(200)
      // The fill's step 2 meets the token's tombstone: nothing is written.
      expect(await c.sscFill(keys.entry(hash), keys.tokenTombstone(hash), 'any value', 60_000)).toBe(0)
      expect(await c.exists(keys.entry(hash))).toBe(0)
      // And a claim after the invalidation is refused at once.
      expect(await c.sscClaim(keys.userTombstone(userId), keys.userIndex(userId), 'ui', keys.indexMember(hashToken('later')), 60_000)).toBe(0)
    })
  })

  it('resharding 1000 slots and then killing a master under traffic: no wrong answer, no 5xx', async () => {
    const sessions: TrafficSession[] = []
    for (let i = 0; i < 20; i++) sessions.push({ token: (await db.insertSession()).token })
    for (let i = 0; i < 10; i++) sessions.push({ token: (await db.insertSession({ revoked: true })).token, revokedAt: 0 })
    for (const s of sessions) for (const app of [a, b]) await app.validate(s.token)
    await Promise.all([a.settle(), b.settle()])
    const traffic = startTraffic({ urls, sessions, clients: 12, maxMs: 120_000, boundMs: 5000 })
    await cluster.reshard({ slots: 1000 })
    const masters = await cluster.masters()
    const victim = masters[0]!.port
    await cluster.kill(victim)
    await cluster.waitForFailover(victim, 30_000)
    const after = Date.now()
    // Each instance noticed the new master (its slot map refreshes every second) and replayed recent revocations.
    for (const app of [a, b]) {
      await eventually(async () => /^redis_failovers_total [1-9]/m.test((await app.app.inject({ method: 'GET', url: '/metrics' })).body), 10_000, 'failover noticed')
      await eventually(() => app.app.internals.revocation.feed.trusted(), 10_000, 'replay done')
    }
    await eventually(async () => (await a.validate(sessions[0]!.token)).json().source === 'redis', 20_000, 'hits back')
    await new Promise((r) => setTimeout(r, 500))
    const report = await traffic.stop()
    expect(report.wrong).toEqual([])
    expect(report.serverErrors).toEqual([])
    expect(report.redisAnswersAfter(after)).toBeGreaterThan(0)
    const metrics = (await a.app.inject({ method: 'GET', url: '/metrics' })).body
    expect(metrics).toMatch(/^redis_topology_info\{kind="cluster"\} 1$/m)
    console.warn(`cluster: ${report.requests} requests, sources ${JSON.stringify(report.sources)}, slowest ${report.slowestMs} ms; ` +
      `${/^redis_redirections_total\{kind="moved"\} (\d+)/m.exec(metrics)?.[1]} MOVED, failovers ${/^redis_failovers_total (\d+)/m.exec(metrics)?.[1]}`)
  })
})
