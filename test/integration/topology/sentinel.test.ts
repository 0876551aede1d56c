import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashToken } from '../../../src/domain/token.js'
import { startTestApp, type TestApp } from '../../support/app.js'
import { createTestDatabase, type TestDatabase } from '../../support/database.js'
import { eventually } from '../../support/gate.js'
import { startSentinelTopology } from '../../support/redis-sentinel.js'
import { startTraffic, type TrafficSession } from '../../support/traffic.js'

/**
 * Sentinel: one master, one replica, three sentinels, all real processes on loopback. Two instances of the service
 * share it and one Postgres schema, under continuous keep-alive traffic of valid and revoked tokens, while the master
 * is failed over, killed, or hung. Nothing may be answered wrong, nothing may be a 5xx (Postgres answers while Redis
 * cannot), no request may wait past the configured budget, and hits must come back from the new master.
 */
type Topology = Awaited<ReturnType<typeof startSentinelTopology>>
let topology: Topology
let db: TestDatabase
let a: TestApp
let b: TestApp
let urls: string[]

const ENV = {
  REDIS_COMMAND_TIMEOUT_MS: '200',
  REDIS_CONNECT_TIMEOUT_MS: '500',
  BREAKER_RESET_TIMEOUT_MS: '500',
  BREAKER_TIMEOUT_MS: '300',
  REDIS_WAIT_REPLICAS: '1',
  REDIS_WAIT_TIMEOUT_MS: '200',
}

beforeAll(async () => {
  topology = await startSentinelTopology()
  db = await createTestDatabase()
  const env = {
    ...ENV,
    REDIS_SENTINELS: topology.sentinelsEnv,
    REDIS_SENTINEL_MASTER_NAME: topology.masterName,
    REDIS_KEY_PREFIX: `ssc-sentinel-${randomBytes(4).toString('hex')}:`,
  }
  a = await startTestApp({ db, env })
  b = await startTestApp({ db, env, inspect: { url: `redis://127.0.0.1:${(await topology.master()).port}` } })
  urls = []
  for (const app of [a, b]) urls.push(await app.app.listen({ host: '127.0.0.1', port: 0 }))
}, 60_000)

afterAll(async () => {
  await a?.close()
  await b?.close()
  await topology?.close()
  await db?.drop()
})

/** What one request may take while Redis fails over: a connect attempt, a command, and a Postgres read. */
function budgetMs(app: TestApp): number {
  const { redis, database } = app.config
  return redis.connectTimeoutMs + redis.commandTimeoutMs + database.statementTimeoutMs
}

async function workload(valid = 20, revoked = 10): Promise<TrafficSession[]> {
  const sessions: TrafficSession[] = []
  for (let i = 0; i < valid; i++) sessions.push({ token: (await db.insertSession()).token })
  for (let i = 0; i < revoked; i++) sessions.push({ token: (await db.insertSession({ revoked: true })).token, revokedAt: 0 })
  // Warm: every token answered once on each instance, so Redis holds them before the disturbance.
  for (const s of sessions) for (const app of [a, b]) await app.validate(s.token)
  await Promise.all([a.settle(), b.settle()])
  return sessions
}

async function caughtUp(app: TestApp): Promise<number> {
  const body = (await app.app.inject({ method: 'GET', url: '/metrics' })).body
  return Number(/^session_revocation_events_applied_total\{path="catchup"\} (\d+)/m.exec(body)?.[1] ?? 0)
}

async function failovers(app: TestApp): Promise<number> {
  const body = (await app.app.inject({ method: 'GET', url: '/metrics' })).body
  return Number(/^redis_failovers_total (\d+)/m.exec(body)?.[1] ?? 0)
}

async function newMasterHas(key: string): Promise<boolean> {
  const { port } = await topology.master()
  const direct = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    await direct.connect()
    return (await direct.exists(key)) === 1
  } finally {
    direct.disconnect()
  }
}

describe('Redis Sentinel: failover under traffic', () => {
  const disturbances: Array<[string, () => Promise<void>]> = [
    ['a planned failover (SENTINEL FAILOVER)', async () => void (await topology.failover())],
    ['the master killed (SIGKILL)', async () => {
      const old = await topology.master()
      await topology.kill(old.port)
      await topology.waitForNewMaster(old.port, 20_000)
      await topology.restart(old.port)
    }],
    ['the master hung (SIGSTOP until the sentinels elect another, then SIGCONT)', async () => {
      const old = await topology.master()
      await topology.pause(old.port)
      // Hung for as long as the election takes (down-after, vote, promotion): a fixed pause could end before a busy
      // machine's sentinels have agreed, and then there is no failover to test.
      try {
        await topology.waitForNewMaster(old.port, 20_000)
      } finally {
        await topology.resume(old.port)
      }
    }],
  ]
  it.each(disturbances)('%s: 0 wrong answers, 0 5xx, none past the budget, hits back from the new master', async (_what, disturb) => {
    const sessions = await workload()
    // One session revoked in SQL while the failover happens, and one through /invalidate, each under the 5 s bound.
    const viaSql = await db.insertSession()
    const viaApi = await db.insertSession()
    const victims: TrafficSession[] = [{ token: viaSql.token }, { token: viaApi.token }]
    sessions.push(...victims)
    const failoversBefore = await Promise.all([a, b].map(failovers))
    const caughtUpBefore = await Promise.all([a, b].map(caughtUp))
    const traffic = startTraffic({ urls, sessions, clients: 16, maxMs: 60_000, boundMs: 5000 })
    await new Promise((r) => setTimeout(r, 500))
    const disturbing = disturb()
    for (const v of victims) v.endingFrom = Date.now()
    await db.query('UPDATE $schema.user_sessions SET revoked_at = now() WHERE id = $1', [viaSql.sessionId])
    victims[0]!.revokedAt = Date.now()
    // The caller retries /invalidate on 503 until a 200, as the Studio's client does.
    const deadline = Date.now() + 20_000
    let status = 0
    while (Date.now() < deadline && status !== 200) {
      status = (await a.invalidate({ sessionId: viaApi.sessionId, revoke: true })).statusCode
      if (status !== 200) await new Promise((r) => setTimeout(r, 200))
    }
    expect(status).toBe(200)
    victims[1]!.revokedAt = Date.now()
    await disturbing
    const settledAt = Date.now()
    // Both instances heard the sentinels announce the switch (and replayed recent revocations into the new master).
    for (const [i, app] of [a, b].entries()) {
      await eventually(async () => (await failovers(app)) > failoversBefore[i]!, 10_000, 'switch noticed')
      await eventually(() => app.app.internals.revocation.feed.trusted(), 10_000, 'replay done')
      // The replay re-applied the recent outbox rows (the two revoked above at least), counted as a catch-up.
      expect(await caughtUp(app)).toBeGreaterThan(caughtUpBefore[i]!)
    }
    // Hits from Redis again within seconds, on both instances (the replay lands, the breaker closes).
    await eventually(async () => {
      const answers = await Promise.all([a, b].map((app) => app.validate(sessions[0]!.token).then((r) => r.json().source)))
      return answers.every((source) => source === 'redis')
    }, 15_000, 'hits from the new master')
    await new Promise((r) => setTimeout(r, 500))
    const report = await traffic.stop()
    expect(report.wrong).toEqual([])
    expect(report.serverErrors).toEqual([])
    expect(report.slowestMs).toBeLessThan(budgetMs(a))
    expect(report.redisAnswersAfter(settledAt)).toBeGreaterThan(0)
    // Fills land on the new master: a token never seen before is written there (a resumed old master can still
    // open the breaker once while the sentinels demote it: fresh tokens are tried for a breaker reset or two).
    const { resetTimeoutMs } = a.config.breaker
    await eventually(async () => {
      const fresh = await db.insertSession()
      await a.validate(fresh.token)
      await a.settle()
      return newMasterHas(a.keys.entry(hashToken(fresh.token)))
    }, resetTimeoutMs * 4 + 5000, 'a fill on the new master')
    // The two revoked mid-failover are not valid anywhere, and no valid entry of theirs is on the new master.
    for (const v of victims) for (const app of [a, b]) expect((await app.validate(v.token)).json().valid).toBe(false)
    console.warn(`sentinel "${_what}": ${report.requests} requests, sources ${JSON.stringify(report.sources)}, slowest ${report.slowestMs} ms`)
  })

  it('/health/redis names the topology and the current master with its replica', async () => {
    await topology.waitForReplicasInSync(30_000)
    const master = await topology.master()
    await eventually(async () => {
      const body = (await a.app.inject({ method: 'GET', url: '/health/redis' })).json()
      return body.redis.topology?.masters?.[0]?.address === `127.0.0.1:${master.port}` && body.redis.topology.masters[0].connectedReplicas >= 1
    }, 15_000, 'health shows the master and its replica')
    const body = (await a.app.inject({ method: 'GET', url: '/health/redis' })).json()
    expect(body.redis.topology.kind).toBe('sentinel')
    expect(body.redis.topology.masters[0].role).toBe('master')
    const metrics = (await a.app.inject({ method: 'GET', url: '/metrics' })).body
    expect(metrics).toMatch(/^redis_topology_info\{kind="sentinel"\} 1$/m)
    expect(metrics).toMatch(/^redis_connected_replicas\{master="127\.0\.0\.1:\d+"\} 1$/m)
  })
})
