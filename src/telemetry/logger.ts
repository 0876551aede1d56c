import type { LoggerOptions } from 'pino'

/**
 * pino options. The token and every credential are redacted wherever they could appear; the service never logs a
 * body, but redaction is the net under that rule.
 */
export const REDACT_PATHS = [
  'token',
  '*.token',
  'body.token',
  'req.body.token',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'apiKey',
  '*.apiKey',
  'password',
  '*.password',
  // Key material, should a config object ever be logged (it never is on purpose).
  'secret',
  '*.secret',
  'apiKeys',
  '*.apiKeys',
  'metricsKeys',
  '*.metricsKeys',
  'encryptionKeys',
  '*.encryptionKeys',
]

/**
 * `mixin` adds fields to every line; the app passes the trace mixin (trace_id, span_id while a span is active) only
 * when tracing is on, so with tracing off no log line pays for it.
 */
export function loggerOptions(config: { level: string; pretty: boolean }, extra: { mixin?: () => object } = {}): LoggerOptions {
  return {
    level: config.level,
    ...(extra.mixin ? { mixin: extra.mixin } : {}),
    base: { service: 'studio-session-cache' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: () => `,"time":"${new Date().toISOString()}"`,
    ...(config.pretty
      ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service' } } }
      : {}),
  }
}

/** A connection URL fit for a log line: the password (and user) replaced. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password) parsed.password = '***'
    if (parsed.username) parsed.username = parsed.username ? '***' : ''
    return parsed.toString()
  } catch {
    return '[unparseable url]'
  }
}
