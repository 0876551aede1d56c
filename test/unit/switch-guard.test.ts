import { Redis } from 'ioredis'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createSwitchGuard } from '../../src/redis/switch-guard.js'

/**
 * The guard's rule on ioredis clients that never connect: each gets a stand-in socket (its peer address, a destroy the
 * test watches), and its connect attempts are the 'connecting' events the test emits. What a hung and resumed master
 * does to real connections is tested against real servers (topology/sentinel.test.ts).
 */
const clients: Redis[] = []
afterEach(() => {
  for (const client of clients.splice(0)) client.disconnect()
})

function connection(port: number) {
  const client = new Redis({ lazyConnect: true })
  clients.push(client)
  const socket = { remoteAddress: '127.0.0.1', remotePort: port, destroy: vi.fn() }
  Object.assign(client, { stream: socket, status: 'ready' })
  /** Moves it to another node, as a reconnect does: a new attempt (the 'connecting' event), then its socket. */
  const reconnect = (to: number) => {
    client.emit('connecting')
    socket.remotePort = to
  }
  return { client, socket, reconnect }
}

describe('switch guard: connections left on a switched-away master are dropped', () => {
  it('drops, at the switch, a connection made before it to another node; keeps one already on the new master', () => {
    const guard = createSwitchGuard()
    const onOld = connection(7000)
    const onNew = connection(7001)
    guard.track(onOld.client)
    guard.track(onNew.client)
    expect(guard.stale(onOld.client)).toBe(false)

    guard.switched('127.0.0.1:7001', [onOld.client, onNew.client])

    expect(onOld.socket.destroy).toHaveBeenCalledTimes(1)
    expect(onNew.socket.destroy).not.toHaveBeenCalled()
    expect(guard.stale(onNew.client)).toBe(false)
  })

  it('drops a connection that becomes ready on the old master after the switch (its attempt began before it)', () => {
    const guard = createSwitchGuard()
    const late = connection(7000)
    guard.track(late.client)
    late.client.emit('connecting')
    guard.switched('127.0.0.1:7001', [])

    expect(guard.dropIfStale(late.client)).toBe(true)
    expect(late.socket.destroy).toHaveBeenCalledTimes(1)
  })

  it('trusts an attempt begun after the switch (the sentinels named its master), and one that reached the new master', () => {
    const guard = createSwitchGuard()
    const a = connection(7000)
    const b = connection(7000)
    guard.track(a.client)
    guard.track(b.client)
    guard.switched('127.0.0.1:7001', [])

    a.reconnect(7001)
    b.client.emit('connecting')

    expect(guard.dropIfStale(a.client)).toBe(false)
    expect(guard.dropIfStale(b.client)).toBe(false)
    expect(a.socket.destroy).not.toHaveBeenCalled()
    expect(b.socket.destroy).not.toHaveBeenCalled()
  })

  it('leaves a connection with no live socket (asking the sentinels, or waiting to) until it becomes ready', () => {
    const guard = createSwitchGuard()
    const asking = connection(7000)
    guard.track(asking.client)
    Object.assign(asking.client, { status: 'connecting' })
    guard.switched('127.0.0.1:7001', [asking.client])
    expect(asking.socket.destroy).not.toHaveBeenCalled()

    Object.assign(asking.client, { status: 'ready' })
    expect(guard.dropIfStale(asking.client)).toBe(true)
    expect(asking.socket.destroy).toHaveBeenCalledTimes(1)
  })

  it('leaves untracked clients and a guard that has seen no switch alone', () => {
    const guard = createSwitchGuard()
    const c = connection(7000)
    expect(guard.dropIfStale(c.client)).toBe(false)
    guard.switched('127.0.0.1:7001', [])
    const tracked = connection(7000)
    guard.track(tracked.client)
    expect(guard.dropIfStale(tracked.client)).toBe(false)
  })
})
