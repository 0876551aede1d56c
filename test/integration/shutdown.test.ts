import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import http from 'node:http'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { TEST_DATABASE_URL, TEST_REDIS_URL } from '../support/env.js'
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js'
import { freePort } from '../../src/dev/free-port.js'

/**
 * The real server (src/server.ts, its signal handling and close-with-grace) as a child process. Postgres is reached
 * through a delaying proxy so uncached validations are slow enough to be in flight when SIGTERM arrives: every one of
 * them must still be answered, new connections must be refused, and the process must exit 0 before its deadline.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const IN_FLIGHT = 20
const PG_DELAY_MS = 400
const SHUTDOWN_TIMEOUT_MS = 20_000
const KEY_PREFIX = `ssc-shutdown-${process.pid}-${Date.now()}:`

let db: TestDatabase
let proxy: TcpProxy
let child: ChildProcess | undefined
let port: number
const output: string[] = []
let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>


interface Answer {
  status: number
  body: string
}

/** One request on a connection of its own (no keep-alive agent), bounded in time. */
function request(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent: false,
        headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {},
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }))
        res.on('error', reject)
      },
    )
    req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path} timed out`)))
    req.on('error', reject)
    req.end(payload)
  })
}

/** Polls until `check` is true, at most `timeoutMs`; returns whether it became true. */
async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return true
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
  return check()
}

function logEntries(): Array<Record<string, unknown>> {
  return output
    .join('')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>
      } catch {
        return {}
      }
    })
}

beforeAll(async () => {
  db = await createTestDatabase()
  const target = new URL(TEST_DATABASE_URL)
  proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) })
  port = await freePort()
  const databaseUrl = new URL(TEST_DATABASE_URL)
  databaseUrl.host = `${proxy.host}:${proxy.port}`

  child = spawn(`${ROOT}node_modules/.bin/node`, ['--import', 'tsx', `${ROOT}src/server.ts`], {
    cwd: ROOT,
    env: {
      PATH: `${ROOT}node_modules/.bin:${process.env.PATH ?? ''}`,
      HOME: process.env.HOME ?? '/tmp',
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'info',
      DATABASE_URL: databaseUrl.toString(),
      DATABASE_SCHEMA: db.schema,
      // One connection per in-flight request, and timeouts well above the proxy's delay.
      DATABASE_POOL_MAX: String(IN_FLIGHT + 5),
      DATABASE_CONNECT_TIMEOUT_MS: '15000',
      DATABASE_STATEMENT_TIMEOUT_MS: '15000',
      REDIS_URL: TEST_REDIS_URL,
      REDIS_KEY_PREFIX: KEY_PREFIX,
      // Production refuses to start without it (cached user fields are encrypted).
      CACHE_ENCRYPTION_KEYS: `t:${randomBytes(32).toString('base64')}`,
      SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout?.on('data', (c: Buffer) => output.push(c.toString()))
  child.stderr?.on('data', (c: Buffer) => output.push(c.toString()))
  const started = child
  exited = new Promise((resolve) => started.once('exit', (code, signal) => resolve({ code, signal })))

  const ready = await until(
    async () => {
      if (started.exitCode !== null) return true
      return request('GET', '/health/ready').then(
        (r) => r.status === 200,
        () => false,
      )
    },
    30_000,
    100,
  )
  if (!ready || started.exitCode !== null) {
    throw new Error(`server did not become ready:\n${output.join('').slice(-4000)}`)
  }
}, 60_000)

afterAll(async () => {
  // Whatever happened, no child outlives the file.
  if (child && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL')
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))])
  }
  await proxy?.close()
  await db?.drop()
  // The child's cache fills outlive it (they have a TTL); remove them from the shared Redis.
  const redis = new Redis(TEST_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false })
  try {
    await redis.connect()
    const keys = await redis.keys(`${KEY_PREFIX}*`)
    if (keys.length > 0) await redis.del(...keys)
  } catch {
    // Cleanup only: a Redis that is gone has nothing left to clean.
  } finally {
    redis.disconnect()
  }
})

describe('SIGTERM while validations are in flight', () => {
  it('answers every in-flight request correctly, refuses new connections, and exits 0 before the deadline', async () => {
    const sessions = await Promise.all(Array.from({ length: IN_FLIGHT }, () => db.insertSession()))
    const socketsBefore = proxy.connections
    proxy.setDelay(PG_DELAY_MS)

    // Distinct tokens, none cached: each one is a Postgres read through the slow proxy.
    const answers = sessions.map((s) =>
      request('POST', '/validate', { token: s.token }).then(
        (answer) => ({ ok: true as const, answer, at: Date.now() }),
        (err: Error) => ({ ok: false as const, error: err.message }),
      ),
    )
    // In flight means past the Redis miss and waiting on Postgres: the pool opens a connection for each (two sockets
    // in the proxy per connection). Bounded; if the machine is slow the signal simply goes a little later.
    await until(() => proxy.connections - socketsBefore >= 2 * (IN_FLIGHT - 1), 10_000)
    const inFlightAtSignal = (proxy.connections - socketsBefore) / 2
    expect(inFlightAtSignal).toBeGreaterThanOrEqual(IN_FLIGHT - 1)

    const signalledAt = Date.now()
    expect(child?.kill('SIGTERM')).toBe(true)

    // New connections: anything answered in the moment before the signal is handled is 200 or 503 (draining), and
    // soon the port refuses connections altogether.
    const seen: Array<number | string> = []
    const refused = await until(
      () =>
        request('GET', '/health/ready').then(
          (r) => (seen.push(r.status), false),
          (err: NodeJS.ErrnoException) => (seen.push(err.code ?? err.message), err.code === 'ECONNREFUSED'),
        ),
      SHUTDOWN_TIMEOUT_MS,
      25,
    )
    expect(refused, `answers while draining: ${seen.join(', ')}`).toBe(true)
    for (const s of seen) expect([200, 503, 'ECONNREFUSED', 'ECONNRESET']).toContain(s)

    const settled = await Promise.all(answers)
    settled.forEach((result, i) => {
      expect(result, `request ${i}`).toMatchObject({ ok: true, answer: { status: 200 } })
      if (!result.ok) return
      expect(JSON.parse(result.answer.body), `request ${i}`).toMatchObject({
        valid: true,
        source: 'postgres',
        session: { id: sessions[i]!.sessionId, userId: sessions[i]!.userId },
      })
    })

    // They really were in flight: (nearly) all were answered after the signal was sent.
    const afterSignal = settled.filter((r) => r.ok && r.at >= signalledAt).length
    expect(afterSignal).toBeGreaterThanOrEqual(IN_FLIGHT - 1)

    const exit = await Promise.race([
      exited,
      new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), SHUTDOWN_TIMEOUT_MS + 5000)),
    ])
    expect(exit, output.join('').slice(-4000)).toEqual({ code: 0, signal: null })
    expect(Date.now() - signalledAt).toBeLessThan(SHUTDOWN_TIMEOUT_MS)

    const messages = logEntries().map((l) => l.msg)
    expect(messages).toContain('shutting down: draining in-flight requests')
    expect(messages).toContain('shutdown complete')
    const errors = logEntries().filter((l) => typeof l.level === 'number' && l.level >= 50)
    expect(errors).toEqual([])
    // The tokens never reached the logs.
    for (const s of sessions) expect(output.join('')).not.toContain(s.token)
  }, 90_000)
})
