import http from 'node:http'
import type net from 'node:net'
import { propagation, SpanKind, trace } from '@opentelemetry/api'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSessionClient } from '../src/index.js'

/**
 * What the client puts on the wire, seen by a plain HTTP server that records each request's headers and answers as
 * the service does: the bearer key, X-Request-Id, and the W3C trace context of a CLIENT span (OpenTelemetry present and
 * registered in this test process), or the caller's own traceparent when it passes one.
 */
const seen: http.IncomingHttpHeaders[] = []
const server = http.createServer((req, res) => {
  seen.push(req.headers)
  req.resume()
  req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ valid: false, reason: 'not_found' })))
})
const exporter = new InMemorySpanExporter()
let url: string

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }))
  propagation.setGlobalPropagator(new W3CTraceContextPropagator())
})
afterAll(async () => {
  trace.disable()
  propagation.disable()
  await new Promise<void>((resolve) => server.close(() => resolve()))
})

describe('headers on the wire', () => {
  it('sends the key and request id, and the traceparent of its CLIENT span', async () => {
    const client = createSessionClient({ baseUrl: url, serviceKey: 'k-0123456789abcdef' })
    try {
      expect(await client.validate('tok_x', { requestId: 'req-42' })).toEqual({ valid: false, reason: 'not_found' })
    } finally {
      await client.close()
    }
    const headers = seen.at(-1)!
    expect(headers).toMatchObject({ authorization: 'Bearer k-0123456789abcdef', 'x-request-id': 'req-42', 'content-type': 'application/json' })
    const [span] = exporter.getFinishedSpans()
    expect(span).toMatchObject({ name: 'session-service validate', kind: SpanKind.CLIENT })
    expect(span!.attributes).toMatchObject({ 'http.response.status_code': 200, 'session_client.attempts': 1, 'session_client.request_id': 'req-42' })
    expect(headers.traceparent).toBe(`00-${span!.spanContext().traceId}-${span!.spanContext().spanId}-01`)
  })

  it("without a registered propagator, forwards the caller's traceparent as is, and generates a request id", async () => {
    propagation.disable()
    const client = createSessionClient({ baseUrl: url })
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
    try {
      await client.validate('tok_x', { traceparent })
    } finally {
      await client.close()
    }
    const headers = seen.at(-1)!
    expect(headers.traceparent).toBe(traceparent)
    expect(headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/)
    expect(headers.authorization).toBeUndefined()
  })
})
