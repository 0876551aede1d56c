/**
 * The Redis topologies `npm run bench` measures the hit path on besides the single node: a Sentinel deployment (one
 * master, one replica, three sentinels) and a Redis Cluster (3 masters + 3 replicas), each started once on loopback
 * with the test harnesses (test/support) before the rounds and closed after them. The only bench module that imports
 * from test/support.
 *
 * They are closed in a finally, and on SIGINT/SIGTERM too: the handler closes what was started and exits (130/143),
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
): Promise<T> {
  let sentinel: SentinelTopology | undefined
  let cluster: RedisCluster | undefined
  const closeAll = async () => {
    await Promise.allSettled([sentinel?.close(), cluster?.close()])
  }
  const onSignal = (signal: NodeJS.Signals) => {
    say(`${signal}: closing the Redis topologies…`)
    void closeAll().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143))
  }
  if (kinds.size > 0) {
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
  }
  try {
    if (kinds.has('sentinel')) {
      say(`starting Redis ${TOPOLOGY_SHAPES.sentinel}…`)
      sentinel = await startSentinelTopology({ replicas: 1, sentinels: 3 })
    }
    if (kinds.has('cluster')) {
      say(`starting Redis ${TOPOLOGY_SHAPES.cluster}…`)
      cluster = await startRedisCluster({ masters: 3, replicasPerMaster: 1 })
    }
    return await body({
      env(kind): Record<string, string> {
        if (kind === 'sentinel' && sentinel) {
          return { REDIS_SENTINELS: sentinel.sentinelsEnv, REDIS_SENTINEL_MASTER_NAME: sentinel.masterName }
        }
        if (kind === 'cluster' && cluster) return { REDIS_CLUSTER_NODES: cluster.nodesEnv }
        throw new Error(`the ${kind} topology was not started`)
      },
    })
  } finally {
    await closeAll()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}
