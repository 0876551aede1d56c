/**
 * The Redis topologies `npm run bench` measures the hit path on besides the single node: a Sentinel deployment (one
 * master, one replica, three sentinels) and a Redis Cluster (3 masters + 3 replicas), each started once on loopback
 * with the test harnesses (test/support) before the rounds and closed after them. The only bench module that imports
 * from test/support.
 *
 * Failure detection is set slow (5 s) so that a loaded machine does not fail a master over in the middle of a
 * measurement; should one happen anyway, the run says so (the rows of that topology then include the switch).
 *
 * They are closed in a finally, and on SIGINT/SIGTERM too: the handler closes what was started, runs the caller's
 * `onInterrupt` (stop the target, drop the bench's schema and keys), both bounded by 15 s, and exits (130/143),
 * and the harnesses SIGKILL their processes on exit (and a watchdog of theirs does when this process is killed).
 */
import { startRedisCluster, type RedisCluster } from '../../test/support/redis-cluster.js'
import { startSentinelTopology, type SentinelTopology } from '../../test/support/redis-sentinel.js'

export type TopologyKind = 'sentinel' | 'cluster'

export const TOPOLOGY_SHAPES: Record<TopologyKind, string> = {
  sentinel: 'Sentinel: 1 master, 1 replica, 3 sentinels',
  cluster: 'Cluster: 3 masters + 3 replicas',
}

export interface BenchTopologies {
  /** The service's environment for that topology (only for a kind that was asked for). */
  env(kind: TopologyKind): Record<string, string>
}

/**
 * Starts the topologies in `kinds` (none: starts nothing), runs `body` with them, closes them whatever happens.
 */
export async function withTopologies<T>(
  kinds: ReadonlySet<TopologyKind>,
  say: (line: string) => void,
  body: (topologies: BenchTopologies) => Promise<T>,
  onInterrupt?: () => Promise<void>,
): Promise<T> {
  let sentinel: SentinelTopology | undefined
  let cluster: RedisCluster | undefined
  const closeAll = async () => {
    await Promise.allSettled([sentinel?.close(), cluster?.close()])
  }
  let interrupted = false
  const onSignal = (signal: NodeJS.Signals) => {
    interrupted = true
    say(`${signal}: closing the Redis topologies…`)
    const bound = new Promise((resolve) => setTimeout(resolve, 15_000).unref())
    void Promise.race([Promise.allSettled([closeAll(), onInterrupt?.()]), bound]).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143))
  }
  if (kinds.size > 0) {
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
  }
  try {
    if (kinds.has('sentinel')) {
      say(`starting Redis ${TOPOLOGY_SHAPES.sentinel}…`)
      sentinel = await startSentinelTopology({ replicas: 1, sentinels: 3, downAfterMs: 5000 })
    }
    if (kinds.has('cluster')) {
      say(`starting Redis ${TOPOLOGY_SHAPES.cluster}…`)
      cluster = await startRedisCluster({ masters: 3, replicasPerMaster: 1, nodeTimeoutMs: 5000 })
    }
    const mastersAtStart = await currentMasters(sentinel, cluster)
    const result = await body({
      env(kind): Record<string, string> {
        if (kind === 'sentinel' && sentinel) {
          return { REDIS_SENTINELS: sentinel.sentinelsEnv, REDIS_SENTINEL_MASTER_NAME: sentinel.masterName }
        }
        if (kind === 'cluster' && cluster) return { REDIS_CLUSTER_NODES: cluster.nodesEnv }
        throw new Error(`the ${kind} topology was not started`)
      },
    })
    const mastersAtEnd = await currentMasters(sentinel, cluster)
    for (const kind of ['sentinel', 'cluster'] as const) {
      // Once interrupted, the handler is closing them: nothing to compare.
      if (!interrupted && mastersAtStart[kind] !== mastersAtEnd[kind]) {
        say(`warning: the ${kind} masters changed during the run (${mastersAtStart[kind]} → ${mastersAtEnd[kind]}): its rows include a failover`)
      }
    }
    return result
  } finally {
    await closeAll()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

/** The master ports of each started topology, as one string each (to tell whether one failed over). */
async function currentMasters(sentinel: SentinelTopology | undefined, cluster: RedisCluster | undefined) {
  const read = async (f: () => Promise<string>) => {
    try {
      return await f()
    } catch (err) {
      return `unknown (${(err as Error).message})`
    }
  }
  return {
    sentinel: sentinel ? await read(async () => String((await sentinel.master()).port)) : '',
    cluster: cluster ? await read(async () => (await cluster.masters()).map((m) => m.port).join(',')) : '',
  }
}
