import { STATUS_CODES } from 'node:http'
import type { FastifyError, FastifyInstance } from 'fastify'
import { Errors, isCatalogued } from '../errors.js'

interface ValidationIssue {
  keyword: string
  instancePath: string
  params: Record<string, unknown>
  message?: string
}

/** Turns a JSON-schema failure into the catalogue's stable codes, so callers never parse messages. */
function fromValidation(issue: ValidationIssue | undefined, tokenMaxLength: number): FastifyError {
  if (!issue) return new Errors.BodyNotObject()
  const field = issue.instancePath.replace(/^\//, '')
  if (field === '') {
    if (issue.keyword === 'required') {
      return issue.params.missingProperty === 'token' ? new Errors.TokenMissing() : new Errors.InvalidField(issue.params.missingProperty, 'is required')
    }
    if (issue.keyword === 'additionalProperties') return new Errors.UnknownField(String(issue.params.additionalProperty))
    return new Errors.BodyNotObject()
  }
  if (field === 'token') {
    switch (issue.keyword) {
      case 'type':
        return new Errors.TokenNotString()
      case 'minLength':
        return new Errors.TokenEmpty()
      case 'maxLength':
        return new Errors.TokenTooLong(tokenMaxLength)
      case 'pattern':
        return new Errors.TokenInvalidChars()
    }
  }
  if ((field === 'sessionId' || field === 'userId') && (issue.keyword === 'format' || issue.keyword === 'pattern')) {
    // One message whichever of the two keywords caught it (the pattern would otherwise be quoted back at the caller).
    return new Errors.InvalidField(field, 'must be a UUID')
  }
  return new Errors.InvalidField(field, issue.message ?? 'is invalid')
}

/** Maps Fastify's own errors onto the catalogue; anything unexpected is a 500 with a generic message. */
export function toCatalogued(err: FastifyError, tokenMaxLength: number, bodyLimit: number): FastifyError {
  if (err.validation) return fromValidation(err.validation[0] as ValidationIssue | undefined, tokenMaxLength)
  switch (err.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new Errors.InvalidJson()
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new Errors.BodyTooLarge(bodyLimit)
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' ? new Errors.UnsupportedMediaType() : new Errors.InvalidJson()
  }
  // Thrown by a route or hook (TargetRequired, Unauthorized, StoreUnavailable...): already the answer.
  if (isCatalogued(err)) return err
  if (err instanceof SyntaxError || (err.statusCode === 400 && err.code?.startsWith('FST_'))) return new Errors.InvalidJson()
  return new Errors.Internal()
}

export interface ErrorHandlerOptions {
  tokenMaxLength: number
  bodyLimit: number
  retryAfterSeconds: number
  counted(code: string): void
}

const SHED: ReadonlySet<string> = new Set([new Errors.StoreBusy().code, new Errors.Overloaded().code])
const SHED_LOG_INTERVAL_MS = 10_000
/**
 * 5xx answers counted (below) and summed up elsewhere, never logged one line each: the drain logs its own counts, and
 * a misconfigured store is logged by the store's wiring (once per query and SQLSTATE every 10 s, and on each change).
 */
const SUMMARISED: ReadonlySet<string> = new Set([new Errors.ShuttingDown().code, new Errors.StoreMisconfigured().code])

/** The message of what caused a catalogued error (a pg or ioredis error), without its stack. */
function causeOf(err: FastifyError): string | undefined {
  const cause = (err as { cause?: unknown }).cause
  return cause instanceof Error ? cause.message : undefined
}

export function registerErrorHandling(app: FastifyInstance, options: ErrorHandlerOptions): void {
  const lastShedLog = new Map<string, number>()
  app.setErrorHandler((err: FastifyError, request, reply) => {
    const answer = toCatalogued(err, options.tokenMaxLength, options.bodyLimit)
    const statusCode = answer.statusCode ?? 500
    if (SHED.has(answer.code)) {
      // Load shedding answers come in floods by nature: counted (below) and summarised by their source, never logged
      // one line each, so an attack cannot turn into a log flood.
      const now = Date.now()
      if (now - (lastShedLog.get(answer.code) ?? 0) >= SHED_LOG_INTERVAL_MS) {
        lastShedLog.set(answer.code, now)
        request.log.warn({ code: answer.code }, 'shedding load: requests answered 503 (at most one line per code every 10 s)')
      }
      reply.header('retry-after', String(options.retryAfterSeconds))
    } else if (statusCode >= 500) {
      if (statusCode === 503) reply.header('retry-after', String(options.retryAfterSeconds))
      if (!isCatalogued(err)) {
        // Not an answer we know: a bug, with its stack.
        request.log.error({ err, code: answer.code }, 'request failed')
      } else if (!SUMMARISED.has(answer.code)) {
        // A known condition (Postgres or Redis unreachable) answered as designed: worth a warning with its cause, not an
        // error; the breaker, pool and health report say the rest.
        request.log.warn({ code: answer.code, cause: causeOf(err) }, 'request failed')
      }
    } else {
      // RFC 7235 §3.1: a 401 names the scheme the caller should use.
      if (statusCode === 401) reply.header('www-authenticate', 'Bearer')
      request.log.debug({ code: answer.code }, 'request rejected')
    }
    options.counted(answer.code)
    return reply.code(statusCode).send({
      statusCode,
      code: answer.code,
      error: STATUS_CODES[statusCode] ?? 'Error',
      message: answer.message,
    })
  })
  app.setNotFoundHandler((request, reply) => {
    const err = new Errors.NotFound(request.method, request.url.split('?')[0])
    options.counted(err.code)
    return reply.code(404).send({ statusCode: 404, code: err.code, error: 'Not Found', message: err.message })
  })
}
