import { createRequire } from 'node:module'

/**
 * OpenTelemetry is an optional peer: when @opentelemetry/api is installed, each call is a CLIENT span and its context
 * is injected (traceparent, tracestate) by whatever propagator the application registered. Without it, a
 * `traceparent` the caller passes is forwarded as is.
 */
type Api = typeof import('@opentelemetry/api')

let api: Api | null | undefined

function load(): Api | null {
  if (api === undefined) {
    try {
      api = createRequire(import.meta.url)('@opentelemetry/api') as Api
    } catch {
      api = null
    }
  }
  return api
}

export interface CallSpan {
  /** Adds the trace headers for this call (no-op without OpenTelemetry or a registered propagator). */
  inject(headers: Record<string, string>): void
  end(outcome: { status?: number; error?: Error; attempts: number }): void
}

const NO_SPAN: CallSpan = { inject: () => undefined, end: () => undefined }

export function startCallSpan(name: string, attributes: Record<string, string | number>): CallSpan {
  const otel = load()
  if (!otel) return NO_SPAN
  const span = otel.trace.getTracer('@studio-session-cache/client').startSpan(name, { kind: otel.SpanKind.CLIENT, attributes })
  const ctx = otel.trace.setSpan(otel.context.active(), span)
  return {
    inject(headers) {
      otel.propagation.inject(ctx, headers)
    },
    end({ status, error, attempts }) {
      if (status !== undefined) span.setAttribute('http.response.status_code', status)
      span.setAttribute('session_client.attempts', attempts)
      if (error) {
        span.recordException(error)
        span.setStatus({ code: otel.SpanStatusCode.ERROR, message: error.message })
      }
      span.end()
    },
  }
}
