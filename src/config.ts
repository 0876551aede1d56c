import Type, { type Static } from 'typebox'
import Value from 'typebox/value'

/**
 * The only reader of process.env. Every knob the service has is declared here once, with its default and range;
 * docs/configuration.md is generated from this schema.
 */
const Int = (def: number, minimum: number, maximum: number, description: string) =>
  Type.Integer({ default: def, minimum, maximum, description })
const Bool = (def: boolean, description: string) => Type.Boolean({ default: def, description })
const Str = (def: string, description: string, extra: Record<string, unknown> = {}) =>
  Type.String({ default: def, minLength: 1, description, ...extra })

export const EnvSchema = Type.Object({
  NODE_ENV: Type.Union([Type.Literal('production'), Type.Literal('development'), Type.Literal('test')], {
    default: 'production',
    description: 'production | development | test. Only development turns on pretty logs.',
  }),
  HOST: Str('0.0.0.0', 'Interface to listen on.'),
  PORT: Int(3000, 0, 65535, 'HTTP port.'),
  LOG_LEVEL: Type.Union(
    [
      Type.Literal('fatal'),
      Type.Literal('error'),
      Type.Literal('warn'),
      Type.Literal('info'),
      Type.Literal('debug'),
      Type.Literal('trace'),
      Type.Literal('silent'),
    ],
    { default: 'info', description: 'pino level. Per-request lines are logged at debug only.' },
  ),
  LOG_PRETTY: Bool(false, 'Human-readable logs (pino-pretty, a dev dependency). npm run dev turns it on.'),

  DATABASE_URL: Type.Optional(
    Type.String({ minLength: 1, description: 'Postgres connection string (required by npm start).' }),
  ),
  DATABASE_SCHEMA: Str('platform', 'Schema holding users and user_sessions.', {
    pattern: '^[a-z_][a-z0-9_]{0,62}$',
  }),
  DATABASE_POOL_MAX: Int(10, 1, 200, 'Maximum Postgres connections.'),
  DATABASE_CONNECT_TIMEOUT_MS: Int(2000, 50, 60_000, 'Time to open a Postgres connection before giving up.'),
  DATABASE_STATEMENT_TIMEOUT_MS: Int(2000, 50, 60_000, 'Server-side statement_timeout and client query timeout.'),
  DATABASE_IDLE_TIMEOUT_MS: Int(30_000, 1000, 3_600_000, 'Idle Postgres connections are closed after this.'),

  REDIS_URL: Str('redis://127.0.0.1:6379', 'redis:// or rediss:// URL, with credentials if any.'),
  REDIS_KEY_PREFIX: Str('ssc:', 'Prefix of every key this service writes.', { pattern: '^[A-Za-z0-9:_.-]{1,64}$' }),
  REDIS_POOL_MIN: Int(2, 0, 100, 'Connections kept open.'),
  REDIS_POOL_MAX: Int(10, 1, 100, 'Most connections the pool opens.'),
  REDIS_POOL_ACQUIRE_TIMEOUT_MS: Int(500, 10, 30_000, 'Longest wait for a pooled connection.'),
  REDIS_COMMAND_TIMEOUT_MS: Int(250, 10, 30_000, 'A Redis command slower than this fails and the request reads Postgres.'),
  REDIS_CONNECT_TIMEOUT_MS: Int(1000, 50, 60_000, 'Time to open a Redis connection.'),

  BREAKER_TIMEOUT_MS: Int(1000, 10, 60_000, 'Breaker timeout for one cache operation, pool wait included; capped at REDIS_COMMAND_TIMEOUT_MS.'),
  BREAKER_ERROR_THRESHOLD_PERCENT: Int(70, 1, 100, 'Failure percentage that opens the breaker.'),
  BREAKER_RESET_TIMEOUT_MS: Int(15_000, 100, 600_000, 'Time open before a half-open probe.'),
  BREAKER_ROLLING_WINDOW_MS: Int(10_000, 100, 600_000, 'Window the failure percentage is computed over.'),
  BREAKER_VOLUME_THRESHOLD: Int(10, 0, 100_000, 'Calls in the window before the breaker may open.'),

  CACHE_TTL_SECONDS: Int(300, 1, 86_400, 'Longest life of a cached session (also capped by its expires_at).'),
  NEGATIVE_CACHE_TTL_SECONDS: Int(10, 0, 3600, 'Life of a cached "not valid" answer; 0 disables.'),
  CACHE_TOMBSTONE_TTL_SECONDS: Int(30, 5, 3600, 'Life of an invalidation tombstone that blocks racing cache fills.'),
  CACHE_WRITE_RETRIES: Int(3, 0, 10, 'Attempts after the first for a background cache write.'),
  CACHE_WRITE_RETRY_BASE_MS: Int(20, 1, 10_000, 'Base of the exponential backoff (full jitter) between write attempts.'),
  SLIDING_TTL_ENABLED: Bool(false, 'Extend a cached session on access (never past expires_at).'),
  SLIDING_TTL_MIN_INTERVAL_SECONDS: Int(60, 1, 86_400, 'At most one extension per session per interval.'),

  L1_CACHE_TTL_MS: Int(
    0,
    0,
    60_000,
    'In-process L1 tier in front of Redis; 0 turns it off. Kept coherent across instances by Redis pub/sub, but another ' +
      'instance may still answer from its L1 for the moment the message takes to arrive: see docs/architecture.md.',
  ),
  L1_CACHE_MAX_ENTRIES: Int(10_000, 100, 1_000_000, 'Most answers the L1 tier holds (least recently used go first).'),

  TOKEN_MAX_LENGTH: Int(512, 16, 8192, 'Longest accepted token.'),
  BODY_LIMIT_BYTES: Int(4096, 256, 1_048_576, 'Largest accepted request body.'),
  SERVICE_API_KEYS: Type.Optional(
    Type.String({ description: 'Comma-separated keys; when set, /invalidate needs Authorization: Bearer <key>.' }),
  ),
  REQUIRE_API_KEY_FOR_VALIDATE: Bool(false, 'Also require a service key on /validate.'),

  EMBEDDED_POSTGRES_DIR: Str('.data/postgres', 'npm run dev only: data directory of the embedded PostgreSQL (relative to the project).'),

  HEALTH_TIMEOUT_MS: Int(1000, 50, 30_000, 'Upper bound on one /health/redis answer.'),
  SHUTDOWN_TIMEOUT_MS: Int(10_000, 100, 120_000, 'Hard deadline for a graceful shutdown.'),
  RETRY_AFTER_SECONDS: Int(1, 1, 3600, 'Retry-After on 503 answers.'),
})

type Env = Static<typeof EnvSchema>

export class ConfigError extends Error {
  override name = 'ConfigError'
}

function toConfig(env: Env) {
  const apiKeys = (env.SERVICE_API_KEYS ?? '')
    .split(',')
    .map((k) => k.trim())
    .filter((k) => k.length > 0)
  return {
    env: env.NODE_ENV,
    host: env.HOST,
    port: env.PORT,
    log: { level: env.LOG_LEVEL, pretty: env.LOG_PRETTY },
    database: {
      url: env.DATABASE_URL,
      schema: env.DATABASE_SCHEMA,
      poolMax: env.DATABASE_POOL_MAX,
      connectTimeoutMs: env.DATABASE_CONNECT_TIMEOUT_MS,
      statementTimeoutMs: env.DATABASE_STATEMENT_TIMEOUT_MS,
      idleTimeoutMs: env.DATABASE_IDLE_TIMEOUT_MS,
    },
    redis: {
      url: env.REDIS_URL,
      keyPrefix: env.REDIS_KEY_PREFIX,
      poolMin: env.REDIS_POOL_MIN,
      poolMax: env.REDIS_POOL_MAX,
      acquireTimeoutMs: env.REDIS_POOL_ACQUIRE_TIMEOUT_MS,
      commandTimeoutMs: env.REDIS_COMMAND_TIMEOUT_MS,
      connectTimeoutMs: env.REDIS_CONNECT_TIMEOUT_MS,
    },
    breaker: {
      timeoutMs: env.BREAKER_TIMEOUT_MS,
      errorThresholdPercentage: env.BREAKER_ERROR_THRESHOLD_PERCENT,
      resetTimeoutMs: env.BREAKER_RESET_TIMEOUT_MS,
      rollingCountTimeoutMs: env.BREAKER_ROLLING_WINDOW_MS,
      volumeThreshold: env.BREAKER_VOLUME_THRESHOLD,
    },
    cache: {
      ttlSeconds: env.CACHE_TTL_SECONDS,
      negativeTtlSeconds: env.NEGATIVE_CACHE_TTL_SECONDS,
      tombstoneTtlSeconds: env.CACHE_TOMBSTONE_TTL_SECONDS,
      writeRetries: env.CACHE_WRITE_RETRIES,
      writeRetryBaseMs: env.CACHE_WRITE_RETRY_BASE_MS,
      slidingTtl: env.SLIDING_TTL_ENABLED,
      slidingMinIntervalSeconds: env.SLIDING_TTL_MIN_INTERVAL_SECONDS,
      localTtlMs: env.L1_CACHE_TTL_MS,
      localMaxEntries: env.L1_CACHE_MAX_ENTRIES,
    },
    http: {
      tokenMaxLength: env.TOKEN_MAX_LENGTH,
      bodyLimitBytes: env.BODY_LIMIT_BYTES,
      apiKeys,
      requireKeyForValidate: env.REQUIRE_API_KEY_FOR_VALIDATE,
      healthTimeoutMs: env.HEALTH_TIMEOUT_MS,
      retryAfterSeconds: env.RETRY_AFTER_SECONDS,
    },
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_MS,
    dev: { embeddedPostgresDir: env.EMBEDDED_POSTGRES_DIR },
  }
}

export type Config = Readonly<ReturnType<typeof toConfig>>

const schemaKeys = Object.keys(EnvSchema.properties)

/** Keeps only the variables the schema declares; an empty value counts as unset (compose files often pass ""). */
function pickDeclared(source: Record<string, string | undefined>): Record<string, string> {
  const picked: Record<string, string> = {}
  for (const key of schemaKeys) {
    const value = source[key]
    if (value !== undefined && value !== '') picked[key] = value
  }
  return picked
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner)
    Object.freeze(value)
  }
  return value
}

/**
 * Validates the environment once. `overrides` win over process.env (tests and the dev launcher use them), so no
 * other module needs to read or write process.env.
 */
export function loadConfig(
  overrides: Record<string, string | undefined> = {},
  options: {
    requireDatabaseUrl?: boolean
    source?: Record<string, string | undefined>
    /** Defaults that the environment may still override (npm run dev's pretty logs, say). */
    defaults?: Record<string, string>
  } = {},
): Config {
  const raw = {
    ...pickDeclared(options.defaults ?? {}),
    ...pickDeclared(options.source ?? process.env),
    ...pickDeclared(overrides),
  }
  let value: unknown = Value.Default(EnvSchema, raw)
  value = Value.Convert(EnvSchema, value)
  value = Value.Clean(EnvSchema, value)
  if (!Value.Check(EnvSchema, value)) {
    const problems = [...Value.Errors(EnvSchema, value)]
      .filter((e) => e.keyword !== 'anyOf')
      .map((e) => `${e.instancePath.slice(1) || '(root)'} ${e.message} (got ${JSON.stringify(raw[e.instancePath.slice(1)])})`)
    throw new ConfigError(`Invalid configuration:\n  - ${[...new Set(problems)].join('\n  - ')}`)
  }
  const config = toConfig(value)
  if (config.redis.poolMin > config.redis.poolMax) {
    throw new ConfigError('Invalid configuration:\n  - REDIS_POOL_MIN must not exceed REDIS_POOL_MAX')
  }
  if (config.http.requireKeyForValidate && config.http.apiKeys.length === 0) {
    throw new ConfigError('Invalid configuration:\n  - REQUIRE_API_KEY_FOR_VALIDATE=true needs SERVICE_API_KEYS (otherwise /validate would stay open)')
  }
  if ((options.requireDatabaseUrl ?? true) && !config.database.url) {
    throw new ConfigError('Invalid configuration:\n  - DATABASE_URL is required (npm run dev starts an embedded Postgres instead)')
  }
  return deepFreeze(config)
}
