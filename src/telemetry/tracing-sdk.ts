import { register } from 'node:module'
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base'
// A dependency of @opentelemetry/instrumentation (one copy in the tree): its loader hook lets the instrumentations
// wrap ES-module imports (`import { Redis } from 'ioredis'`), and only the modules they hook.
import { createAddHookMessageChannel } from 'import-in-the-middle'
import { setTracingHandle, type TracingHandle } from './tracing-state.js'

export interface StartTracingOptions {
  serviceName: string
  /** Replaces the OTLP exporter (tests pass an in-memory exporter's processor). */
  spanProcessors?: SpanProcessor[]
}

/** Paths whose requests are not traced: scrapes and probes every few seconds would drown the real traffic. */
export function untracedPath(url: string | undefined): boolean {
  return url === '/metrics' || (url?.startsWith('/health/') ?? false)
}

/**
 * Starts the OpenTelemetry Node SDK: W3C trace context and baggage propagation (a caller's `traceparent` is
 * continued), OTLP over HTTP (JSON; endpoint, headers, timeout, batching and sampler from the standard OTEL_*
 * variables), and instrumentations for http, Fastify, ioredis and pg. Only traces: metrics stay with Prometheus and
 * logs with pino (which gets trace_id/span_id from the app's logger mixin). Nothing here records a token or its hash:
 * Redis spans carry the command name only, pg spans the SQL text with its $n placeholders, never the values.
 * Called only by the bootstrap (tracing.ts) and by tests, before the app's modules are imported.
 */
export async function startTracing(options: StartTracingOptions): Promise<TracingHandle> {
  const { registerOptions, waitForAllMessagesAcknowledged } = createAddHookMessageChannel()
  register('import-in-the-middle/hook.mjs', import.meta.url, registerOptions)

  const [{ NodeSDK }, { OTLPTraceExporter }, { HttpInstrumentation }, { IORedisInstrumentation }, { PgInstrumentation }, fastifyOtel] =
    await Promise.all([
      import('@opentelemetry/sdk-node'),
      import('@opentelemetry/exporter-trace-otlp-http'),
      import('@opentelemetry/instrumentation-http'),
      import('@opentelemetry/instrumentation-ioredis'),
      import('@opentelemetry/instrumentation-pg'),
      import('@fastify/otel'),
    ])
  const { FastifyOtelInstrumentation } = fastifyOtel

  const sdk = new NodeSDK({
    serviceName: options.serviceName,
    ...(options.spanProcessors ? { spanProcessors: options.spanProcessors } : { traceExporter: new OTLPTraceExporter() }),
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [
      new HttpInstrumentation({ ignoreIncomingRequestHook: (request) => untracedPath(request.url) }),
      // The request and handler spans, not one per hook: the hooks (request id, service key, load shedding) cost
      // microseconds, and a span each would double a trace's size.
      new FastifyOtelInstrumentation({
        registerOnInitialization: true,
        instrumentHooks: false,
        ignorePaths: (route: { url: string }) => untracedPath(route.url),
      }),
      // The command name only: a key names a token's hash, and arguments may hold a cached session.
      new IORedisInstrumentation({ requireParentSpan: true, dbStatementSerializer: (command) => command }),
      new PgInstrumentation({ requireParentSpan: true, enhancedDatabaseReporting: false }),
    ],
  })
  sdk.start()
  await waitForAllMessagesAcknowledged()

  let stopped: Promise<void> | undefined
  const handle: TracingHandle = {
    serviceName: options.serviceName,
    shutdown() {
      stopped ??= sdk.shutdown().catch(() => undefined)
      return stopped
    },
  }
  setTracingHandle(handle)
  return handle
}
