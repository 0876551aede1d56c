import { Redis } from 'ioredis'
import type { RedisClient } from './client.js'
import { addressOf } from './topology.js'

/**
 * Keeps Sentinel connections off a master that has been switched away from.
 *
 * ioredis asks the sentinels for the master when it (re)connects, and its ready check only asks the node for its role.
 * A connection that asked before a switch can be left on the old master: while that master hangs (SIGSTOP, a stalled
 * host) the kernel still accepts the TCP connection and the handshake waits; when the old master resumes, it answers
 * "role:master" (it stays one until the sentinels demote it, several seconds later), the connection becomes ready, and
 * ioredis's failover detector, subscribed only once that socket connected, may have missed the +switch-master. Such a
 * connection answers PINGs (a recovery probe would close the breaker on it) and takes fills and the post-switch replay,
 * which the old master then loses when it resyncs from the new one.
 *
 * So each connection remembers how many switches had been announced when it last started connecting. Once a later
 * switch is announced, a connection from before it that is not on the announced master is stale: its socket is
 * destroyed at once (ioredis reconnects it with its backoff and asks the sentinels again), at the switch and whenever it
 * becomes ready later. A connection that started after the switch is never stale: the sentinels named its master.
 */
export function createSwitchGuard(onDrop: () => void = () => undefined) {
  let switches = 0
  let master: string | undefined
  const generation = new WeakMap<RedisClient, number>()

  /** Asked of the sentinels before the last switch, and not on the master it named. */
  function stale(client: RedisClient): boolean {
    if (!(client instanceof Redis) || master === undefined) return false
    return (generation.get(client) ?? switches) < switches && addressOf(client) !== master
  }

  /**
   * Destroys a stale connection's socket (not `disconnect`, whose polite end waits for a hung peer). Only a live one
   * ('connect': handshake under way, or 'ready'): one still asking the sentinels, or waiting to, has no socket yet and
   * is looked at again when it becomes ready.
   */
  function dropIfStale(client: RedisClient): boolean {
    if (!(client instanceof Redis) || (client.status !== 'connect' && client.status !== 'ready') || !stale(client)) return false
    destroySocket(client)
    onDrop()
    return true
  }

  return {
    /** Called before the client's first connect: it notes each connect attempt's generation. */
    track(client: RedisClient): void {
      if (!(client instanceof Redis)) return
      generation.set(client, switches)
      client.on('connecting', () => generation.set(client, switches))
    },
    /** The sentinels announced a new master (`host:port`): connections still on another one are dropped. */
    switched(to: string, clients: Iterable<RedisClient>): void {
      switches++
      master = to
      for (const client of clients) dropIfStale(client)
    },
    stale,
    /** For a connection that just became ready: true (and its socket destroyed) when it is on the old master. */
    dropIfStale,
  }
}

export type SwitchGuard = ReturnType<typeof createSwitchGuard>

/**
 * ioredis arms one socket timeout per connection on a write and clears it only when data arrives: a socket destroyed
 * while it is pending (the handshake's commands on a hung master) leaves it armed, and when it fires it destroys
 * whatever socket the connection has by then, the healthy one it reconnected on. So it is cleared with the socket.
 */
function destroySocket(client: Redis): void {
  const internals = client as unknown as { socketTimeoutTimer?: NodeJS.Timeout }
  clearTimeout(internals.socketTimeoutTimer)
  internals.socketTimeoutTimer = undefined
  client.stream?.destroy()
}
