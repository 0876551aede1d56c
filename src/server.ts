import { setTimeout as delay } from 'node:timers/promises'
import closeWithGrace from 'close-with-grace'
import { ConfigError, loadConfig, type Config } from './config.js'
import { tracingHandle } from './telemetry/tracing-state.js'

/**
 * Starts the service: config → app → listen. On SIGTERM/SIGINT: readiness turns 503 and requests are still served for
 * SHUTDOWN_DRAIN_DELAY_MS (the load balancer's time to notice), then the listener closes, in-flight requests finish,
 * background writes settle, the pools close and the process exits 0. SHUTDOWN_TIMEOUT_MS, counted from the signal, is
 * the hard deadline: past it the process exits 1 whatever is still running.
 */
export async function start(config: Config, hooks: { afterClose?: () => Promise<void> } = {}): Promise<void> {
  // Imported here, not at the top: tracing (when on) must be started before the app's modules (fastify, ioredis, pg)
  // are first loaded, so that its instrumentations can wrap them.
  const { buildApp } = await import('./app.js')
  const app = await buildApp(config)
  closeWithGrace({ delay: config.shutdownTimeoutMs, logger: app.log }, async ({ signal, err }) => {
    app.markDraining()
    if (err) app.log.error({ err }, 'fatal error; shutting down')
    else {
      app.log.info({ signal, drainDelayMs: config.shutdownDrainDelayMs }, 'shutting down: readiness 503, still serving until the drain delay ends')
      // Not after a fatal error: the process is in an unknown state, and nobody should be sent here any longer.
      await delay(config.shutdownDrainDelayMs)
    }
    await app.close()
    // Spans still buffered are exported before the process exits (a no-op when tracing is off).
    await tracingHandle()?.shutdown()
    await hooks.afterClose?.()
    app.log.info({}, 'shutdown complete')
  })
  await app.listen({ host: config.host, port: config.port })
}

const isEntryPoint = import.meta.url === `file://${process.argv[1]}`
if (isEntryPoint) {
  try {
    // The tracing bootstrap (a no-op when already loaded with --import, or when no OTLP endpoint is set).
    await import('./telemetry/tracing.js')
    await start(loadConfig())
  } catch (err) {
    console.error(err instanceof ConfigError ? err.message : err)
    process.exit(1)
  }
}
