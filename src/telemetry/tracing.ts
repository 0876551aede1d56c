/**
 * The tracing bootstrap. It must run before the app's modules load, so that the instrumentations wrap http, fastify,
 * ioredis and pg as they are first imported:
 *
 *   node --import ./dist/telemetry/tracing.js dist/server.js       (tsx: node --import tsx --import ./src/telemetry/tracing.ts …)
 *
 * server.ts also imports it first when it is the entry point, before it loads the app, so `node dist/server.js` (the
 * image's CMD) is traced as well; a second import is a no-op. It reads only the OTEL_* variables (through
 * src/config.ts); with no OTLP endpoint set, or OTEL_SDK_DISABLED=true, it does nothing else: the OpenTelemetry SDK
 * is not even loaded, and the app adds no tracing code to any request.
 */
import { loadTracingConfig } from '../config.js'
import { tracingHandle, type TracingHandle } from './tracing-state.js'

export async function bootstrapTracing(source?: Record<string, string | undefined>): Promise<TracingHandle | undefined> {
  const started = tracingHandle()
  if (started) return started
  const settings = loadTracingConfig(source)
  if (!settings?.enabled) return undefined
  const { startTracing } = await import('./tracing-sdk.js')
  return startTracing({ serviceName: settings.serviceName })
}

/** Flushes buffered spans (server.ts calls it after the app has closed); a no-op when tracing is off. */
export async function shutdownTracing(): Promise<void> {
  await tracingHandle()?.shutdown()
}

try {
  await bootstrapTracing()
} catch (err) {
  // Tracing is never a reason not to serve: the service starts without it (and says so).
  console.error(`tracing is off: the OpenTelemetry SDK failed to start: ${(err as Error).message}`)
}
