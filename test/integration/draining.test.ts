import net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SessionStore } from '../../src/domain/ports.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { startTestApp } from '../support/app.js'
import { eventually, gate } from '../support/gate.js'

let db: TestDatabase
beforeAll(async () => {
  db = await createTestDatabase()
})
afterAll(async () => {
  await db.drop()
})

const post = (token: string) => {
  const body = JSON.stringify({ token })
  return `POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`
}

describe('while the service drains', () => {
  it('a request in flight finishes, and the next one on the same connection gets 503 SHUTTING_DOWN with Retry-After', async () => {
    const release = gate()
    let reads = 0
    const wrapStore = (store: SessionStore): SessionStore => ({
      ...store,
      async findByTokenHash(hash) {
        reads++
        await release.wait()
        return store.findByTokenHash(hash)
      },
    })
    const t = await startTestApp({ db, overrides: { wrapStore } })
    await t.app.listen({ host: '127.0.0.1', port: 0 })
    const { port } = t.app.server.address() as net.AddressInfo
    const { token, sessionId } = await db.insertSession()

    const socket = net.connect({ host: '127.0.0.1', port })
    let received = ''
    socket.on('data', (chunk) => (received += chunk.toString()))
    socket.write(post(token))
    await eventually(() => reads === 1, 5000, 'first request in flight')

    const closing = t.app.close()
    // Pipelined behind the one in flight: it is read only after close() has begun.
    socket.write(post(token))
    release.open()
    await eventually(() => (received.match(/HTTP\/1\.1 /g) ?? []).length === 2, 5000, 'two responses')
    socket.destroy()
    await closing
    t.redis.disconnect()

    const [first, second] = received.split(/(?=HTTP\/1\.1 )/)
    expect(first).toMatch(/^HTTP\/1\.1 200/)
    expect(first).toContain(sessionId)
    expect(second).toMatch(/^HTTP\/1\.1 503/)
    expect(second).toMatch(/retry-after: \d+/i)
    expect(second).toContain('"code":"SHUTTING_DOWN"')
    expect(reads).toBe(1)
  })
})
