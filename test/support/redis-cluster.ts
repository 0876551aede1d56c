import type { ChildProcess } from 'node:child_process'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { REDIS_CLI_BIN, REDIS_SERVER_BIN } from './env.js'
import {
  Reaper,
  RedisExitedError,
  RedisProcess,
  freePorts,
  parseInfo,
  redisCommand,
  replicaAuthArgs,
  runTool,
  waitFor,
  type RedisAuth,
} from './redis-process.js'

export interface RedisClusterOptions {
  /** Masters (default 3, the least redis-cli creates a cluster with). */
  masters?: number
  /** Replicas of each master (default 1). */
  replicasPerMaster?: number
  /** Extra redis-server arguments for every node, e.g. ['--aclfile', file]. */
  args?: string[]
  /** Credentials the nodes require (set up through `args`): used by the harness, redis-cli and replicas. */
  auth?: RedisAuth
  /** cluster-node-timeout (default 1000). */
  nodeTimeoutMs?: number
  /** Longest wait for one node to answer after a (re)start (default 10 s). */
  startTimeoutMs?: number
  /** Longest wait for the cluster to be healthy after create, and the default of waitForHealthy (default 30 s). */
  readyTimeoutMs?: number
}

export const CLUSTER_SLOTS = 16384
/** The cluster bus listens on the node's port + 10000. */
const BUS_OFFSET = 10_000

/** One line of CLUSTER NODES. */
export interface ClusterNodeEntry {
  id: string
  port: number
  flags: string[]
  masterId: string | undefined
  linkState: string
  /** Slot ranges owned, e.g. [[0, 5460]]. */
  ranges: [number, number][]
  /** An [slot->-id] or [slot-<-id] marker: a slot being migrated. */
  migrating: boolean
}

export function parseClusterNodes(text: unknown): ClusterNodeEntry[] {
  return String(text)
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const [id = '', address = '', flags = '', master = '-', , , , linkState = '', ...slots] = line.trim().split(' ')
      const ranges: [number, number][] = []
      let migrating = false
      for (const slot of slots) {
        if (slot.startsWith('[')) migrating = true
        else {
          const [a, b] = slot.split('-').map(Number)
          ranges.push([a!, b ?? a!])
        }
      }
      return {
        id,
        port: Number(/:(\d+)@/.exec(address)?.[1] ?? 0),
        flags: flags.split(','),
        masterId: master === '-' ? undefined : master,
        linkState,
        ranges,
        migrating,
      }
    })
}

const slotCount = (ranges: [number, number][]) => ranges.reduce((n, [a, b]) => n + b - a + 1, 0)
const isMaster = (node: ClusterNodeEntry) => node.flags.includes('master')
const isFailed = (node: ClusterNodeEntry) => node.flags.some((f) => f === 'fail' || f === 'fail?' || f === 'noaddr' || f === 'handshake')

/** The cluster as every live node sees it, once they agree. */
interface ClusterView {
  nodes: ClusterNodeEntry[]
  masters: { port: number; id: string; slots: number; ranges: [number, number][] }[]
  replicas: { port: number; id: string; masterPort: number }[]
}

/**
 * The longest waits the cluster uses by default, from its options (tests size their own timeouts with these).
 * `failoverMs`: PFAIL after node-timeout, FAIL once a majority of masters agree (gossip), then the replica waits
 * 500 ms + up to 500 ms + its rank × 1 s and asks for votes; a failed election is retried after 2 × node-timeout.
 * Generous, for a loaded machine.
 */
export function clusterWaits(options: RedisClusterOptions = {}) {
  const nodeTimeoutMs = options.nodeTimeoutMs ?? 1000
  const readyMs = options.readyTimeoutMs ?? 30_000
  return { readyMs, failoverMs: nodeTimeoutMs * 10 + 15_000, reshardMs: readyMs * 2 }
}

/**
 * A Redis Cluster on loopback: `masters` masters with `replicasPerMaster` replicas each, every node its own
 * redis-server process with its nodes.conf in a temp dir (so a restarted node rejoins with its identity), created with
 * `redis-cli --cluster create`. Returns once the cluster is healthy. Every process is SIGKILLed on close() and on
 * exit of the test process.
 */
export async function startRedisCluster(options: RedisClusterOptions = {}) {
  // Ports are free when picked, not reserved: if a node exits at start (its port was taken), start again.
  for (let attempt = 1; ; attempt++) {
    try {
      return await launchRedisCluster(options)
    } catch (err) {
      if (!(err instanceof RedisExitedError) || attempt >= 3) throw err
    }
  }
}

async function launchRedisCluster(options: RedisClusterOptions) {
  const masterCount = options.masters ?? 3
  const replicasPerMaster = options.replicasPerMaster ?? 1
  const nodeTimeoutMs = options.nodeTimeoutMs ?? 1000
  const startTimeoutMs = options.startTimeoutMs ?? 10_000
  const auth = options.auth
  if (masterCount < 3) throw new Error('redis-cli --cluster create needs at least 3 masters')
  const waits = clusterWaits(options)
  const readyTimeoutMs = waits.readyMs

  const ports = await freePorts(masterCount * (1 + replicasPerMaster), { busOffset: BUS_OFFSET })
  const root = await mkdtemp(path.join(tmpdir(), 'ssc-cluster-'))
  const procs = new Map<number, RedisProcess>()
  const tools = new Set<ChildProcess>()
  const reaper = new Reaper(root)
  const killOnExit = () => reaper.killNow()
  process.once('exit', killOnExit)
  let closed = false
  /** For a master that was killed or paused: its slots then, so waitForFailover can tell who took them. */
  const downMasters = new Map<number, { id: string; ranges: [number, number][] }>()

  const ask = (port: number, args: (string | number)[]) => redisCommand(port, args, { auth })
  const cliAuth = auth
    ? [...(auth.username ? ['--user', auth.username] : []), '-a', auth.password, '--no-auth-warning']
    : []

  for (const port of ports) {
    const dir = path.join(root, `node-${port}`)
    await mkdir(dir)
    const command = () => ({
      bin: REDIS_SERVER_BIN,
      args: [
        '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
        '--cluster-enabled', 'yes',
        '--cluster-config-file', path.join(dir, `nodes-${port}.conf`),
        '--cluster-node-timeout', String(nodeTimeoutMs),
        // A replica fails over however long it has been cut off from its master (a paused master, a loaded
        // machine): the default (10) makes one that has been cut off for over ~20 s refuse, and the cluster stays down.
        '--cluster-replica-validity-factor', '0',
        '--cluster-allow-reads-when-down', 'no',
        // 7.0 waits 5 s for more replicas before a diskless full sync: none will come, start at once.
        '--repl-diskless-sync-delay', '0',
        ...replicaAuthArgs(auth),
        ...(options.args ?? []),
      ],
    })
    procs.set(port, new RedisProcess('redis-server (cluster)', port, command, { auth, startTimeoutMs, reaper }))
  }

  function proc(port: number): RedisProcess {
    const found = procs.get(port)
    if (!found) throw new Error(`port ${port} is not a node of this cluster`)
    return found
  }
  const live = () => [...procs.values()].filter((p) => p.live)

  /**
   * The view every live node agrees on, with cluster_state:ok and all slots served everywhere, no slot being
   * migrated, no live node flagged failing and every live replica's link up. With `replicas`, while every node is
   * live, each master with slots also has its `replicasPerMaster` replicas. Throws the first thing that is not so.
   */
  async function checkCluster(requireReplicas: boolean): Promise<ClusterView> {
    const nodes = live()
    if (nodes.length === 0) throw new Error('no live node')
    const livePorts = new Set(nodes.map((n) => n.port))
    let agreed: { signature: string; view: ClusterView } | undefined
    for (const node of nodes) {
      const info = parseInfo(await ask(node.port, ['CLUSTER', 'INFO']))
      if (info.cluster_state !== 'ok' || Number(info.cluster_slots_ok) !== CLUSTER_SLOTS) {
        throw new Error(`${node.port}: cluster_state ${info.cluster_state}, slots ok ${info.cluster_slots_ok}`)
      }
      const entries = parseClusterNodes(await ask(node.port, ['CLUSTER', 'NODES']))
      for (const entry of entries) {
        if (entry.migrating) throw new Error(`${node.port} sees a slot of ${entry.port} being migrated`)
        if (livePorts.has(entry.port) && (isFailed(entry) || entry.linkState !== 'connected')) {
          throw new Error(`${node.port} sees ${entry.port} as ${entry.flags.join(',')} ${entry.linkState}`)
        }
      }
      const portOf = new Map(entries.map((e) => [e.id, e.port]))
      const view: ClusterView = {
        nodes: entries,
        masters: entries
          .filter((e) => isMaster(e) && !isFailed(e) && e.ranges.length > 0)
          .map((e) => ({ port: e.port, id: e.id, slots: slotCount(e.ranges), ranges: e.ranges }))
          .sort((a, b) => a.port - b.port),
        replicas: entries
          .filter((e) => !isMaster(e) && livePorts.has(e.port) && e.masterId !== undefined)
          .map((e) => ({ port: e.port, id: e.id, masterPort: portOf.get(e.masterId!) ?? 0 }))
          .sort((a, b) => a.port - b.port),
      }
      const signature = JSON.stringify([view.masters, view.replicas])
      if (agreed && agreed.signature !== signature) throw new Error(`${node.port} and ${nodes[0]!.port} do not agree on the cluster`)
      agreed ??= { signature, view }
    }
    const view = agreed!.view
    const slotOwners = new Set(view.masters.map((m) => m.port))
    for (const port of livePorts) {
      // A master that was failed over comes back as a master without slots until it hears of its successor.
      if (downMasters.has(port) && !slotOwners.has(port) && !view.replicas.some((r) => r.port === port)) {
        throw new Error(`${port} (failed over) is not a replica yet`)
      }
    }
    for (const replica of view.replicas) {
      if (!slotOwners.has(replica.masterPort)) throw new Error(`replica ${replica.port} follows ${replica.masterPort}, which has no slots`)
      const repl = parseInfo(await ask(replica.port, ['INFO', 'replication']))
      if (repl.master_link_status !== 'up') throw new Error(`replica ${replica.port}: link ${repl.master_link_status}`)
    }
    if (requireReplicas && livePorts.size === procs.size) {
      for (const master of view.masters) {
        const count = view.replicas.filter((r) => r.masterPort === master.port).length
        if (count < replicasPerMaster) throw new Error(`master ${master.port} has ${count} of ${replicasPerMaster} replicas`)
      }
    }
    return view
  }

  /** CLUSTER NODES from the first live node that answers. */
  async function currentNodes(): Promise<ClusterNodeEntry[]> {
    const errors: string[] = []
    for (const node of live()) {
      try {
        return parseClusterNodes(await ask(node.port, ['CLUSTER', 'NODES']))
      } catch (err) {
        errors.push(`${node.port}: ${(err as Error).message}`)
      }
    }
    throw new Error(`no node answers CLUSTER NODES (${errors.join('; ') || 'none live'})`)
  }

  /** Before a master goes down: what it owns, for waitForFailover. */
  async function rememberIfMaster(port: number): Promise<void> {
    if (!proc(port).live) return
    try {
      const self = parseClusterNodes(await ask(port, ['CLUSTER', 'NODES'])).find((e) => e.flags.includes('myself'))
      if (self && isMaster(self) && self.ranges.length > 0) downMasters.set(port, { id: self.id, ranges: self.ranges })
      else downMasters.delete(port)
    } catch {
      // Not answering: keep what was known.
    }
  }

  async function close(): Promise<void> {
    if (closed) return
    closed = true
    for (const tool of tools) tool.kill('SIGKILL')
    await Promise.allSettled([...procs.values()].map((p) => p.kill()))
    process.off('exit', killOnExit)
    reaper.stop()
    await rm(root, { recursive: true, force: true })
  }

  try {
    await Promise.all([...procs.values()].map((p) => p.start()))
    await runTool(
      REDIS_CLI_BIN,
      [
        ...cliAuth,
        '--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`),
        '--cluster-replicas', String(replicasPerMaster), '--cluster-yes',
      ],
      readyTimeoutMs,
      tools,
      reaper,
    )
    await waitFor('cluster healthy', readyTimeoutMs, () => checkCluster(true), 200)
  } catch (err) {
    await close()
    throw err
  }

  const cluster = {
    /** "127.0.0.1:p1,127.0.0.1:p2,…", every node: the format of REDIS_CLUSTER_NODES. */
    nodesEnv: ports.map((port) => `127.0.0.1:${port}`).join(','),
    nodes: ports.map((port) => ({ port })),

    /** Masters that own slots and are not failed, from CLUSTER NODES of a live node. */
    async masters(): Promise<{ port: number; id: string; slots: number }[]> {
      return (await currentNodes())
        .filter((e) => isMaster(e) && !isFailed(e) && e.ranges.length > 0)
        .map((e) => ({ port: e.port, id: e.id, slots: slotCount(e.ranges) }))
        .sort((a, b) => a.port - b.port)
    },

    /** SIGKILL a node (paused or not). */
    async kill(port: number): Promise<void> {
      await rememberIfMaster(port)
      await proc(port).kill()
    },
    /** SIGSTOP: the node keeps its ports and answers nothing; past node-timeout the cluster fails it over. */
    async pause(port: number): Promise<void> {
      await rememberIfMaster(port)
      proc(port).pause()
    },
    async resume(port: number): Promise<void> {
      proc(port).resume()
    },
    /**
     * Starts a killed node again on its port and dir, empty (nothing persisted) but with its nodes.conf: it rejoins
     * with its identity; a master that was failed over comes back as a replica of its successor. Returns once the
     * process answers: waitForHealthy() waits for it to be in sync.
     */
    async restart(port: number): Promise<void> {
      const node = proc(port)
      if (node.running) await node.kill()
      await node.start()
    },

    /**
     * Until every live node reports cluster_state:ok with all 16384 slots, they agree on who owns which slots, no
     * slot is being migrated, every live replica's link is up and (while every node is live) each master has its
     * replicas.
     */
    async waitForHealthy(timeoutMs = readyTimeoutMs): Promise<void> {
      await waitFor('cluster healthy', timeoutMs, () => checkCluster(true), 200)
    },

    /**
     * After kill() or pause() of a master: until another node (its replica) owns its slots and every live node
     * reports cluster_state:ok and agrees. Returns the new owner.
     */
    async waitForFailover(killedPort: number, timeoutMs = waits.failoverMs): Promise<{ port: number }> {
      const down = downMasters.get(killedPort)
      if (!down) throw new Error(`${killedPort} was not a master with slots when it was killed or paused`)
      const firstSlot = down.ranges[0]![0]
      return waitFor(`failover of ${killedPort}`, timeoutMs, async () => {
        const view = await checkCluster(false)
        const owner = view.masters.find((m) => m.ranges.some(([a, b]) => a <= firstSlot && firstSlot <= b))
        if (!owner || owner.port === killedPort) throw new Error(`slot ${firstSlot} is still served by ${killedPort}`)
        return { port: owner.port }
      }, 200)
    },

    /**
     * Moves `slots` slots (with their keys) from one master to another with `redis-cli --cluster reshard`; by default
     * from the master with the most slots to the one with the fewest. Waits for the cluster to agree before (redis-cli
     * refuses otherwise) and after. Returns the ports slots moved from and to.
     */
    async reshard(request: { slots: number; from?: number; to?: number; timeoutMs?: number }): Promise<{ from: number; to: number }> {
      const timeoutMs = request.timeoutMs ?? waits.reshardMs
      const started = Date.now()
      const left = () => Math.max(1, timeoutMs - (Date.now() - started))
      const view = await waitFor('cluster agrees before reshard', left(), () => checkCluster(false), 200)
      const bySlots = [...view.masters].sort((a, b) => b.slots - a.slots)
      const from = request.from === undefined ? bySlots[0] : view.masters.find((m) => m.port === request.from)
      const to =
        request.to === undefined
          ? bySlots.filter((m) => m.port !== from?.port).at(-1)
          : view.masters.find((m) => m.port === request.to) ?? view.nodes.find((n) => n.port === request.to && isMaster(n))
      if (!from || !to) throw new Error(`reshard: no master ${!from ? request.from : request.to}`)
      await runTool(
        REDIS_CLI_BIN,
        [
          ...cliAuth,
          '--cluster', 'reshard', `127.0.0.1:${from.port}`,
          '--cluster-from', from.id, '--cluster-to', to.id,
          '--cluster-slots', String(request.slots), '--cluster-yes',
        ],
        left(),
        tools,
        reaper,
      )
      await waitFor('cluster agrees after reshard', left(), () => checkCluster(false), 200)
      return { from: from.port, to: to.port }
    },

    /** Kills every node (and a running redis-cli) and removes the temp dirs. */
    close,
  }
  return cluster
}

export type RedisCluster = Awaited<ReturnType<typeof startRedisCluster>>
