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
]

export function loggerOptions(config: { level: string; pretty: boolean }): LoggerOptions {
  return {
    level: config.level,
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
