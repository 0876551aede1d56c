import { Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { clusterWaits, startRedisCluster, type RedisCluster, type RedisClusterOptions } from '../support/redis-cluster.js'
import { parseInfo, redisCommand } from '../support/redis-process.js'
import { sentinelWaits, startSentinelTopology, type SentinelTopology, type SentinelTopologyOptions } from '../support/redis-sentinel.js'

/**
 * The Sentinel and Cluster harnesses themselves, against real redis-server processes on loopback: what they report
 * is what Redis and ioredis see. The tests in each block share one topology and run in order.
 */

/** ROLE of a node: 'master', or 'slave' with the port it replicates from. */
async function roleOf(port: number): Promise<{ role: string; masterPort?: number }> {
  const reply = (await redisCommand(port, ['ROLE'])) as unknown[]
  return reply[0] === 'slave' ? { role: 'slave', masterPort: Number(reply[2]) } : { role: String(reply[0]) }
}

/** The port of the node an ioredis client is connected to. */
async function connectedPort(client: Redis): Promise<number> {
  return Number(parseInfo(await client.info('server')).tcp_port)
}

describe('Sentinel topology', () => {
  const options: SentinelTopologyOptions = { replicas: 1, sentinels: 3, downAfterMs: 1000, failoverTimeoutMs: 3000 }
  const waits = sentinelWaits(options)
  let topology: SentinelTopology
  const clients: Redis[] = []
  /** ioredis in sentinel mode, as the service connects; follows +switch-master with failoverDetector. */
  async function sentinelClient(extra: { failoverDetector?: boolean } = {}): Promise<Redis> {
    const client = new Redis({
      sentinels: topology.sentinels,
      name: topology.masterName,
      enableOfflineQueue: false,
      lazyConnect: true,
      connectTimeout: 1000,
      ...extra,
    })
    client.on('error', () => {})
    clients.push(client)
    await client.connect()
    return client
  }

  beforeAll(async () => {
    topology = await startSentinelTopology(options)
  }, waits.readyMs * 2)
  afterAll(async () => {
    clients.forEach((c) => c.disconnect())
    await topology?.close()
  })

  it('starts ready: the sentinels agree on the first master, which has its replica', async () => {
    expect(topology.sentinelsEnv).toBe(topology.sentinels.map((s) => `${s.host}:${s.port}`).join(','))
    expect(topology.nodes).toHaveLength(2)
    const master = await topology.master()
    expect(master).toEqual({ host: '127.0.0.1', port: topology.nodes[0]!.port })
    expect(await roleOf(topology.nodes[1]!.port)).toEqual({ role: 'slave', masterPort: master.port })
    for (const sentinel of topology.sentinels) {
      const others = (await redisCommand(sentinel.port, ['SENTINEL', 'SENTINELS', topology.masterName])) as unknown[]
      expect(others).toHaveLength(2)
    }
  })

  it('fails over on SENTINEL FAILOVER: a key written through ioredis is on the new master, the old one is its replica', async () => {
    const client = await sentinelClient({ failoverDetector: true })
    await client.set('harness:before', 'v1')
    expect(await client.wait(1, 2000)).toBe(1)

    const { from, to } = await topology.failover()
    expect(from).toBe(topology.nodes[0]!.port)
    expect(to).toBe(topology.nodes[1]!.port)
    expect(await topology.master()).toEqual({ host: '127.0.0.1', port: to })
    expect(await redisCommand(to, ['GET', 'harness:before'])).toBe('v1')
    expect(await roleOf(to)).toEqual({ role: 'master' })
    expect(await roleOf(from)).toEqual({ role: 'slave', masterPort: to })

    // A client that listens to the sentinels has moved to the new master; a new one connects there.
    expect(await connectedPort(client)).toBe(to)
    await client.set('harness:after', 'v2')
    expect(await connectedPort(await sentinelClient())).toBe(to)
  }, waits.failoverMs + 5000)

  it('elects a new master when the master is killed; restarted, the old master comes back as a replica', async () => {
    await topology.waitForReplicasInSync()
    const { port: killed } = await topology.master()
    const [survivor] = topology.nodes.filter((n) => n.port !== killed)
    const client = await sentinelClient()
    await client.set('harness:before-kill', 'v3')
    expect(await client.wait(1, 2000)).toBe(1)

    await topology.kill(killed)
    const next = await topology.waitForNewMaster(killed)
    expect(next.port).toBe(survivor!.port)
    for (const [key, value] of [['harness:before', 'v1'], ['harness:after', 'v2'], ['harness:before-kill', 'v3']]) {
      expect(await redisCommand(next.port, ['GET', key!])).toBe(value)
    }

    await topology.restart(killed)
    expect(await roleOf(killed)).toEqual({ role: 'slave', masterPort: next.port })
    await topology.waitForReplicasInSync()
    expect(await redisCommand(killed, ['GET', 'harness:before-kill'])).toBe('v3')
  }, waits.newMasterMs + waits.readyMs * 2)
})

describe('Redis Cluster', () => {
  const options: RedisClusterOptions = { masters: 3, replicasPerMaster: 1, nodeTimeoutMs: 1000 }
  const waits = clusterWaits(options)
  let cluster: RedisCluster
  let client: Cluster
  const keys = Array.from({ length: 300 }, (_, i) => `harness:${i}`)
  /** The master that holds a key's slot, from the cluster's own answer. */
  const slotOf = (key: string) => client.cluster('KEYSLOT', key)

  beforeAll(async () => {
    cluster = await startRedisCluster(options)
    client = new Cluster(
      cluster.nodesEnv.split(',').map((address) => ({ host: '127.0.0.1', port: Number(address.split(':')[1]) })),
      { redisOptions: { connectTimeout: 1000 } },
    )
    client.on('error', () => {})
  }, waits.readyMs * 2)
  afterAll(async () => {
    client?.disconnect()
    await cluster?.close()
  })

  async function expectAllKeys(through: Cluster = client): Promise<void> {
    const values = await Promise.all(keys.map((key) => through.get(key)))
    expect(values).toEqual(keys)
  }

  it('starts healthy: 3 masters own all 16384 slots, keys spread across them', async () => {
    expect(cluster.nodes).toHaveLength(6)
    const masters = await cluster.masters()
    expect(masters).toHaveLength(3)
    expect(masters.reduce((n, m) => n + m.slots, 0)).toBe(16384)
    await Promise.all(keys.map((key) => client.set(key, key)))
    const slots = new Set(await Promise.all(keys.slice(0, 50).map(slotOf)))
    expect(slots.size).toBeGreaterThan(10)
    await expectAllKeys()
  })

  it('reshards 1000 slots while ioredis keeps reading and writing', async () => {
    const before = await cluster.masters()
    let stop = false
    let ops = 0
    const errors: string[] = []
    const traffic = (async () => {
      while (!stop) {
        const key = keys[ops % keys.length]!
        try {
          await client.set(key, key)
          if ((await client.get(key)) !== key) errors.push(`${key}: wrong value`)
          ops++
        } catch (err) {
          errors.push(`${key}: ${(err as Error).message}`)
        }
      }
    })()
    let moved: { from: number; to: number }
    try {
      moved = await cluster.reshard({ slots: 1000 })
    } finally {
      stop = true
      await traffic
    }
    expect(errors).toEqual([])
    expect(ops).toBeGreaterThan(0)

    const after = await cluster.masters()
    const slotsOf = (masters: { port: number; slots: number }[], port: number) => masters.find((m) => m.port === port)?.slots ?? 0
    // By default from the master with the most slots to one with the fewest.
    expect(slotsOf(before, moved.from)).toBe(Math.max(...before.map((m) => m.slots)))
    expect(slotsOf(before, moved.to)).toBe(Math.min(...before.map((m) => m.slots)))
    expect(slotsOf(after, moved.from)).toBe(slotsOf(before, moved.from) - 1000)
    expect(slotsOf(after, moved.to)).toBe(slotsOf(before, moved.to) + 1000)
    await expectAllKeys()
  }, waits.reshardMs + 5000)

  it('fails over a killed master: keys stay readable; restarted, it rejoins as a replica', async () => {
    await cluster.waitForHealthy()
    const [victim] = await cluster.masters()
    await cluster.kill(victim!.port)
    const successor = await cluster.waitForFailover(victim!.port)
    expect(successor.port).not.toBe(victim!.port)
    expect((await cluster.masters()).map((m) => m.port)).not.toContain(victim!.port)
    await expectAllKeys()

    await cluster.restart(victim!.port)
    await cluster.waitForHealthy()
    expect(await roleOf(victim!.port)).toEqual({ role: 'slave', masterPort: successor.port })
  }, waits.failoverMs + waits.readyMs + 5000)

  it('fails over a paused master; resumed, it becomes a replica', async () => {
    const [victim] = await cluster.masters()
    await cluster.pause(victim!.port)
    try {
      const successor = await cluster.waitForFailover(victim!.port)
      // Not through `client`: its connection to the paused node is open and a command sent there has no answer
      // until it resumes. A new client reads the slots from a live node.
      const fresh = new Cluster([{ host: '127.0.0.1', port: successor.port }], { redisOptions: { connectTimeout: 1000 } })
      fresh.on('error', () => {})
      try {
        await expectAllKeys(fresh)
      } finally {
        fresh.disconnect()
      }
      await cluster.resume(victim!.port)
      await cluster.waitForHealthy()
      expect(await roleOf(victim!.port)).toEqual({ role: 'slave', masterPort: successor.port })
    } finally {
      await cluster.resume(victim!.port).catch(() => {})
    }
  }, waits.failoverMs + waits.readyMs + 5000)
})
