import { Cluster, Redis } from 'ioredis'
import type { RedisTopology } from '../config.js'
import type { Log } from '../service/observer.js'
import { reconnectDelay, type RedisClient } from './client.js'
import { addressOf } from './topology.js'

export interface TopologyWatchOptions {
  topology: RedisTopology
  /** A long-lived client of the data topology (the invalidation subscriber): a Cluster's slot refreshes are seen on it. */
  client: RedisClient
  connectTimeoutMs: number
  log: Log
  /** A master changed: writes the old one acknowledged may be lost. */
  onSwitch(detail: { from: string | null; to: string }): void
}

/**
 * Notices master switches as they happen, so the cache can stop trusting Redis and replay recent revocations into the
 * new master before answering from it again:
 * - Sentinel: every sentinel is subscribed to +switch-master (any one of them announcing it is enough);
 * - Cluster: after each slot refresh, the set of masters is compared with the last one seen;
 * - one node: nothing to watch (a restart loses what it did not persist; no other node can answer stale).
 */
export function watchTopology(options: TopologyWatchOptions) {
  const { topology, log } = options
  const closers: Array<() => void> = []

  if (topology.kind === 'sentinel') {
    let lastSwitch = ''
    for (const sentinel of topology.sentinels) {
      const watcher = new Redis({
        host: sentinel.host,
        port: sentinel.port,
        username: topology.username,
        password: topology.password,
        connectTimeout: options.connectTimeoutMs,
        retryStrategy: reconnectDelay,
        maxRetriesPerRequest: 0,
        disableClientInfo: true,
        connectionName: 'studio-session-cache-failover',
      })
      watcher.on('error', () => undefined) // a sentinel down is the others' to cover; ioredis reconnects this one
      watcher.subscribe('+switch-master').catch((err: Error) => log.warn({ err: { message: err.message }, sentinel }, 'cannot subscribe to +switch-master'))
      watcher.on('message', (_channel: string, message: string) => {
        // "<master name> <old ip> <old port> <new ip> <new port>"
        const [name, oldHost, oldPort, newHost, newPort] = message.split(' ')
        if (name !== topology.masterName) return
        const key = `${newHost}:${newPort}`
        if (key === lastSwitch) return // the same switch, told by another sentinel
        lastSwitch = key
        options.onSwitch({ from: `${oldHost}:${oldPort}`, to: key })
      })
      closers.push(() => watcher.disconnect())
    }
  }

  if (topology.kind === 'cluster' && options.client instanceof Cluster) {
    const cluster = options.client
    let known: string | undefined
    const look = () => {
      const masters = cluster.nodes('master').map(addressOf).sort().join(',')
      if (masters.length === 0) return
      if (known !== undefined && masters !== known) options.onSwitch({ from: known, to: masters })
      known = masters
    }
    cluster.on('refresh', look)
    cluster.on('ready', look)
    closers.push(() => {
      cluster.off('refresh', look)
      cluster.off('ready', look)
    })
  }

  return {
    close() {
      for (const close of closers) close()
    },
  }
}
