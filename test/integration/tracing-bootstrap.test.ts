import { execFile, spawn, type ChildProcess } from 'node:child_process'
import http from 'node:http'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { keyScheme } from '../../src/cache/keys.js'
import { hashToken } from '../../src/domain/token.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { TEST_REDIS_URL } from '../support/env.js'
import { eventually } from '../support/gate.js'
import { freePort } from '../../src/dev/free-port.js'

/**
 * The tracing bootstrap for real: the server as a child process (`node --import …/tracing.ts src/server.ts`, as in
 * production with dist/), exporting OTLP/HTTP (JSON) to a receiver in this test. And the off switch: with no endpoint
 * set, none of the SDK or the instrumentations is loaded (server.ts imports the same bootstrap, so `node
 * dist/server.js` behaves the same).
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const NODE = `${ROOT}node_modules/.bin/node`
const TRACE_ID = '0af7651916cd43dd8448eb211c80319c'
const PARENT_SPAN_ID = 'b7ad6b7169203331'

interface OtlpSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  kind: number
  attributes?: Array<{ key: string; value: Record<string, unknown> }>
}


/** An OTLP/HTTP receiver: keeps every JSON body posted to /v1/traces. */
async function startReceiver() {
  const bodies: string[] = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      if (req.url === '/v1/traces') bodies.push(Buffer.concat(chunks).toString())
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    bodies,
    spans(): Array<OtlpSpan & { service: unknown }> {
      return bodies.flatMap((body) =>
        (JSON.parse(body) as { resourceSpans: Array<{ resource: { attributes: OtlpSpan['attributes'] }; scopeSpans: Array<{ spans: OtlpSpan[] }> }> }).resourceSpans.flatMap((r) =>
          r.scopeSpans.flatMap((s) => s.spans.map((span) => ({ ...span, service: r.resource.attributes?.find((a) => a.key === 'service.name')?.value.stringValue }))),
        ),
      )
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

function post(port: number, path: string, body: unknown, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const payload = JSON.stringify(body)
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path, agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), ...headers } },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }))
      },
    )
    req.setTimeout(10_000, () => req.destroy(new Error(`${path} timed out`)))
    req.on('error', reject)
    req.end(payload)
  })
}

function get(port: number, path: string) {
  return new Promise<number>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => (res.resume(), resolve(res.statusCode ?? 0))).on('error', reject)
  })
}

const attr = (span: OtlpSpan, key: string) => {
  const value = span.attributes?.find((a) => a.key === key)?.value
  return value && (value.stringValue ?? value.boolValue ?? value.intValue)
}

describe('tracing bootstrap', () => {
  let db: TestDatabase
  let receiver: Awaited<ReturnType<typeof startReceiver>>
  let child: ChildProcess | undefined
  const output: string[] = []

  beforeAll(async () => {
    db = await createTestDatabase()
    receiver = await startReceiver()
  })
  afterAll(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL')
    await receiver?.close()
    await db?.drop()
  })

  it('exports the server’s spans over OTLP/HTTP: the caller’s trace continued, session.validate over its Redis and Postgres spans, no token, trace ids in the logs', async () => {
    const port = await freePort()
    const prefix = `ssc-trace-${process.pid}-${Date.now()}:`
    // The documented form: the bootstrap preloaded with --import (server.ts's own import of it is then a no-op).
    child = spawn(NODE, ['--import', 'tsx', '--import', `${ROOT}src/telemetry/tracing.ts`, `${ROOT}src/server.ts`], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/tmp',
        NODE_ENV: 'test',
        HOST: '127.0.0.1',
        PORT: String(port),
        LOG_LEVEL: 'debug',
        DATABASE_URL: db.url,
        DATABASE_SCHEMA: db.schema,
        REDIS_URL: TEST_REDIS_URL,
        REDIS_KEY_PREFIX: prefix,
        // No pollers: with autopipelining, a command runs in the context of the first command of its batch, so a
        // poll batched with a request's GET would take that span out of the request's trace.
        TELEMETRY_REDIS_INFO_INTERVAL_MS: '0',
        TELEMETRY_SLOWLOG_INTERVAL_MS: '0',
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_SERVICE_NAME: 'session-cache-under-test',
        // Export within 100 ms rather than the default 5 s.
        OTEL_BSP_SCHEDULE_DELAY: '100',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const started = child
    started.stdout?.on('data', (c: Buffer) => output.push(c.toString()))
    started.stderr?.on('data', (c: Buffer) => output.push(c.toString()))
    const exited = new Promise<number | null>((resolve) => started.once('exit', (code) => resolve(code)))
    await eventually(() => started.exitCode !== null || get(port, '/health/ready').then((s) => s === 200, () => false), 30_000, 'server ready')
    expect(started.exitCode, output.join('')).toBeNull()

    const { token } = await db.insertSession()
    const headers = { traceparent: `00-${TRACE_ID}-${PARENT_SPAN_ID}-01`, 'x-request-id': 'traced-request-1' }
    expect(JSON.parse((await post(port, '/validate', { token }, headers)).body)).toMatchObject({ valid: true, source: 'postgres' })
    // The fill is in the background: wait until it has landed (so no write shares a pipeline with the next read).
    const redis = new Redis(TEST_REDIS_URL)
    try {
      await eventually(async () => (await redis.exists(keyScheme(prefix).entry(hashToken(token)))) === 1, 10_000, 'the cache fill')
      expect(JSON.parse((await post(port, '/validate', { token }, headers)).body)).toMatchObject({ valid: true, source: 'redis' })
      await redis.del(...(await redis.keys(`${prefix}*`)))
    } finally {
      redis.disconnect()
    }
    expect(await get(port, '/metrics')).toBe(200)

    // SIGTERM: the server drains, closes, and flushes the spans still buffered before it exits.
    started.kill('SIGTERM')
    expect(await exited).toBe(0)
    const spans = receiver.spans()
    const traced = spans.filter((s) => s.traceId === TRACE_ID)
    expect(new Set(spans.map((s) => s.service))).toEqual(new Set(['session-cache-under-test']))

    // The HTTP server span continues the caller's trace; no probe or scrape was traced.
    const servers = spans.filter((s) => s.kind === 2)
    expect(servers.length).toBeGreaterThanOrEqual(2)
    for (const server of servers) {
      expect(server.traceId).toBe(TRACE_ID)
      expect(server.parentSpanId).toBe(PARENT_SPAN_ID)
      expect(attr(server, 'url.path') ?? attr(server, 'http.target')).toBe('/validate')
    }

    const byId = new Map(traced.map((s) => [s.spanId, s]))
    const descends = (span: OtlpSpan, ancestor: OtlpSpan) => {
      for (let at = byId.get(span.parentSpanId ?? ''); at; at = byId.get(at.parentSpanId ?? '')) if (at === ancestor) return true
      return false
    }
    const validations = traced.filter((s) => s.name === 'session.validate')
    expect(validations).toHaveLength(2)
    const first = validations.find((s) => attr(s, 'session.source') === 'postgres')!
    const last = validations.find((s) => attr(s, 'session.source') === 'redis')!
    expect(attr(first, 'session.result')).toBe('valid')
    expect(attr(first, 'session.breaker_open')).toBe(false)
    expect(attr(last, 'session.result')).toBe('valid')
    for (const validation of validations) expect(servers.some((server) => descends(validation, server))).toBe(true)
    expect(traced.some((s) => s.name.startsWith('pg.query') && descends(s, first))).toBe(true)
    expect(traced.some((s) => s.name === 'get' && attr(s, 'db.system.name') === 'redis' && descends(s, last))).toBe(true)

    const everything = receiver.bodies.join('\n')
    expect(everything).not.toContain(token)
    expect(everything).not.toContain(hashToken(token))

    const lines = output
      .join('')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(lines.some((l) => l.msg === 'tracing on: spans exported over OTLP/HTTP')).toBe(true)
    const requestLines = lines.filter((l) => l.requestId === 'traced-request-1')
    expect(requestLines.length).toBeGreaterThan(0)
    for (const line of requestLines) expect(line.trace_id).toBe(TRACE_ID)
  }, 60_000)

  it('with no OTLP endpoint set (or OTEL_SDK_DISABLED) loads no OpenTelemetry SDK or instrumentation at all; with one, does', async () => {
    const run = async (env: Record<string, string>) => {
      const { stdout } = await promisify(execFile)(NODE, ['--import', 'tsx', `${ROOT}test/support/tracing-probe.ts`], {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
        timeout: 30_000,
      })
      return JSON.parse(stdout.trim().split('\n').pop()!) as { started: boolean; loaded: string[] }
    }
    const [off, disabled, on] = await Promise.all([
      run({}),
      run({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_SDK_DISABLED: 'true' }),
      run({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url }),
    ])
    expect(off).toEqual({ started: false, loaded: [] })
    expect(disabled).toEqual({ started: false, loaded: [] })
    expect(on.started).toBe(true)
    expect(on.loaded.some((path) => path.includes('/@opentelemetry/sdk-node/'))).toBe(true)
  }, 60_000)
})
