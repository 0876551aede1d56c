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
 * Back on Redis as soon as the sentinels announce a new master (issue 18, part 1), with the service's DEFAULT settings
 * (BREAKER_RESET_TIMEOUT_MS 15 s): one master, one replica, three sentinels, two instances, real processes. And a
 * master switch whose new master lacks a revocation's write: only the replay makes the answers right (part 6).
 */
type Topology = Awaited<ReturnType<typeof startSentinelTopology>>
let topology: Topology
let db: TestDatabase
let a: TestApp
let b: TestApp
let urls: string[]

/** The bound issue 18 sets: hits from the new master within this long of the switch being announced. */
const RECOVERY_BOUND_MS = 2000

beforeAll(async () => {
  topology = await startSentinelTopology()
  db = await createTestDatabase()
  // Only what locates Redis: every breaker, timeout and retry setting is the default.
  const env = {
    REDIS_SENTINELS: topology.sentinelsEnv,
    REDIS_SENTINEL_MASTER_NAME: topology.masterName,
    REDIS_KEY_PREFIX: `ssc-recovery-${randomBytes(4).toString('hex')}:`,
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

async function lastAppliedId(app: TestApp): Promise<number> {
  const body = (await app.app.inject({ method: 'GET', url: '/metrics' })).body
  return Number(/^session_revocation_last_applied_id (\d+)/m.exec(body)?.[1] ?? 0)
}

function direct(port: number): Redis {
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null })
  client.on('error', () => undefined)
  return client
}

/** Resolves with Date.now() at the first +switch-master any sentinel publishes (what the service is told, too). */
async function switchAnnounced(): Promise<{ at: Promise<number>; close(): void }> {
  const watchers = topology.sentinels.map((s) => direct(s.port))
  let resolve!: (at: number) => void
  const at = new Promise<number>((r) => (resolve = r))
  for (const w of watchers) {
    await w.connect()
    await w.subscribe('+switch-master')
    w.on('message', () => resolve(Date.now()))
  }
  return { at, close: () => watchers.forEach((w) => w.disconnect()) }
}

async function warmed(count: number): Promise<TrafficSession[]> {
  const sessions: TrafficSession[] = []
  for (let i = 0; i < count; i++) sessions.push({ token: (await db.insertSession()).token })
  for (const s of sessions) for (const app of [a, b]) await app.validate(s.token)
  await Promise.all([a.settle(), b.settle()])
  return sessions
}

async function source(app: TestApp, token: string): Promise<string> {
  return (await app.validate(token)).json().source
}

async function replicaPort(): Promise<number> {
  const master = (await topology.master()).port
  return topology.nodes.map((n) => n.port).find((p) => p !== master)!
}

describe('Redis Sentinel, default settings: back on Redis when the new master is announced', () => {
  it(`the master killed under traffic: hits from the new master within ${RECOVERY_BOUND_MS} ms of +switch-master, on both instances`, async () => {
    expect(a.config.breaker.resetTimeoutMs).toBeGreaterThan(RECOVERY_BOUND_MS * 2)
    await topology.waitForReplicasInSync(30_000)
    const sessions = await warmed(20)
    for (const app of [a, b]) expect(await source(app, sessions[0]!.token)).toBe('redis')
    const announced = await switchAnnounced()
    const openAtSwitch: boolean[] = []
    void announced.at.then(() => openAtSwitch.push(a.app.internals.breaker.opened, b.app.internals.breaker.opened))
    // The warm-up's successes leave the breakers' rolling window first: the kill's failures then open both at once
    // (with the window full of successes, an instance can reach the switch without its breaker having opened).
    await new Promise((r) => setTimeout(r, a.config.breaker.rollingCountTimeoutMs))
    const old = await topology.master()
    await topology.kill(old.port)
    const traffic = startTraffic({ urls, sessions, clients: 16, maxMs: 60_000, boundMs: 5000 })
    try {
      // The disturbance: both breakers open (connections refused) before the sentinels have agreed on a new master.
      await eventually(() => a.app.internals.breaker.opened && b.app.internals.breaker.opened, 20_000, 'both breakers open')
      const switchedAt = await Promise.race([announced.at, new Promise<number>((_, no) => setTimeout(() => no(new Error('no +switch-master')), 30_000))])
      let hitAt: number | undefined
      while (Date.now() - switchedAt < a.config.breaker.resetTimeoutMs) {
        const sources = await Promise.all([a, b].map((app) => source(app, sessions[0]!.token)))
        if (sources.every((s) => s === 'redis')) {
          hitAt = Date.now()
          break
        }
        await new Promise((r) => setTimeout(r, 20))
      }
      const report = await traffic.stop()
      expect(hitAt, 'hits from the new master before the reset timeout').toBeDefined()
      console.warn(`sentinel recovery: both instances hit ${hitAt! - switchedAt} ms after +switch-master; ${report.requests} requests ${JSON.stringify(report.sources)}`)
      expect(openAtSwitch).toEqual([true, true])
      // On failure, what each instance did after the switch (ms from +switch-master).
      const timeline = [a, b]
        .map((app, i) =>
          app.logs
            .entries()
            .filter((e) => /breaker|recovery|switch|replay|ready again/.test(String(e.msg)) && Date.parse(String(e.time)) >= switchedAt - 3000)
            .map((e) => `${'ab'[i]} ${Date.parse(String(e.time)) - switchedAt} ${e.msg} ${e.err ? JSON.stringify(e.err) : ''}`)
            .join('\n'),
        )
        .join('\n')
      expect(hitAt! - switchedAt, timeline).toBeLessThan(RECOVERY_BOUND_MS)
      expect(report.wrong).toEqual([])
      expect(report.serverErrors).toEqual([])
      // A recovery probe closed the breakers, the switch's replay ran, and Redis is trusted again.
      for (const app of [a, b]) {
        expect(app.app.internals.breaker.closed).toBe(true)
        expect(app.app.internals.revocation.feed.trusted()).toBe(true)
        expect(app.logs.text()).toContain('redis recovery probe answered: closing the breaker before its reset timeout')
        expect(app.logs.text()).toContain('recent revocations replayed into the new master')
      }
    } finally {
      announced.close()
      await traffic.stop()
      await topology.restart(old.port)
    }
  }, 120_000)

  it('the new master lacks a revocation the old one had: the replay makes every answer right', async () => {
    await topology.waitForReplicasInSync(30_000)
    const master = direct((await topology.master()).port)
    const replica = direct(await replicaPort())
    await Promise.all([master.connect(), replica.connect()])
    try {
      const victim = await db.insertSession()
      const others = await warmed(5)
      for (const app of [a, b]) {
        expect((await app.validate(victim.token)).json()).toMatchObject({ valid: true })
        await app.settle()
        expect((await app.validate(victim.token)).json()).toMatchObject({ valid: true, source: 'redis' })
      }
      // What the replica holds before the revocation: every key of this deployment, with its remaining life.
      const keys = await master.keys(`${a.prefix}*`)
      const before = await Promise.all(keys.map(async (key) => ({ key, dump: await master.dumpBuffer(key), pttl: await master.pttl(key) })))
      const entry = a.keys.entry(hashToken(victim.token))
      expect(keys).toContain(entry)

      // The caller retries /invalidate on 503 until a 200, as the Studio's client does.
      let status = 0
      for (let i = 0; i < 50 && status !== 200; i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 200))
        status = (await a.invalidate({ sessionId: victim.sessionId, revoke: true })).statusCode
      }
      expect(status).toBe(200)
      // Both instances' feeds applied the revocation's outbox row too (each writes its tombstone again on the master):
      // one applied after the replica is doctored below would replicate over it and undo the disturbance.
      const { rows } = await db.query('SELECT max(id)::text AS id FROM $schema.session_cache_outbox')
      for (const app of [a, b]) await eventually(async () => (await lastAppliedId(app)) >= Number((rows[0] as { id: string }).id), 10_000, 'the outbox row applied')
      await topology.waitForReplicasInSync(10_000)
      // The revocation reached the replica (entry gone there too) ...
      await eventually(async () => (await replica.exists(entry)) === 0, 10_000, 'the revocation replicated')
      // ... and is taken back, as if replication had lost it: the replica gets its pre-revocation keys again.
      await replica.config('SET', 'replica-read-only', 'no')
      const now = await replica.keys(`${a.prefix}*`)
      if (now.length > 0) await replica.del(...now)
      for (const k of before) if (k.dump) await replica.restore(k.key, k.pttl > 0 ? k.pttl : 0, k.dump, 'REPLACE')
      await replica.config('SET', 'replica-read-only', 'yes')
      // The disturbance: the replica has the victim's valid entry, the master does not.
      expect(await replica.exists(entry)).toBe(1)
      expect(await master.exists(entry)).toBe(0)

      // Traffic on the other sessions only: a request for the victim answered from Postgres during the switch would
      // leave a negative fill over the stale entry, and the test could no longer tell whether the replay ran.
      const traffic = startTraffic({ urls, sessions: others, clients: 8, maxMs: 60_000, boundMs: 5000 })
      const announced = await switchAnnounced()
      const old = await topology.master()
      const promoted = await replicaPort()
      await topology.kill(old.port)
      try {
        const switchedAt = await Promise.race([announced.at, new Promise<number>((_, no) => setTimeout(() => no(new Error('no +switch-master')), 30_000))])
        const newMaster = await topology.waitForNewMaster(old.port, 20_000)
        expect(newMaster.port).toBe(promoted)
        // Back on Redis: the other sessions are hits from the new master on both instances ...
        await eventually(async () => (await Promise.all([a, b].map((app) => source(app, others[0]!.token)))).every((s) => s === 'redis'), 10_000, 'hits from the new master')
        console.warn(`sentinel lost write: hits ${Date.now() - switchedAt} ms after +switch-master`)
        // ... and the victim, asked now for the first time since the switch, is not valid on either (without the
        // replay, both answer valid:true from the entry the new master kept), nor held valid by the new master.
        for (const app of [a, b]) expect((await app.validate(victim.token)).json()).toEqual({ valid: false, reason: 'revoked' })
        const report = await traffic.stop()
        expect(report.wrong).toEqual([])
        expect(report.serverErrors).toEqual([])
        const onNew = direct(newMaster.port)
        await onNew.connect()
        const raw = await onNew.getBuffer(entry)
        onNew.disconnect()
        if (raw) expect(a.codec.decode(hashToken(victim.token), raw)).toMatchObject({ valid: false })
      } finally {
        announced.close()
        await traffic.stop()
        await topology.restart(old.port)
      }
    } finally {
      master.disconnect()
      replica.disconnect()
    }
  }, 120_000)

  it('a failover to a replica without the data is found cold and warmed again (CACHE_WARM_SESSIONS on)', async () => {
    await topology.waitForReplicasInSync(30_000)
    const sessions: Array<Awaited<ReturnType<typeof db.insertSession>>> = []
    for (let i = 0; i < 5; i++) sessions.push(await db.insertSession())
    const c = await startTestApp({
      db,
      env: {
        REDIS_SENTINELS: topology.sentinelsEnv,
        REDIS_SENTINEL_MASTER_NAME: topology.masterName,
        REDIS_KEY_PREFIX: `ssc-warm-${randomBytes(4).toString('hex')}:`,
        CACHE_WARM_SESSIONS: '1000',
      },
      inspect: { url: `redis://127.0.0.1:${(await topology.master()).port}` },
    })
    const runsDone = async () => Number(/^cache_warm_runs_total\{outcome="done"\} (\d+)/m.exec((await c.app.inject({ method: 'GET', url: '/metrics' })).body)?.[1])
    const master = direct((await topology.master()).port)
    const replica = direct(await replicaPort())
    await Promise.all([master.connect(), replica.connect()])
    try {
      await eventually(async () => (await runsDone()) === 1, 15_000, 'the first warming run done')
      const marker = `${c.prefix}warm:marker`
      const entry = c.keys.entry(hashToken(sessions[0]!.token))
      await eventually(async () => (await replica.exists(marker)) === 1 && (await replica.exists(entry)) === 1, 10_000, 'warmed data replicated')
      // The replica loses this deployment's keys (as one that resynced from nothing would): the new master is cold.
      await replica.config('SET', 'replica-read-only', 'no')
      await replica.del(...(await replica.keys(`${c.prefix}*`)))
      await replica.config('SET', 'replica-read-only', 'yes')
      expect(await replica.exists(marker)).toBe(0)
      const old = await topology.master()
      const promoted = await replicaPort()
      await topology.kill(old.port)
      try {
        const next = await topology.waitForNewMaster(old.port, 20_000)
        expect(next.port).toBe(promoted)
        await eventually(async () => (await runsDone()) === 2, 20_000, 'warmed again on the new master')
        // A new connection: the sentinels kill the promoted replica's client connections.
        const promotedNode = direct(next.port)
        await promotedNode.connect()
        expect(await promotedNode.exists(marker)).toBe(1)
        for (const s of sessions) expect(await promotedNode.exists(c.keys.entry(hashToken(s.token)))).toBe(1)
        promotedNode.disconnect()
        // Answered from the warmed master within the recovery bound (the switch's replay may still be landing).
        await expect
          .poll(async () => (await c.validate(sessions[0]!.token)).json(), { timeout: 2000, interval: 50 })
          .toMatchObject({ valid: true, source: 'redis' })
      } finally {
        await topology.restart(old.port)
      }
    } finally {
      master.disconnect()
      replica.disconnect()
      await c.close()
    }
  }, 120_000)
})
