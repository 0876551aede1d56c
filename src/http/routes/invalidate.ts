import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import type { InvalidationTarget } from '../../domain/session.js'
import { hashToken } from '../../domain/token.js'
import { Errors } from '../../errors.js'
import type { Invalidator } from '../../service/invalidator.js'
import { ErrorResponse, InvalidateBody, InvalidateResponse } from '../schemas.js'

export interface InvalidateRouteOptions {
  invalidator: Invalidator
  tokenMaxLength: number
  /** When set, every route of this plugin requires a service key (the hook is scoped to the plugin). */
  requireKey?: (request: FastifyRequest) => Promise<void>
}

/** POST /invalidate: exactly one of token, sessionId, userId; `revoke: true` also sets revoked_at (logout). */
export const invalidateRoute: FastifyPluginAsyncTypebox<InvalidateRouteOptions> = async (app, opts) => {
  if (opts.requireKey) app.addHook('onRequest', opts.requireKey)
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
      const result = await opts.invalidator.invalidate(target, revoke === true)
      request.log.info({ kind: target.kind, revoke: revoke === true, ...result }, 'sessions invalidated')
      return result
    },
  )
}
