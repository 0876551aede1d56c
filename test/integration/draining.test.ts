import net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SessionStore } from '../../src/domain/ports.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { startTestApp, type TestApp } from '../support/app.js'
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
    // The last answer on the connection closes it; the one before it must not (Node would drop the answer queued behind).
    expect(first).not.toMatch(/connection: close/i)
    expect(second).toMatch(/connection: close/i)
    expect(reads).toBe(1)

    // State left behind: one drain line with the counts, the turned-away request counted, and not logged as an error.
    const drains = t.logs.entries().filter((l) => String(l.msg).startsWith('drain complete'))
    expect(drains).toHaveLength(1)
    expect(drains[0]).toMatchObject({ level: 30, served: 0, turnedAway: 1, inFlightAtClose: 1 })
    expect(await drainCount(t, 'turned_away')).toBe(1)
    expect(t.logs.entries().filter((l) => (l.level as number) >= 50 || l.code === 'SHUTTING_DOWN')).toEqual([])
  })

  it('after markDraining, readiness is 503 while requests are still served, each with Connection: close', async () => {
    const t = await startTestApp({ db })
    await t.app.listen({ host: '127.0.0.1', port: 0 })
    const { port } = t.app.server.address() as net.AddressInfo
    const { token, sessionId } = await db.insertSession()
    const base = `http://127.0.0.1:${port}`
    const validate = () =>
      fetch(`${base}/validate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) })

    const before = await validate()
    expect(before.status).toBe(200)
    expect(before.headers.get('connection')).not.toBe('close')
    expect((await fetch(`${base}/health/ready`)).status).toBe(200)

    t.app.markDraining()
    const ready = await fetch(`${base}/health/ready`)
    expect(ready.status).toBe(503)
    expect(await ready.json()).toEqual({ status: 'not_ready' })
    const during = await Promise.all([validate(), validate(), validate()])
    for (const res of during) {
      expect(res.status).toBe(200)
      expect(res.headers.get('connection')).toBe('close')
      expect(await res.json()).toMatchObject({ valid: true, session: { id: sessionId } })
    }
    expect(await drainCount(t, 'served')).toBe(3)
    expect(await drainCount(t, 'turned_away')).toBe(0)

    await t.close()
    const drains = t.logs.entries().filter((l) => String(l.msg).startsWith('drain complete'))
    expect(drains).toHaveLength(1)
    expect(drains[0]).toMatchObject({ level: 30, served: 3, turnedAway: 0, inFlightAtClose: 0 })
    expect(t.logs.entries().filter((l) => (l.level as number) >= 50 || l.code === 'SHUTTING_DOWN')).toEqual([])
  })
})

/** http_drain_requests_total{outcome} from the app's own registry (readable after close). */
async function drainCount(t: TestApp, outcome: 'served' | 'turned_away'): Promise<number> {
  const metric = await t.app.internals.metrics.registry.getSingleMetric('http_drain_requests_total')?.get()
  return metric?.values.find((v) => v.labels.outcome === outcome)?.value ?? Number.NaN
}
