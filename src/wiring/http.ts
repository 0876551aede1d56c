import underPressure from '@fastify/under-pressure'
import type { FastifyInstance } from 'fastify'
import type { Config } from '../config.js'
import type { Drain } from '../http/drain.js'
import { registerErrorHandling } from '../http/error-handler.js'
import { loadSheddingOptions } from '../http/fastify-setup.js'
import { healthRoutes } from '../http/routes/health.js'
import { invalidateRoute } from '../http/routes/invalidate.js'
import { metricsRoute } from '../http/routes/metrics.js'
import { validateRoute } from '../http/routes/validate.js'
import { serviceKeyCheck } from '../http/service-key.js'
import type { healthReport } from '../health/report.js'
import type { Invalidator } from '../service/invalidator.js'
import type { Validator } from '../service/validator.js'
import type { Metrics } from '../telemetry/metrics.js'

export interface HttpWiring {
  config: Config
  /** Whether the logger writes debug lines: a line per request then. */
  debug: boolean
  /** SIGTERM's drain (src/http/drain.ts), made by the composition root before anything that needs its budget. */
  drain: Drain
  metrics: Metrics
  validator: Validator
  invalidator: Invalidator
  report: () => ReturnType<typeof healthReport>
  /** Readiness, for /health/ready. */
  ready: () => boolean
}

/**
 * The HTTP surface: error answers, the request hooks (request id, the drain), and the routes. The drain's preClose
 * is registered here; what the drain does when the app closes is the composition root's lifecycle.
 */
export async function wireHttp(app: FastifyInstance, deps: HttpWiring): Promise<void> {
  const { config, drain, metrics } = deps
  registerErrorHandling(app, {
    tokenMaxLength: config.http.tokenMaxLength,
    bodyLimit: config.http.bodyLimitBytes,
    retryAfterSeconds: config.http.retryAfterSeconds,
    counted: metrics.errorAnswered,
  })
  // JSON only: a text/plain body is refused with 415 rather than parsed as a string.
  app.removeContentTypeParser('text/plain')
  // Callback style rather than async: no promise per request on the hot path.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id)
    // While draining: answered with Connection: close, or turned away (SHUTTING_DOWN) once the listener has closed.
    if (drain.active) done(drain.admit(request, reply))
    else done()
  })
  app.addHook('preClose', (done) => drain.closing(done))
  if (deps.debug) {
    app.addHook('onResponse', async (request, reply) => {
      request.log.debug({ method: request.method, url: request.url, statusCode: reply.statusCode, ms: reply.elapsedTime }, 'request completed')
    })
  }
  // Which service key a caller used (its id, never the key), for log lines and the audit trail.
  app.decorateRequest('serviceKeyId', null)
  const requireKey = config.http.apiKeys.length > 0 ? serviceKeyCheck(config.http.apiKeys) : undefined
  // The session routes shed load (503 OVERLOADED) while the event loop lags; health and metrics stay outside this
  // scope, so probes keep seeing the truth.
  await app.register(async (sessions) => {
    const shedding = loadSheddingOptions(config)
    if (shedding) await sessions.register(underPressure, shedding)
    await sessions.register(validateRoute, {
      validator: deps.validator,
      tokenMaxLength: config.http.tokenMaxLength,
      requireKey: config.http.requireKeyForValidate ? requireKey : undefined,
    })
    await sessions.register(invalidateRoute, { invalidator: deps.invalidator, tokenMaxLength: config.http.tokenMaxLength, requireKey })
  })
  await app.register(healthRoutes, { report: deps.report, ready: deps.ready })
  await app.register(metricsRoute, {
    registry: metrics.registry,
    requireKey: config.http.metricsKeys.length > 0 ? serviceKeyCheck(config.http.metricsKeys) : undefined,
  })
}
