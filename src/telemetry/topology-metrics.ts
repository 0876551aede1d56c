import { Counter, Gauge, type Registry } from 'prom-client'
import type { RedisTopology } from '../config.js'
import type { MasterView } from '../redis/topology.js'

/** Which topology, its failovers and redirections, and each master's replicas (labels are addresses, never data). */
export function createTopologyMetrics(registry: Registry, kind: RedisTopology['kind']) {
  const info = new Gauge({ name: 'redis_topology_info', help: 'The Redis topology in use (1 for the one in use).', labelNames: ['kind'] as const, registers: [registry] })
  info.labels(kind).set(1)
  const failovers = new Counter({
    name: 'redis_failovers_total',
    help: 'Master switches this instance observed (Sentinel +switch-master, or a changed set of Cluster masters).',
    registers: [registry],
  })
  const redirections = new Counter({
    name: 'redis_redirections_total',
    help: 'Cluster redirections (MOVED, ASK) the client followed.',
    labelNames: ['kind'] as const,
    registers: [registry],
  })
  redirections.labels('moved')
  redirections.labels('ask')
  const replicas = new Gauge({
    name: 'redis_connected_replicas',
    help: 'Replicas each master reports connected (INFO replication).',
    labelNames: ['master'] as const,
    registers: [registry],
  })
  const lag = new Gauge({
    name: 'redis_replica_lag_seconds',
    help: 'Seconds since each replica last acknowledged its master (INFO replication lag).',
    labelNames: ['master', 'replica'] as const,
    registers: [registry],
  })
  return {
    failover: () => failovers.inc(),
    redirected: (how: 'moved' | 'ask') => redirections.labels(how).inc(),
    /** The latest poll of every master's replication (null: the poll failed, the figures are dropped). */
    replication(masters: MasterView[] | null) {
      replicas.reset()
      lag.reset()
      for (const master of masters ?? []) {
        replicas.labels(master.address).set(master.connectedReplicas)
        for (const replica of master.replicas) if (replica.lagSeconds !== null) lag.labels(master.address, replica.address).set(replica.lagSeconds)
      }
    },
  }
}
