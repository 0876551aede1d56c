import { Cluster, type Redis } from 'ioredis'
import type { RedisClient } from './client.js'
import { parseInfo } from './probe.js'
import { withConnection, type RedisPool } from './pool.js'

export interface ReplicaView {
  address: string
  state: string
  lagSeconds: number | null
}

export interface MasterView {
  address: string
  role: string
  connectedReplicas: number
  replicas: ReplicaView[]
}

/** The masters behind a client: every master of a Cluster, or the one node (or Sentinel's current master). */
export function mastersOf(client: RedisClient): Redis[] {
  return client instanceof Cluster ? client.nodes('master') : [client]
}

/** Where a connection actually goes: the socket's peer (in Sentinel mode the options name no master), else its options. */
export function addressOf(node: Redis): string {
  const socket = (node as unknown as { stream?: { remoteAddress?: string; remotePort?: number } }).stream
  if (socket?.remoteAddress && socket.remotePort) return `${socket.remoteAddress.replace(/^::ffff:/, '')}:${socket.remotePort}`
  return `${node.options.host ?? '127.0.0.1'}:${node.options.port ?? 6379}`
}

/** INFO replication of one node: its role and its replicas (`slaveN:ip=…,port=…,state=…,offset=…,lag=…`). */
export function parseReplication(address: string, info: string): MasterView {
  const fields = parseInfo(info)
  const replicas: ReplicaView[] = []
  for (const [key, value] of fields) {
    if (!/^slave\d+$/.test(key)) continue
    const parts = new Map(value.split(',').map((kv) => kv.split('=') as [string, string]))
    const lag = Number(parts.get('lag'))
    replicas.push({
      address: `${parts.get('ip') ?? '?'}:${parts.get('port') ?? '?'}`,
      state: parts.get('state') ?? 'unknown',
      lagSeconds: Number.isFinite(lag) ? lag : null,
    })
  }
  return {
    address,
    role: fields.get('role') ?? 'unknown',
    connectedReplicas: Number(fields.get('connected_slaves') ?? 0) || 0,
    replicas,
  }
}

const replicationOp = async (client: RedisClient): Promise<MasterView[]> =>
  Promise.all(mastersOf(client).map(async (node) => parseReplication(addressOf(node), await node.info('replication'))))

/** Each master's replication, read through the pool (not the breaker: a poll must not count towards opening it). */
export function readReplication(pool: RedisPool): Promise<MasterView[]> {
  return withConnection(pool, replicationOp)
}
