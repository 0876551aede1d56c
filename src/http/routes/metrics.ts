import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import type { Registry } from 'prom-client'

export interface MetricsRouteOptions {
  registry: Registry
  /** When set (METRICS_API_KEYS), a scraper must present one of its keys. */
  requireKey?: (request: FastifyRequest) => Promise<void>
}

export const metricsRoute: FastifyPluginAsync<MetricsRouteOptions> = async (app, opts) => {
  if (opts.requireKey) app.addHook('onRequest', opts.requireKey)
  app.get('/metrics', async (_request, reply) => {
    const body = await opts.registry.metrics()
    return reply.type(opts.registry.contentType).send(body)
  })
}
