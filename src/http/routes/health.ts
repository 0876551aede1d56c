import type { FastifyPluginAsync } from 'fastify'
import type { HealthReport } from '../../health/report.js'

export interface HealthRouteOptions {
  report: () => Promise<HealthReport>
  ready: () => boolean
}

/** /health/redis for Railway, /health/live and /health/ready for orchestrators. None of them throws. */
export const healthRoutes: FastifyPluginAsync<HealthRouteOptions> = async (app, opts) => {
  app.get('/health/live', async () => ({ status: 'ok' }))

  app.get('/health/ready', async (_request, reply) => {
    const ready = opts.ready()
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready' })
  })

  app.get('/health/redis', async (request, reply) => {
    try {
      const report = await opts.report()
      return reply.code(report.status === 'unhealthy' ? 503 : 200).send(report)
    } catch (err) {
      request.log.error({ err }, 'health report failed')
      return reply.code(503).send({ status: 'unhealthy', error: 'health report failed' })
    }
  })
}
