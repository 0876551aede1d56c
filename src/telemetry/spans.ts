import { context, isSpanContextValid, SpanStatusCode, trace, type Span, type Tracer } from '@opentelemetry/api'
import type { Invalidator } from '../service/invalidator.js'
import type { Validator } from '../service/validator.js'

/**
 * The service's own spans, and trace ids on log lines. Loaded by the composition root only when the tracing bootstrap
 * started the SDK: with tracing off, no request runs any of this.
 */
export const TRACER_NAME = 'studio-session-cache'

/** Span attributes. None carries a token, its hash, a session id or a user id. */
export const SpanAttributes = {
  /** l1 | redis | postgres: where the answer came from. */
  source: 'session.source',
  /** valid | not_found | expired | revoked | user_banned | user_deleted, or error when no answer could be given. */
  result: 'session.result',
  /** Whether the Redis breaker was open when the validation began (so Redis was skipped). */
  breakerOpen: 'session.breaker_open',
  invalidationKind: 'session.invalidation.kind',
  invalidationRevoke: 'session.invalidation.revoke',
  invalidated: 'session.invalidation.entries',
  revoked: 'session.invalidation.revoked',
  errorType: 'error.type',
} as const

function failed(span: Span, err: unknown): void {
  const code = (err as { code?: unknown } | null)?.code
  const type = typeof code === 'string' ? code : 'INTERNAL_ERROR'
  span.setAttribute(SpanAttributes.errorType, type)
  // The code, not the message: a driver's message could quote what it was given.
  span.setStatus({ code: SpanStatusCode.ERROR, message: type })
}

/**
 * Wraps the validator so each validation is a `session.validate` span, active while it runs: the Redis and Postgres
 * spans of that validation are its children, and it is a child of the request's span (itself continuing the caller's
 * W3C traceparent).
 */
export function tracedValidator(validator: Validator, breakerOpen: () => boolean, tracer: Tracer = trace.getTracer(TRACER_NAME)): Validator {
  return {
    ...validator,
    // Every validation goes through validate() so that each one is a span, L1 hits included.
    validateLocally: () => undefined,
    validate(tokenHash) {
      return tracer.startActiveSpan('session.validate', { attributes: { [SpanAttributes.breakerOpen]: breakerOpen() } }, (span) =>
        validator.validate(tokenHash).then(
          (answer) => {
            span.setAttribute(SpanAttributes.source, answer.source)
            span.setAttribute(SpanAttributes.result, answer.valid ? 'valid' : answer.reason)
            span.end()
            return answer
          },
          (err: unknown) => {
            span.setAttribute(SpanAttributes.result, 'error')
            failed(span, err)
            span.end()
            throw err
          },
        ),
      )
    },
  }
}

/** Wraps the invalidator so each invalidation is a `session.invalidate` span with its kind and counts. */
export function tracedInvalidator(invalidator: Invalidator, tracer: Tracer = trace.getTracer(TRACER_NAME)): Invalidator {
  return {
    ...invalidator,
    invalidate(target, revoke) {
      const attributes = { [SpanAttributes.invalidationKind]: target.kind, [SpanAttributes.invalidationRevoke]: revoke }
      return tracer.startActiveSpan('session.invalidate', { attributes }, (span) =>
        invalidator.invalidate(target, revoke).then(
          (result) => {
            span.setAttribute(SpanAttributes.invalidated, result.invalidated)
            span.setAttribute(SpanAttributes.revoked, result.revoked)
            span.end()
            return result
          },
          (err: unknown) => {
            failed(span, err)
            span.end()
            throw err
          },
        ),
      )
    },
  }
}

/**
 * A pino mixin: trace_id, span_id and trace_flags on every line logged while a span is active. It returns a fresh
 * object each time: pino merges the line's own fields into it.
 */
export function traceLogFields(): object {
  const span = trace.getSpan(context.active())
  if (!span) return {}
  const ids = span.spanContext()
  if (!isSpanContextValid(ids)) return {}
  return { trace_id: ids.traceId, span_id: ids.spanId, trace_flags: ids.traceFlags.toString(16).padStart(2, '0') }
}
