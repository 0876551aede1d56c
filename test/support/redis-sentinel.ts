import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { REDIS_SENTINEL_BIN, REDIS_SERVER_BIN } from './env.js'
import {
  Reaper,
  RedisExitedError,
  RedisProcess,
  freePorts,
  parseInfo,
  redisCommand,
  replicaAuthArgs,
  waitFor,
  type RedisAuth,
} from './redis-process.js'

export interface SentinelTopologyOptions {
  /** Replicas of the first master (default 1). */
  replicas?: number
  /** Sentinels (default 3); the quorum is a majority of them (2 of 3). */
  sentinels?: number
  /** The monitored master's name (default 'ssc-master'). */
  masterName?: string
  /** sentinel down-after-milliseconds (default 1000). */
  downAfterMs?: number
  /** sentinel failover-timeout (default 3000). */
  failoverTimeoutMs?: number
  /** Extra redis-server arguments for the data nodes (not the sentinels), e.g. ['--aclfile', file]. */
  args?: string[]
  /** Credentials the data nodes require (set up through `args`): used by the harness, replicas and sentinels. */
  auth?: RedisAuth
  /** Longest wait for one process to answer after a (re)start (default 10 s). */
  startTimeoutMs?: number
  /** Longest wait for the whole topology to be ready (default 30 s). */
  readyTimeoutMs?: number
}

export interface HostPort {
  host: string
  port: number
}

/** How often a sentinel INFOs a replica while nothing fails (SENTINEL_INFO_PERIOD), and its hello period. */
const SENTINEL_INFO_PERIOD_MS = 10_000
const SENTINEL_PUBLISH_PERIOD_MS = 2000

/** [k1, v1, k2, v2, …] → { k1: v1, … } (SENTINEL master/replicas/sentinels entries). */
function fields(entry: unknown): Record<string, string> {
  const list = Array.isArray(entry) ? entry.map(String) : []
  const out: Record<string, string> = {}
  for (let i = 0; i + 1 < list.length; i += 2) out[list[i]!] = list[i + 1]!
  return out
}

/**
 * A Redis Sentinel deployment on loopback: one master, `replicas` replicas and `sentinels` sentinels, each its own
 * redis-server process (sentinels run `redis-server <conf> --sentinel`, each with its own writable config file, which
 * sentinel rewrites). Returns once the master has its replicas in sync and every sentinel knows the master, the
 * replicas and the other sentinels. Every process is SIGKILLed on close() and on exit of the test process.
 */
export async function startSentinelTopology(options: SentinelTopologyOptions = {}) {
  // Ports are free when picked, not reserved: if a process exits at start (its port was taken), start again.
  for (let attempt = 1; ; attempt++) {
    try {
      return await launchSentinelTopology(options)
    } catch (err) {
      if (!(err instanceof RedisExitedError) || attempt >= 3) throw err
    }
  }
}

/**
 * The longest waits the topology uses by default, from its options (tests size their own timeouts with these).
 * `failoverMs`: after SENTINEL FAILOVER a sentinel makes the old master a replica only once it has seen it report
 * "master" for 4 hello periods (2 s), on its next INFO of it (every 10 s): ~11 s after the switch, plus the failover.
 * `newMasterMs`: detection (down-after), the vote, the promotion; a sentinel that just failed this master over waits
 * 2 × failover-timeout before it tries again.
 */
export function sentinelWaits(options: SentinelTopologyOptions = {}) {
  const downAfterMs = options.downAfterMs ?? 1000
  const failoverTimeoutMs = options.failoverTimeoutMs ?? 3000
  return {
    readyMs: options.readyTimeoutMs ?? 30_000,
    failoverMs: failoverTimeoutMs * 2 + SENTINEL_PUBLISH_PERIOD_MS * 4 + SENTINEL_INFO_PERIOD_MS + 10_000,
    newMasterMs: downAfterMs * 2 + failoverTimeoutMs * 2 + 15_000,
  }
}

async function launchSentinelTopology(options: SentinelTopologyOptions) {
  const replicaCount = options.replicas ?? 1
  const sentinelCount = options.sentinels ?? 3
  const masterName = options.masterName ?? 'ssc-master'
  const downAfterMs = options.downAfterMs ?? 1000
  const failoverTimeoutMs = options.failoverTimeoutMs ?? 3000
  const startTimeoutMs = options.startTimeoutMs ?? 10_000
  const quorum = Math.floor(sentinelCount / 2) + 1
  const auth = options.auth
  const waits = sentinelWaits(options)
  const readyTimeoutMs = waits.readyMs
  if (replicaCount < 1 || sentinelCount < 1) throw new Error('a sentinel topology needs at least one replica and one sentinel')

  const ports = await freePorts(1 + replicaCount + sentinelCount)
  const root = await mkdtemp(path.join(tmpdir(), 'ssc-sentinel-'))
  const dataPorts = ports.slice(0, 1 + replicaCount)
  const sentinelPorts = ports.slice(1 + replicaCount)
  const firstMaster = dataPorts[0]!
  const data = new Map<number, RedisProcess>()
  const sentinels = new Map<number, RedisProcess>()
  /** Where each data node replicates from when (re)started: undefined for a master. */
  const replicaOf = new Map<number, number | undefined>()
  const all = () => [...data.values(), ...sentinels.values()]
  const reaper = new Reaper(root)
  const killOnExit = () => reaper.killNow()
  process.once('exit', killOnExit)
  let closed = false

  const ask = (port: number, args: (string | number)[]) => redisCommand(port, args, { auth })
  const askSentinel = (port: number, args: (string | number)[]) => redisCommand(port, args)

  for (const port of dataPorts) {
    const dir = path.join(root, `node-${port}`)
    await mkdir(dir)
    replicaOf.set(port, port === firstMaster ? undefined : firstMaster)
    const command = () => {
      const upstream = replicaOf.get(port)
      return {
        bin: REDIS_SERVER_BIN,
        args: [
          '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
          // 7.0 waits 5 s for more replicas before a diskless full sync: none will come, start at once.
          '--repl-diskless-sync-delay', '0',
          ...replicaAuthArgs(auth),
          ...(options.args ?? []),
          ...(upstream === undefined ? [] : ['--replicaof', '127.0.0.1', String(upstream)]),
        ],
      }
    }
    data.set(port, new RedisProcess('redis-server', port, command, { auth, startTimeoutMs, reaper }))
  }
  for (const port of sentinelPorts) {
    const dir = path.join(root, `sentinel-${port}`)
    await mkdir(dir)
    const conf = path.join(dir, 'sentinel.conf')
    const lines = [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      'sentinel resolve-hostnames no',
      'sentinel announce-hostnames no',
      `sentinel monitor ${masterName} 127.0.0.1 ${firstMaster} ${quorum}`,
      `sentinel down-after-milliseconds ${masterName} ${downAfterMs}`,
      `sentinel failover-timeout ${masterName} ${failoverTimeoutMs}`,
      `sentinel parallel-syncs ${masterName} 1`,
      ...(auth?.username ? [`sentinel auth-user ${masterName} ${auth.username}`] : []),
      ...(auth ? [`sentinel auth-pass ${masterName} ${auth.password}`] : []),
    ]
    await writeFile(conf, lines.join('\n') + '\n')
    const command = () => ({ bin: REDIS_SENTINEL_BIN, args: [conf, '--sentinel'] })
    sentinels.set(port, new RedisProcess('redis-sentinel', port, command, { startTimeoutMs, reaper }))
  }

  const liveSentinels = () => [...sentinels.values()].filter((s) => s.live)
  const liveData = () => [...data.values()].filter((d) => d.live)

  function proc(port: number): RedisProcess {
    const found = data.get(port) ?? sentinels.get(port)
    if (!found) throw new Error(`port ${port} is not part of this topology`)
    return found
  }

  /** The master a sentinel reports, or undefined when it does not know one. */
  async function masterFrom(sentinelPort: number): Promise<number | undefined> {
    const reply = await askSentinel(sentinelPort, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName])
    return Array.isArray(reply) && reply.length === 2 ? Number(reply[1]) : undefined
  }

  /** The one master every live sentinel reports (throws while they disagree or one does not answer). */
  async function agreedMaster(): Promise<number> {
    const live = liveSentinels()
    if (live.length === 0) throw new Error('no live sentinel')
    const seen = await Promise.all(live.map((s) => masterFrom(s.port)))
    const distinct = new Set(seen)
    if (distinct.size !== 1 || seen[0] === undefined) throw new Error(`sentinels report masters ${seen.join(', ')}`)
    return seen[0]
  }

  /** ROLE of a data node: ['master', …] or ['slave', host, port, state, offset]. */
  async function role(port: number): Promise<{ role: string; masterPort?: number; state?: string }> {
    const reply = (await ask(port, ['ROLE'])) as unknown[]
    const name = String(reply[0])
    return name === 'slave' ? { role: name, masterPort: Number(reply[2]), state: String(reply[3]) } : { role: name }
  }

  /** The master (the sentinels' unless given) has every other live data node online, each with its link up. */
  async function replicasInSync(knownMaster?: number): Promise<number> {
    const master = knownMaster ?? (await agreedMaster())
    const expected = liveData()
      .map((d) => d.port)
      .filter((p) => p !== master)
    const info = parseInfo(await ask(master, ['INFO', 'replication']))
    if (info.role !== 'master') throw new Error(`${master} reports role ${info.role}`)
    const online = new Set(
      Object.entries(info)
        .filter(([key, value]) => /^slave\d+$/.test(key) && value.includes('state=online'))
        .map(([, value]) => Number(/port=(\d+)/.exec(value)?.[1])),
    )
    const missing = expected.filter((p) => !online.has(p))
    if (missing.length > 0) throw new Error(`master ${master} does not have replicas ${missing.join(', ')} online`)
    for (const port of expected) {
      const replica = parseInfo(await ask(port, ['INFO', 'replication']))
      if (replica.master_link_status !== 'up' || Number(replica.master_port) !== master) {
        throw new Error(`replica ${port}: link ${replica.master_link_status} to ${replica.master_port}`)
      }
    }
    return master
  }

  /** Every live sentinel knows the master, the live replicas (none down) and the other sentinels. */
  async function sentinelsReady(): Promise<number> {
    const master = await agreedMaster()
    const expectedReplicas = liveData()
      .map((d) => d.port)
      .filter((p) => p !== master)
    for (const sentinel of liveSentinels()) {
      const others = (await askSentinel(sentinel.port, ['SENTINEL', 'SENTINELS', masterName])) as unknown[]
      if (others.length !== sentinelCount - 1) {
        throw new Error(`sentinel ${sentinel.port} knows ${others.length} of ${sentinelCount - 1} other sentinels`)
      }
      const replicas = ((await askSentinel(sentinel.port, ['SENTINEL', 'REPLICAS', masterName])) as unknown[]).map(fields)
      for (const port of expectedReplicas) {
        const entry = replicas.find((r) => Number(r.port) === port)
        if (!entry || /s_down|disconnected/.test(entry.flags ?? '') || entry['master-link-status'] !== 'ok') {
          throw new Error(`sentinel ${sentinel.port} sees replica ${port} as ${entry ? `${entry.flags}, link ${entry['master-link-status']}` : 'unknown'}`)
        }
      }
    }
    return master
  }

  async function close(): Promise<void> {
    if (closed) return
    closed = true
    await Promise.allSettled(all().map((p) => p.kill()))
    process.off('exit', killOnExit)
    reaper.stop()
    await rm(root, { recursive: true, force: true })
  }

  try {
    // Data nodes first, in sync, then the sentinels: their first INFO of the master already lists every replica
    // (later ones come every 10 s).
    await data.get(firstMaster)!.start()
    await Promise.all(dataPorts.slice(1).map((port) => data.get(port)!.start()))
    await waitFor('replicas in sync', readyTimeoutMs, () => replicasInSync(firstMaster))
    await Promise.all([...sentinels.values()].map((s) => s.start()))
    await waitFor('sentinels ready', readyTimeoutMs, sentinelsReady)
  } catch (err) {
    await close()
    throw err
  }

  const topology = {
    masterName,
    /** "127.0.0.1:p1,127.0.0.1:p2,…": the format of REDIS_SENTINELS. */
    sentinelsEnv: sentinelPorts.map((port) => `127.0.0.1:${port}`).join(','),
    sentinels: sentinelPorts.map((port): HostPort => ({ host: '127.0.0.1', port })),
    /** The data nodes (master and replicas), in start order: the first was the first master. */
    nodes: dataPorts.map((port) => ({ port })),

    /** SENTINEL get-master-addr-by-name from the first sentinel that answers. */
    async master(): Promise<HostPort> {
      const errors: string[] = []
      for (const sentinel of liveSentinels()) {
        try {
          const port = await masterFrom(sentinel.port)
          if (port !== undefined) return { host: '127.0.0.1', port }
          errors.push(`${sentinel.port}: no master`)
        } catch (err) {
          errors.push(`${sentinel.port}: ${(err as Error).message}`)
        }
      }
      throw new Error(`no sentinel reports the master of ${masterName} (${errors.join('; ') || 'none live'})`)
    },

    /**
     * SENTINEL FAILOVER, then waits until every live sentinel reports the new master, it answers ROLE master and the
     * old master (when live) is a connected replica of it. The last step is sentinel's own: it converts the old
     * master some 10 s after the switch, so this takes that long.
     */
    async failover(timeoutMs = waits.failoverMs): Promise<{ from: number; to: number }> {
      const started = Date.now()
      const from = await agreedMaster()
      await waitFor('SENTINEL FAILOVER accepted', timeoutMs, async () => {
        const errors: string[] = []
        for (const sentinel of liveSentinels()) {
          try {
            await askSentinel(sentinel.port, ['SENTINEL', 'FAILOVER', masterName])
            return true
          } catch (err) {
            errors.push(`${sentinel.port}: ${(err as Error).message}`) // NOGOODSLAVE, INPROG: try again
          }
        }
        throw new Error(errors.join('; '))
      }, 250)
      const to = await waitFor(`failover from ${from}`, Math.max(1, timeoutMs - (Date.now() - started)), async () => {
        const next = await agreedMaster()
        if (next === from) throw new Error(`sentinels still report ${from}`)
        const now = await role(next)
        if (now.role !== 'master') throw new Error(`${next} reports ROLE ${now.role}`)
        if (data.get(from)?.live) {
          const old = await role(from)
          if (old.role !== 'slave' || old.masterPort !== next || old.state !== 'connected') {
            throw new Error(`old master ${from} reports ROLE ${old.role} ${old.masterPort ?? ''} ${old.state ?? ''}`)
          }
        }
        return next
      }, 200)
      return { from, to }
    },

    /** SIGKILL a data node or a sentinel. */
    async kill(port: number): Promise<void> {
      await proc(port).kill()
    },
    /** SIGSTOP: it keeps its port and answers nothing. */
    async pause(port: number): Promise<void> {
      proc(port).pause()
    },
    async resume(port: number): Promise<void> {
      proc(port).resume()
    },

    /**
     * Starts a killed node again on its port and dir (empty: nothing is persisted). A data node comes back as a
     * replica of the master the sentinels report (as a node whose config file sentinel rewrote would), and this waits
     * until it is in sync and every live sentinel sees it up; unless it is itself still that master (killed and not
     * failed over yet), when it comes back as an empty master. A sentinel comes back with its rewritten config.
     */
    async restart(port: number, timeoutMs = readyTimeoutMs): Promise<void> {
      const node = proc(port)
      if (node.running) await node.kill()
      if (sentinels.has(port)) {
        await node.start()
        await waitFor(`sentinel ${port} back`, timeoutMs, async () => ((await masterFrom(port)) === undefined ? undefined : true))
        return
      }
      const master = (await topology.master()).port
      replicaOf.set(port, master === port ? undefined : master)
      await node.start()
      if (master === port) return
      await waitFor(`replica ${port} back`, timeoutMs, sentinelsReadyAndInSync)
    },

    /** Until every live sentinel reports one master other than oldPort and that node answers ROLE master. */
    async waitForNewMaster(oldPort: number, timeoutMs = waits.newMasterMs): Promise<HostPort> {
      const port = await waitFor(`a master other than ${oldPort}`, timeoutMs, async () => {
        const next = await agreedMaster()
        if (next === oldPort) throw new Error(`sentinels still report ${oldPort}`)
        const now = await role(next)
        if (now.role !== 'master') throw new Error(`${next} reports ROLE ${now.role}`)
        return next
      }, 200)
      return { host: '127.0.0.1', port }
    },

    /** Until the master has every live data node as an online replica, each with its link up. */
    async waitForReplicasInSync(timeoutMs = readyTimeoutMs): Promise<void> {
      await waitFor('replicas in sync', timeoutMs, () => replicasInSync())
    },

    /** Until replicas are in sync and every live sentinel knows the master, the replicas and the other sentinels. */
    async waitForReady(timeoutMs = readyTimeoutMs): Promise<void> {
      await waitFor('topology ready', timeoutMs, sentinelsReadyAndInSync)
    },

    /** Kills every process and removes the temp dirs. */
    close,
  }

  async function sentinelsReadyAndInSync(): Promise<true> {
    await replicasInSync()
    await sentinelsReady()
    return true
  }

  return topology
}

export type SentinelTopology = Awaited<ReturnType<typeof startSentinelTopology>>
