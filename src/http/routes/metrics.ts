import type { FastifyPluginAsync } from 'fastify'
import type { Registry } from 'prom-client'

export const metricsRoute: FastifyPluginAsync<{ registry: Registry }> = async (app, opts) => {
  app.get('/metrics', async (_request, reply) => {
    const body = await opts.registry.metrics()
    return reply.type(opts.registry.contentType).send(body)
  })
}
