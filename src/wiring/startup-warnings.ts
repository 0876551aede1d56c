import type { Config } from '../config.js'
import type { healthReport } from '../health/report.js'
import type { Log } from '../service/observer.js'
import { redactUrl } from '../telemetry/logger.js'
import { tracingHandle } from '../telemetry/tracing-state.js'

/**
 * Once the app is ready: what an operator should know before the first request (a dependency down, a setting that
 * is unsafe or has no effect), from the first health report.
 */
export async function warnAtStartup(report: () => ReturnType<typeof healthReport>, config: Config, log: Log): Promise<void> {
  const first = await report()
  if (!first.redis.connected) {
    log.warn(
      { redisUrl: redactUrl(config.redis.url), error: first.redis.error },
      'Redis is unreachable: every validation is served from Postgres until it is back',
    )
  }
  for (const warning of first.redis.warnings) log.warn({ redisUrl: redactUrl(config.redis.url) }, warning)
  if (!first.postgres.connected) log.warn({}, 'Postgres is unreachable: uncached sessions will get 503')
  if (config.cache.encryptionKeyEphemeral) {
    log.warn({}, 'CACHE_ENCRYPTION_KEYS is unset: cached values are sealed with a random per-process key (other instances cannot read them)')
  }
  const tracing = tracingHandle()
  if (tracing) log.info({ serviceName: tracing.serviceName, endpoint: config.tracing.endpoint }, 'tracing on: spans exported over OTLP/HTTP')
  else if (config.tracing.enabled) {
    log.warn({}, 'an OTLP endpoint is set but tracing was not bootstrapped: start with node --import ./dist/telemetry/tracing.js')
  }
}
