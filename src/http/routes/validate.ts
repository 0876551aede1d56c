import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { hashToken } from '../../domain/token.js'
import type { Validator } from '../../service/validator.js'
import { ErrorResponse, ValidateBody, ValidateResponse } from '../schemas.js'
import { createTurnBarrier } from '../turn-barrier.js'

export interface ValidateRouteOptions {
  validator: Validator
  tokenMaxLength: number
  /** When set, every route of this plugin requires a service key (the hook is scoped to the plugin). */
  requireKey?: (request: FastifyRequest) => Promise<void>
}

/** POST /validate: the hot path. The token is hashed at once; nothing past this line sees it. */
export const validateRoute: FastifyPluginAsyncTypebox<ValidateRouteOptions> = async (app, opts) => {
  if (opts.requireKey) app.addHook('onRequest', opts.requireKey)
  // L1 answers go out with the rest of their turn's answers, not one write at a time (turn-barrier.ts says why).
  const endOfTurn = createTurnBarrier()
  app.post(
    '/validate',
    {
      schema: {
        body: ValidateBody(opts.tokenMaxLength),
        response: { 200: ValidateResponse, '4xx': ErrorResponse, '5xx': ErrorResponse },
      },
    },
    async (request) => {
      const tokenHash = hashToken(request.body.token)
      let answer = opts.validator.validateLocally(tokenHash)
      if (answer) await endOfTurn()
      else answer = await opts.validator.validate(tokenHash)
      if (answer.valid) {
        return { valid: true, session: answer.entry.session, user: answer.entry.user, source: answer.source }
      }
      return { valid: false, reason: answer.reason }
    },
  )
}
