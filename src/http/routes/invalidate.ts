import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import type { InvalidationTarget } from '../../domain/session.js'
import { hashToken } from '../../domain/token.js'
import { Errors, isCatalogued } from '../../errors.js'
import type { Invalidator } from '../../service/invalidator.js'
import { ErrorResponse, InvalidateBody, InvalidateResponse } from '../schemas.js'

export interface InvalidateRouteOptions {
  invalidator: Invalidator
  tokenMaxLength: number
  /** When set, every route of this plugin requires a service key (the hook is scoped to the plugin). */
  requireKey?: (request: FastifyRequest) => Promise<void>
}

interface AuditDetails {
  kind?: InvalidationTarget['kind']
  revoke?: boolean
  invalidated?: number
  revoked?: number
  code?: string
}

const OUTCOME = (status: number) => (status < 300 ? 'invalidated' : status === 401 ? 'denied' : status < 500 ? 'rejected' : 'failed')

/** POST /invalidate: exactly one of token, sessionId, userId; `revoke: true` also sets revoked_at (logout). */
export const invalidateRoute: FastifyPluginAsyncTypebox<InvalidateRouteOptions> = async (app, opts) => {
  if (opts.requireKey) app.addHook('onRequest', opts.requireKey)
  // The audit trail: one structured line per /invalidate call, whatever its outcome (invalidated, denied for want of
  // a valid key, rejected as malformed, failed), with the caller's key id (never the key; null when no keys are
  // configured), the target's kind (never the token, its hash or an id), the counts, and the request id (every
  // request's log line carries it as requestId).
  const audited = new WeakMap<FastifyRequest, AuditDetails>()
  app.addHook('onError', (request, _reply, err, done) => {
    // Catalogued codes only (UNAUTHORIZED, SESSION_CACHE_UNAVAILABLE...); the error handler maps the rest.
    if (isCatalogued(err)) audited.set(request, { ...audited.get(request), code: err.code })
    done()
  })
  app.addHook('onResponse', (request, reply, done) => {
    const details = audited.get(request) ?? {}
    const outcome = OUTCOME(reply.statusCode)
    request.log.info(
      {
        audit: 'session.invalidate',
        outcome,
        statusCode: reply.statusCode,
        keyId: request.serviceKeyId ?? null,
        kind: details.kind ?? null,
        revoke: details.revoke ?? null,
        invalidated: details.invalidated ?? 0,
        revoked: details.revoked ?? 0,
        ...(details.code ? { code: details.code } : {}),
      },
      outcome === 'invalidated' ? 'sessions invalidated' : `invalidation ${outcome}`,
    )
    done()
  })
  app.post(
    '/invalidate',
    {
      schema: {
        body: InvalidateBody(opts.tokenMaxLength),
        response: { 200: InvalidateResponse, '4xx': ErrorResponse, '5xx': ErrorResponse },
      },
    },
    async (request) => {
      const { token, sessionId, userId, revoke } = request.body
      const given = [token, sessionId, userId].filter((v) => v !== undefined).length
      if (given === 0) throw new Errors.TargetRequired()
      if (given > 1) throw new Errors.TargetAmbiguous()
      const target: InvalidationTarget =
        token !== undefined
          ? { kind: 'token', tokenHash: hashToken(token) }
          : sessionId !== undefined
            ? { kind: 'session', sessionId: sessionId.toLowerCase() }
            : { kind: 'user', userId: (userId as string).toLowerCase() }
      const details: AuditDetails = { kind: target.kind, revoke: revoke === true }
      audited.set(request, details)
      const result = await opts.invalidator.invalidate(target, revoke === true)
      details.invalidated = result.invalidated
      details.revoked = result.revoked
      return result
    },
  )
}
