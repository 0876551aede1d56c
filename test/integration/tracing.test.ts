import { createRequire } from 'node:module'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { InMemorySpanExporter, ReadableSpan } from '@opentelemetry/sdk-trace-base'
import type { TracingHandle } from '../../src/telemetry/tracing-state.js'
import type { TestDatabase } from '../support/database.js'
import type { TestApp, startTestApp as StartTestApp } from '../support/app.js'

/**
 * Tracing, in process, with an in-memory span exporter: the SDK is started the way the bootstrap starts it (same
 * function, same instrumentations) before any module it instruments is imported, so everything else in this file is
 * imported dynamically after it. The real bootstrap, OTLP export and the off switch are covered by
 * tracing-bootstrap.test.ts.
 */

// A caller's W3C trace context, as the Studio backend would send it.
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736'
const PARENT_SPAN_ID = '00f067aa0ba902b7'
const traceparent = `00-${TRACE_ID}-${PARENT_SPAN_ID}-01`

let exporter: InMemorySpanExporter
let tracing: TracingHandle
let db: TestDatabase
let startTestApp: typeof StartTestApp
let hashToken: (token: string) => string
let t: TestApp | undefined
// No pollers: with autopipelining, a command runs in the context of the first command of its batch, so a poll batched
// with a request's GET would take that span out of the request's trace.
const env = { TELEMETRY_REDIS_INFO_INTERVAL_MS: '0', TELEMETRY_SLOWLOG_INTERVAL_MS: '0' }

beforeAll(async () => {
  const { InMemorySpanExporter, SimpleSpanProcessor } = await import('@opentelemetry/sdk-trace-base')
  const { startTracing } = await import('../../src/telemetry/tracing-sdk.js')
  exporter = new InMemorySpanExporter()
  tracing = await startTracing({ serviceName: 'studio-session-cache-test', spanProcessors: [new SimpleSpanProcessor(exporter)] })
  // vitest imports packages by file URL, which the ES-module hook does not match by name; one require() lets the
  // CommonJS hook patch ioredis (the app's later import gets the same, patched, module). Plain node needs no such help
  // (tracing-bootstrap.test.ts runs the real server and sees the Redis spans too).
  createRequire(import.meta.url)('ioredis')
  ;({ startTestApp } = await import('../support/app.js'))
  ;({ hashToken } = await import('../../src/domain/token.js'))
  const { createTestDatabase } = await import('../support/database.js')
  db = await createTestDatabase()
})
afterEach(async () => {
  await t?.close()
  t = undefined
  exporter.reset()
})
afterAll(async () => {
  await db?.drop()
  await tracing?.shutdown()
})

const spansOf = (traceId: string) => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId)
const named = (spans: ReadableSpan[], name: string) => spans.filter((s) => s.name === name)
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId
/** True when `ancestor` is on the chain of parents from `span`. */
function descends(span: ReadableSpan, ancestor: ReadableSpan, all: ReadableSpan[]): boolean {
  const byId = new Map(all.map((s) => [s.spanContext().spanId, s]))
  for (let at = byId.get(parentOf(span) ?? ''); at; at = byId.get(parentOf(at) ?? '')) {
    if (at === ancestor) return true
  }
  return false
}

async function validate(app: TestApp, token: string, headers: Record<string, string> = { traceparent }) {
  return app.app.inject({ method: 'POST', url: '/validate', payload: { token }, headers })
}

describe('tracing', () => {
  it('continues the caller’s traceparent; session.validate carries source, result and breaker state; Redis and Postgres spans are its children', async () => {
    t = await startTestApp({ db, env })
    const { token } = await db.insertSession()

    expect((await validate(t, token)).json()).toMatchObject({ valid: true, source: 'postgres' })
    await t.settle()
    expect((await validate(t, token)).json()).toMatchObject({ valid: true, source: 'redis' })

    const spans = spansOf(TRACE_ID)
    const requests = named(spans, 'request')
    expect(requests).toHaveLength(2)
    // The request span continues the caller's trace: same trace id, the caller's span as its parent.
    for (const request of requests) expect(parentOf(request)).toBe(PARENT_SPAN_ID)

    const validations = named(spans, 'session.validate')
    expect(validations.map((s) => s.attributes)).toEqual([
      { 'session.breaker_open': false, 'session.source': 'postgres', 'session.result': 'valid' },
      { 'session.breaker_open': false, 'session.source': 'redis', 'session.result': 'valid' },
    ])
    for (const [i, validation] of validations.entries()) expect(descends(validation, requests[i]!, spans)).toBe(true)

    // First validation: a Redis GET (a miss) then the Postgres lookup, both inside session.validate.
    const [fromPostgres, fromRedis] = validations as [ReadableSpan, ReadableSpan]
    const pgQueries = spans.filter((s) => s.name.startsWith('pg.query'))
    expect(pgQueries.some((s) => descends(s, fromPostgres, spans))).toBe(true)
    const gets = spans.filter((s) => s.attributes['db.system.name'] === 'redis' && s.name === 'get')
    expect(gets.filter((s) => descends(s, fromPostgres, spans))).toHaveLength(1)
    expect(gets.filter((s) => descends(s, fromRedis, spans))).toHaveLength(1)
    expect(pgQueries.some((s) => descends(s, fromRedis, spans))).toBe(false)
    // A Redis span names the command only: never a key (which carries the token's hash) or a value.
    for (const get of gets) expect(get.attributes['db.query.text']).toBe('get')

    // Neither the token nor its hash appears anywhere in what was exported.
    const exported = JSON.stringify(exporter.getFinishedSpans().map((s) => ({ name: s.name, attributes: s.attributes, events: s.events })))
    expect(exported).not.toContain(token)
    expect(exported).not.toContain(hashToken(token))
    expect(exported).not.toContain(hashToken(token).slice(0, 16))
  })

  it('records not-valid results, and an unanswerable validation as an error span with its code', async () => {
    let storeDown = false
    t = await startTestApp({
      db,
      env,
      overrides: {
        wrapStore: (store) => ({
          ...store,
          async findByTokenHash(hash) {
            if (storeDown) throw Object.assign(new Error('Session store unavailable'), { code: 'SESSION_STORE_UNAVAILABLE', statusCode: 503 })
            return store.findByTokenHash(hash)
          },
        }),
      },
    })
    expect((await validate(t, 'never-issued')).json()).toEqual({ valid: false, reason: 'not_found' })
    storeDown = true
    expect((await validate(t, 'another-never-issued')).statusCode).toBe(503)

    const validations = named(spansOf(TRACE_ID), 'session.validate')
    expect(validations).toHaveLength(2)
    expect(validations[0]!.attributes).toMatchObject({ 'session.source': 'postgres', 'session.result': 'not_found' })
    expect(validations[1]!.attributes).toMatchObject({ 'session.result': 'error', 'error.type': 'SESSION_STORE_UNAVAILABLE' })
    expect(validations[1]!.status).toMatchObject({ code: 2, message: 'SESSION_STORE_UNAVAILABLE' })
  })

  it('marks a validation that began with the breaker open, and traces invalidations with kind and counts', async () => {
    t = await startTestApp({ db, env })
    const { token, sessionId } = await db.insertSession()
    await validate(t, token)
    await t.settle()
    t.app.internals.breaker.open()
    expect((await validate(t, token)).json()).toMatchObject({ valid: true, source: 'postgres' })
    t.app.internals.breaker.close()
    expect((await t.invalidate({ sessionId }, { traceparent })).json()).toEqual({ invalidated: 1, revoked: 0 })

    const spans = spansOf(TRACE_ID)
    const validations = named(spans, 'session.validate')
    expect(validations.map((s) => s.attributes['session.breaker_open'])).toEqual([false, true])
    // With the breaker open, Redis is not asked at all.
    expect(spans.some((s) => s.attributes['db.system.name'] === 'redis' && descends(s, validations[1]!, spans))).toBe(false)
    const [invalidation] = named(spans, 'session.invalidate')
    expect(invalidation?.attributes).toEqual({
      'session.invalidation.kind': 'session',
      'session.invalidation.revoke': false,
      'session.invalidation.entries': 1,
      'session.invalidation.revoked': 0,
    })
    expect(JSON.stringify(invalidation?.attributes)).not.toContain(sessionId)
  })

  it('puts trace_id and span_id on every log line written while a span is active, and on none outside one', async () => {
    t = await startTestApp({ db, env })
    const { sessionId } = await db.insertSession()
    const startupLines = t.logs.entries()
    expect(startupLines.length).toBeGreaterThan(0)
    for (const line of startupLines) expect(line).not.toHaveProperty('trace_id')

    await t.invalidate({ sessionId }, { traceparent, 'x-request-id': 'req-traced-1' })
    const requestLines = t.logs.entries().filter((l) => l.requestId === 'req-traced-1')
    // The audit line and the debug "request completed" line at least.
    expect(requestLines.length).toBeGreaterThanOrEqual(2)
    for (const line of requestLines) {
      expect(line.trace_id, String(line.msg)).toBe(TRACE_ID)
      expect(line.span_id).toMatch(/^[0-9a-f]{16}$/)
    }
    const spanIds = new Set(spansOf(TRACE_ID).map((s) => s.spanContext().spanId))
    for (const line of requestLines) expect(spanIds).toContain(line.span_id)
  })
})
