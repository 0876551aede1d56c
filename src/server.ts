import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { ConfigError, loadConfig, type Config } from './config.js'

/**
 * Starts the service: config → app → listen. On SIGTERM/SIGINT readiness turns 503 first, in-flight requests finish,
 * then the pools close and the process exits 0; past SHUTDOWN_TIMEOUT_MS it exits 1 whatever is still running.
 */
export async function start(config: Config, hooks: { afterClose?: () => Promise<void> } = {}): Promise<void> {
  const app = await buildApp(config)
  closeWithGrace({ delay: config.shutdownTimeoutMs, logger: app.log }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'fatal error; shutting down')
    else app.log.info({ signal }, 'shutting down: draining in-flight requests')
    app.markDraining()
    await app.close()
    await hooks.afterClose?.()
    app.log.info({}, 'shutdown complete')
  })
  await app.listen({ host: config.host, port: config.port })
}

const isEntryPoint = import.meta.url === `file://${process.argv[1]}`
if (isEntryPoint) {
  try {
    await start(loadConfig())
  } catch (err) {
    console.error(err instanceof ConfigError ? err.message : err)
    process.exit(1)
  }
}
