import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import Type, { type Static } from 'typebox'
import Value from 'typebox/value'
import { decodeKeySecret, type CacheKey } from './cache/cipher.js'

/**
 * The only reader of process.env. Every knob the service has is declared here once, with its default and range;
 * docs/configuration.md is generated from this schema.
 */
const Int = (def: number, minimum: number, maximum: number, description: string) =>
  Type.Integer({ default: def, minimum, maximum, description })
const Bool = (def: boolean, description: string) => Type.Boolean({ default: def, description })
const Str = (def: string, description: string, extra: Record<string, unknown> = {}) =>
  Type.String({ default: def, minLength: 1, description, ...extra })

/**
 * The standard OpenTelemetry variables this service relies on. The SDK reads them itself (src/telemetry/tracing.ts
 * only decides whether to load it); they are declared here so they are validated, documented and visible.
 */
const TracingEnv = {
  OTEL_EXPORTER_OTLP_ENDPOINT: Type.Optional(
    Type.String({
      pattern: '^https?://',
      description:
        'OTLP/HTTP receiver base URL (/v1/traces is appended), e.g. http://jaeger:4318. Setting it (or the ' +
        'traces-only variable) turns tracing on; unset, the OpenTelemetry SDK is not even loaded.',
    }),
  ),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: Type.Optional(
    Type.String({ pattern: '^https?://', description: 'Full OTLP/HTTP URL for traces; wins over OTEL_EXPORTER_OTLP_ENDPOINT.' }),
  ),
  OTEL_EXPORTER_OTLP_HEADERS: Type.Optional(
    Type.String({ description: 'Headers sent with every export, "key=value,key2=value2" (a hosted backend\'s API key).' }),
  ),
  OTEL_SERVICE_NAME: Str('studio-session-cache', 'service.name on every span.'),
  OTEL_RESOURCE_ATTRIBUTES: Type.Optional(
    Type.String({ description: 'Extra resource attributes, "deployment.environment=production,service.version=1.2.3".' }),
  ),
  OTEL_TRACES_SAMPLER: Type.Union(
    [
      Type.Literal('parentbased_always_on'),
      Type.Literal('parentbased_always_off'),
      Type.Literal('parentbased_traceidratio'),
      Type.Literal('always_on'),
      Type.Literal('always_off'),
      Type.Literal('traceidratio'),
    ],
    {
      default: 'parentbased_always_on',
      description: 'Sampler. parentbased_* follow the sampled flag of the caller\'s W3C traceparent.',
    },
  ),
  OTEL_TRACES_SAMPLER_ARG: Type.Optional(
    Type.String({ pattern: '^(0(\\.\\d+)?|1(\\.0+)?)$', description: 'Ratio 0–1 for the traceidratio samplers.' }),
  ),
  OTEL_SDK_DISABLED: Bool(false, 'true keeps tracing off even with an endpoint set.'),
}

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
  DATABASE_SSL_MODE: Type.Optional(
    Type.Union([Type.Literal('disable'), Type.Literal('require'), Type.Literal('verify-ca'), Type.Literal('verify-full')], {
      description:
        'TLS to Postgres, as libpq names it: verify-full (certificate chain and host name), verify-ca (chain only), ' +
        'require (encrypted, server NOT authenticated), disable. Unset: whatever DATABASE_URL says (sslmode=...). When ' +
        'set, it wins over any ssl parameter in DATABASE_URL; a server that cannot do TLS is then an error, never a ' +
        'plaintext fallback.',
    }),
  ),
  DATABASE_SSL_CA_FILE: Type.Optional(
    Type.String({ minLength: 1, description: 'PEM file of the CA(s) that sign the Postgres server certificate (default: the system CAs).' }),
  ),
  DATABASE_SSL_CERT_FILE: Type.Optional(Type.String({ minLength: 1, description: 'PEM client certificate for Postgres (with DATABASE_SSL_KEY_FILE).' })),
  DATABASE_SSL_KEY_FILE: Type.Optional(Type.String({ minLength: 1, description: 'PEM private key of DATABASE_SSL_CERT_FILE.' })),
  DATABASE_MAX_CONCURRENT_LOOKUPS: Int(
    0,
    0,
    200,
    'Most session lookups running against Postgres at once; 0 means DATABASE_POOL_MAX. Lookups beyond it wait in a ' +
      'bounded queue, so a flood of unknown tokens cannot pile up on the database.',
  ),
  DATABASE_LOOKUP_QUEUE_MAX: Int(
    100,
    0,
    100_000,
    'Most lookups waiting for a slot; one more is answered 503 SESSION_STORE_BUSY at once (shed, not queued).',
  ),
  DATABASE_LOOKUP_QUEUE_TIMEOUT_MS: Int(1000, 10, 60_000, 'Longest wait in that queue before the lookup is shed with 503 SESSION_STORE_BUSY.'),
  MIGRATION_DATABASE_URL: Type.Optional(
    Type.String({
      minLength: 1,
      description:
        'npm run migrate only: connect as this role (the owner of the tables) instead of DATABASE_URL\'s, apply the ' +
        'migration, then grant DATABASE_URL\'s role exactly what the service needs (ops/postgres/runtime-role.sql). ' +
        'The service itself never reads it.',
    }),
  ),
  DATABASE_ACCESS_RECHECK_MS: Int(
    10_000,
    500,
    600_000,
    'While the role\'s access to its tables is not proven (a missing grant, row-level security hiding rows), the check ' +
      'runs again this often, so that a fix heals the instance without a restart.',
  ),
  SESSION_ACTIVITY_INTERVAL_SECONDS: Int(
    60,
    0,
    86_400,
    'user_sessions.last_activity_at follows use: a session answered valid is recorded at most once per interval, in ' +
      'batches off the request path. 0 turns recording off.',
  ),
  SESSION_ACTIVITY_MAX_PENDING: Int(
    10_000,
    1,
    1_000_000,
    'Sessions waiting for the next activity write; beyond it (Postgres slow) uses are dropped and counted, not queued.',
  ),

  REDIS_URL: Str('redis://127.0.0.1:6379', 'redis:// or rediss:// URL, with credentials if any.'),
  REDIS_SENTINELS: Type.Optional(
    Type.String({
      pattern: '^[^,:\\s]+:\\d{1,5}(,[^,:\\s]+:\\d{1,5})*$',
      description:
        'Redis Sentinel: host:port,host:port,... of the sentinels (with REDIS_SENTINEL_MASTER_NAME). The master is asked ' +
        'of them and followed through failovers. REDIS_URL then gives only the scheme (rediss:// for TLS) and credentials.',
    }),
  ),
  REDIS_SENTINEL_MASTER_NAME: Type.Optional(Type.String({ minLength: 1, description: 'The master name the sentinels monitor.' })),
  REDIS_SENTINEL_USERNAME: Type.Optional(Type.String({ minLength: 1, description: 'ACL user on the sentinels (not the data nodes).' })),
  REDIS_SENTINEL_PASSWORD: Type.Optional(Type.String({ minLength: 1, description: 'Password of that sentinel user.' })),
  REDIS_CLUSTER_NODES: Type.Optional(
    Type.String({
      pattern: '^[^,:\\s]+:\\d{1,5}(,[^,:\\s]+:\\d{1,5})*$',
      description:
        'Redis Cluster: host:port,... of some nodes (the rest are discovered). REDIS_URL then gives only the scheme and ' +
        'credentials.',
    }),
  ),
  REDIS_WAIT_REPLICAS: Int(
    1,
    0,
    10,
    'After an invalidation, WAIT until this many replicas have it (skipped while the master reports none; not on ' +
      'Cluster, where a failover replays recent revocations instead). Fewer in time: the invalidation is retried and ' +
      'answered 503. 0 never waits.',
  ),
  REDIS_WAIT_TIMEOUT_MS: Int(100, 1, 10_000, 'Longest WAIT for those replicas.'),
  REDIS_KEY_PREFIX: Str('ssc:', 'Prefix of every key this service writes.', { pattern: '^[A-Za-z0-9:_.-]{1,64}$' }),
  REDIS_POOL_MIN: Int(2, 0, 100, 'Connections kept open.'),
  REDIS_POOL_MAX: Int(10, 1, 100, 'Most connections the pool opens.'),
  REDIS_POOL_ACQUIRE_TIMEOUT_MS: Int(500, 10, 30_000, 'Longest wait for a pooled connection.'),
  REDIS_COMMAND_TIMEOUT_MS: Int(250, 10, 30_000, 'A Redis command slower than this fails and the request reads Postgres.'),
  REDIS_CONNECT_TIMEOUT_MS: Int(1000, 50, 60_000, 'Time to open a Redis connection.'),
  REDIS_USERNAME: Type.Optional(
    Type.String({ minLength: 1, description: 'Redis ACL user (ops/redis/users.acl); wins over a user in REDIS_URL.' }),
  ),
  REDIS_PASSWORD: Type.Optional(Type.String({ minLength: 1, description: 'Password of that user; wins over one in REDIS_URL.' })),
  REDIS_TLS_CA_FILE: Type.Optional(
    Type.String({
      minLength: 1,
      description:
        'PEM file of the CA(s) that sign the Redis server certificate (default: the system CAs). TLS needs a rediss:// ' +
        'REDIS_URL; the certificate and host name are always verified.',
    }),
  ),
  REDIS_TLS_CERT_FILE: Type.Optional(Type.String({ minLength: 1, description: 'PEM client certificate for Redis (tls-auth-clients), with REDIS_TLS_KEY_FILE.' })),
  REDIS_TLS_KEY_FILE: Type.Optional(Type.String({ minLength: 1, description: 'PEM private key of REDIS_TLS_CERT_FILE.' })),
  REDIS_TLS_SERVERNAME: Type.Optional(
    Type.String({ minLength: 1, description: 'Host name to verify the Redis certificate against, when it differs from the URL\'s host.' }),
  ),

  BREAKER_TIMEOUT_MS: Int(1000, 10, 60_000, 'Breaker timeout for one cache operation, pool wait included; capped at REDIS_COMMAND_TIMEOUT_MS.'),
  BREAKER_ERROR_THRESHOLD_PERCENT: Int(70, 1, 100, 'Failure percentage that opens the breaker.'),
  BREAKER_RESET_TIMEOUT_MS: Int(15_000, 100, 600_000, 'Time open before a half-open probe.'),
  BREAKER_ROLLING_WINDOW_MS: Int(10_000, 100, 600_000, 'Window the failure percentage is computed over.'),
  BREAKER_VOLUME_THRESHOLD: Int(10, 0, 100_000, 'Calls in the window before the breaker may open.'),

  CACHE_TTL_SECONDS: Int(300, 1, 86_400, 'Longest life of a cached session (also capped by its expires_at).'),
  NEGATIVE_CACHE_TTL_SECONDS: Int(10, 0, 3600, 'Life of a cached "not valid" answer; 0 disables.'),
  NEGATIVE_CACHE_MIN_MISSES: Int(
    2,
    1,
    100,
    'A "not valid" answer is cached once its token has missed this many times within NEGATIVE_CACHE_TTL_SECONDS on ' +
      'this instance (1: at the first miss). A token asked once (a typo, a flood of random tokens) then costs no ' +
      'Redis write; one asked again and again is cached at its second miss.',
  ),
  CACHE_WARM_SESSIONS: Int(
    1000,
    0,
    1_000_000,
    'When an instance finds the cache cold (no warm marker in Redis: first start, a restart that lost the data, a ' +
      'failover to a replica without it), it loads this many of the most recently active live sessions from Postgres ' +
      '(one instance at a time); 0 turns warming off.',
  ),
  CACHE_WARM_BATCH_SIZE: Int(100, 1, 10_000, 'Sessions read from Postgres per query while warming.'),
  CACHE_WARM_RATE_PER_SECOND: Int(500, 1, 100_000, 'Most cache fills per second while warming (on top of live traffic).'),
  CACHE_WARM_CONCURRENCY: Int(4, 1, 100, 'Most warming fills in flight at once.'),
  CACHE_WARM_LOCK_TTL_MS: Int(
    30_000,
    1000,
    600_000,
    'Life of the warming lock in Redis, renewed before every batch: if its holder dies, another instance takes over ' +
      'this long later at most (instances check for a cold cache this often, too).',
  ),
  CACHE_TOMBSTONE_TTL_SECONDS: Int(30, 5, 3600, 'Life of an invalidation tombstone that blocks racing cache fills.'),
  CACHE_WRITE_RETRIES: Int(3, 0, 10, 'Attempts after the first for a background cache write.'),
  CACHE_WRITE_RETRY_BASE_MS: Int(20, 1, 10_000, 'Base of the exponential backoff (full jitter) between write attempts.'),
  SLIDING_TTL_ENABLED: Bool(false, 'Extend a cached session on access (never past expires_at).'),
  SLIDING_TTL_MIN_INTERVAL_SECONDS: Int(60, 1, 86_400, 'At most one extension per session per interval.'),
  SLIDING_TTL_IDLE_SECONDS: Int(
    120,
    1,
    86_400,
    'With SLIDING_TTL_ENABLED, a cached session unused for this long leaves the cache; use extends it, but never past ' +
      'CACHE_TTL_SECONDS from its Postgres read. Must exceed SLIDING_TTL_MIN_INTERVAL_SECONDS and not exceed CACHE_TTL_SECONDS.',
  ),

  DATABASE_LISTEN_URL: Type.Optional(
    Type.String({
      minLength: 1,
      description:
        'Session-mode Postgres connection for LISTEN (the revocation feed); default DATABASE_URL. Set it when ' +
        'DATABASE_URL goes through a transaction-mode pooler (Supavisor port 6543, PgBouncer transaction pooling), ' +
        'where LISTEN hears nothing: e.g. Supavisor port 5432 or the direct database host.',
    }),
  ),
  REVOCATION_POLL_INTERVAL_MS: Int(
    2000,
    100,
    60_000,
    'The backstop: the revocation outbox is read this often even when LISTEN works. With a lost LISTEN connection a ' +
      'revocation reaches this instance within about this long, so keep it under the 5 s bound.',
  ),
  REVOCATION_RETRY_MS: Int(250, 10, 60_000, 'A revocation the cache refused (Redis unreachable) is retried this often; Redis is not trusted meanwhile.'),
  REVOCATION_HOLE_GRACE_MS: Int(
    10_000,
    100,
    600_000,
    'An outbox id not yet readable below the newest one seen (a transaction still open) is waited for this long by the position; its NOTIFY applies it whenever it commits.',
  ),
  REVOCATION_LISTEN_RECONNECT_MAX_MS: Int(1000, 50, 60_000, 'Longest wait between reconnection attempts of the LISTEN connection (backoff from 50 ms).'),
  REVOCATION_OUTBOX_RETENTION_SECONDS: Int(
    3600,
    60,
    30 * 86_400,
    'Outbox rows older than this are pruned. At least CACHE_TTL_SECONDS + 60: a row may only go once no cached ' +
      'entry can still concern it.',
  ),
  REVOCATION_PRUNE_INTERVAL_SECONDS: Int(60, 1, 86_400, 'How often an instance prunes the outbox (bounded batches; several instances may).'),

  L1_CACHE_TTL_MS: Int(
    0,
    0,
    60_000,
    'In-process L1 tier in front of Redis; 0 turns it off. Kept coherent across instances by Redis pub/sub, but another ' +
      'instance may still answer from its L1 until the message arrives, and at most this long: see docs/architecture.md.',
  ),
  L1_CACHE_REFRESH_AHEAD_PERCENT: Int(
    0,
    0,
    90,
    'An L1 answer asked for in the last this-many percent of its L1 life is re-read from Redis in the background ' +
      '(batched), so a hot session stays in L1 instead of costing a request a Redis round trip; its life is not ' +
      'extended beyond what a Redis hit gives. 0 (the default) turns it off: it costs more Redis reads and showed no ' +
      'throughput gain in npm run bench (docs/architecture.md).',
  ),
  L1_CACHE_MAX_ENTRIES: Int(10_000, 100, 1_000_000, 'Most answers the L1 tier holds (least recently used go first).'),
  CACHE_ENCRYPTION_KEYS: Type.Optional(
    Type.String({
      description:
        'Comma-separated `id:key` pairs; each key is 32 random bytes in base64 (`openssl rand -base64 32`), each id 1-16 ' +
        'of A-Z a-z 0-9 _ -. Cached user fields are sealed with AES-256-GCM by the FIRST key; every listed key can open ' +
        'them, so a key is rotated without a flush (docs/operations.md). Required in production; elsewhere a random ' +
        'per-process key is used when unset.',
    }),
  ),
  CACHE_DECRYPT_MEMO_ENTRIES: Int(
    10_000,
    0,
    1_000_000,
    'Decrypted cache values remembered per process, keyed by the exact stored value and its token hash, so a hit on an ' +
      'entry unchanged since this process last read or wrote it skips the AES-GCM decryption (~5 µs); 0 turns it off.',
  ),

  TOKEN_MAX_LENGTH: Int(512, 16, 8192, 'Longest accepted token.'),
  BODY_LIMIT_BYTES: Int(4096, 256, 1_048_576, 'Largest accepted request body.'),
  SERVICE_API_KEYS: Type.Optional(
    Type.String({
      description:
        'Comma-separated keys, each `id:key` (the id is what logs name; 1-32 of A-Z a-z 0-9 _ . -) or a bare key (its id ' +
        'is then `key-` and 8 hex characters of its SHA-256). When set, /invalidate needs Authorization: Bearer <key>; ' +
        'several at once allow rotation. Required in production (the service refuses to start without it), at least 16 ' +
        'characters each.',
    }),
  ),
  REQUIRE_API_KEY_FOR_VALIDATE: Bool(false, 'Also require a service key on /validate.'),
  METRICS_API_KEYS: Type.Optional(
    Type.String({
      description:
        'Same format as SERVICE_API_KEYS; when set, /metrics needs Authorization: Bearer <one of these> (Prometheus: ' +
        '`authorization: {credentials: ...}`). Kept apart from SERVICE_API_KEYS so a scraper cannot invalidate sessions.',
    }),
  ),
  HTTP_REQUEST_TIMEOUT_MS: Int(10_000, 0, 600_000, 'Longest time a client may take to send a whole request (slow-client protection); 0 is Node\'s default.'),
  LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: Int(
    250,
    0,
    60_000,
    'Session routes answer 503 OVERLOADED while the mean event-loop delay over the last sample exceeds this ' +
      '(@fastify/under-pressure); health and metrics are never shed. 0 turns it off. It sees sustained lag (every ' +
      'loop turn slow), not one long stall: Node samples no delay while the loop is blocked.',
  ),
  LOAD_SHED_MAX_EVENT_LOOP_UTILIZATION: Type.Number({
    default: 0,
    minimum: 0,
    maximum: 1,
    description:
      'Also shed while event-loop utilisation (0-1) over the last sample exceeds this; 0 turns it off. Off by default: ' +
      'a healthy instance at full throughput runs near 1.',
  }),
  LOAD_SHED_SAMPLE_INTERVAL_MS: Int(1000, 10, 60_000, 'How often event-loop delay and utilisation are sampled for load shedding.'),

  EMBEDDED_POSTGRES_DIR: Str('.data/postgres', 'npm run dev only: data directory of the embedded PostgreSQL (relative to the project).'),

  ...TracingEnv,
  TELEMETRY_REDIS_INFO_INTERVAL_MS: Int(
    15_000,
    0,
    3_600_000,
    'How often Redis INFO is read into the redis_up, redis_memory_*, redis_connected_clients and redis_*_keys_total ' +
      'series (through the pool, never on a request); 0 turns the poller off.',
  ),
  TELEMETRY_SLOWLOG_INTERVAL_MS: Int(
    30_000,
    0,
    3_600_000,
    'How often new Redis SLOWLOG entries are counted (redis_slowlog_entries_total) and logged, command name and ' +
      'duration only; 0 turns it off. A Redis ACL user needs +slowlog|get.',
  ),
  TELEMETRY_SLOWLOG_BATCH: Int(128, 1, 1024, 'Most SLOWLOG entries read per poll.'),
  TELEMETRY_POLL_TIMEOUT_MS: Int(1000, 50, 30_000, 'Upper bound on one INFO or SLOWLOG poll, pool wait included.'),
  TELEMETRY_WINDOW_SECONDS: Int(60, 5, 3600, 'Window of the hot-key top-K, the per-key miss counts and session_cache_hit_ratio.'),
  TELEMETRY_HOT_KEYS_TOP_K: Int(
    10,
    0,
    100,
    'Most requested sessions exported (session_hot_key_requests) and logged per window, by the first 8 hex characters ' +
      "of the token's SHA-256; 0 turns hot-key and miss-spike tracking off.",
  ),
  TELEMETRY_HOT_KEYS_CAPACITY: Int(
    1000,
    10,
    100_000,
    'Counters kept per window (Misra-Gries summary): bounds memory; any key with more than 1/capacity of the ' +
      "window's lookups is always among them.",
  ),
  TELEMETRY_HOT_KEYS_SAMPLE_EVERY: Int(
    16,
    1,
    1024,
    'Hot-key request counts take one lookup in this many (1: every lookup) and are reported scaled back up; misses ' +
      'are always counted. Keeps the per-request cost flat when traffic spreads over more sessions than the capacity.',
  ),
  TELEMETRY_MISS_SPIKE_THRESHOLD: Int(
    50,
    2,
    1_000_000,
    'Cache misses of one session within one window that count as a miss spike (logged, session_miss_spikes_total).',
  ),

  HEALTH_TIMEOUT_MS: Int(1000, 50, 30_000, 'Upper bound on one /health/redis answer.'),
  SHUTDOWN_DRAIN_DELAY_MS: Type.Optional(
    Type.Integer({
      minimum: 0,
      maximum: 600_000,
      description:
        'After SIGTERM, how long /health/ready answers 503 while requests are still served (each answer with ' +
        'Connection: close, so keep-alive callers reconnect elsewhere) before the listener closes: time for the load ' +
        'balancer to see the 503 and stop routing here. Unset: 5000 in production, 0 otherwise (a Ctrl-C in dev ' +
        'does not wait). Must be less than SHUTDOWN_TIMEOUT_MS.',
    }),
  ),
  SHUTDOWN_TIMEOUT_MS: Int(
    10_000,
    100,
    120_000,
    'Hard deadline for a graceful shutdown, counted from the signal: the drain delay, the requests in flight, the ' +
      'background cache writes and closing the pools all fit in it, or the process exits 1. The platform\'s stop ' +
      'timeout (docker stop -t, compose stop_grace_period, Railway RAILWAY_DEPLOYMENT_DRAINING_SECONDS) must be longer.',
  ),
  RETRY_AFTER_SECONDS: Int(1, 1, 3600, 'Retry-After on 503 answers.'),
})

type Env = Static<typeof EnvSchema>

/** Long enough for a load balancer polling readiness every second or two to see the 503 a few times. */
const DEFAULT_PRODUCTION_DRAIN_DELAY_MS = 5000

/** Tracing is on when an OTLP endpoint is set and the SDK is not disabled. */
function tracingSettings(env: Static<typeof TracingEnvSchema>) {
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT
  return { enabled: endpoint !== undefined && !env.OTEL_SDK_DISABLED, endpoint, serviceName: env.OTEL_SERVICE_NAME }
}

const TracingEnvSchema = Type.Object(TracingEnv)
const tracingKeys = Object.keys(TracingEnv)

/**
 * The tracing bootstrap's view of the environment, read before the app (and its full configuration) loads. It checks
 * only the OTEL_* variables; null when one of them is invalid (loadConfig then reports it, and tracing stays off).
 */
export function loadTracingConfig(source: Record<string, string | undefined> = process.env) {
  const raw: Record<string, string> = {}
  for (const key of tracingKeys) {
    const value = source[key]
    if (value !== undefined && value !== '') raw[key] = value
  }
  let value: unknown = Value.Default(TracingEnvSchema, raw)
  value = Value.Convert(TracingEnvSchema, value)
  value = Value.Clean(TracingEnvSchema, value)
  if (!Value.Check(TracingEnvSchema, value)) return null
  return tracingSettings(value)
}

export type TracingConfig = ReturnType<typeof tracingSettings>

export class ConfigError extends Error {
  override name = 'ConfigError'
}

function toConfig(env: Env) {
  const secure = securitySettings(env)
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
      ssl: secure.databaseSsl,
      maxConcurrentLookups: env.DATABASE_MAX_CONCURRENT_LOOKUPS || env.DATABASE_POOL_MAX,
      lookupQueueMax: env.DATABASE_LOOKUP_QUEUE_MAX,
      lookupQueueTimeoutMs: env.DATABASE_LOOKUP_QUEUE_TIMEOUT_MS,
      migrationUrl: env.MIGRATION_DATABASE_URL,
      accessRecheckMs: env.DATABASE_ACCESS_RECHECK_MS,
    },
    activity: {
      intervalSeconds: env.SESSION_ACTIVITY_INTERVAL_SECONDS,
      maxPending: env.SESSION_ACTIVITY_MAX_PENDING,
    },
    redis: {
      url: env.REDIS_URL,
      topology: redisTopology(env),
      waitReplicas: env.REDIS_WAIT_REPLICAS,
      waitTimeoutMs: env.REDIS_WAIT_TIMEOUT_MS,
      keyPrefix: env.REDIS_KEY_PREFIX,
      poolMin: env.REDIS_POOL_MIN,
      poolMax: env.REDIS_POOL_MAX,
      acquireTimeoutMs: env.REDIS_POOL_ACQUIRE_TIMEOUT_MS,
      commandTimeoutMs: env.REDIS_COMMAND_TIMEOUT_MS,
      connectTimeoutMs: env.REDIS_CONNECT_TIMEOUT_MS,
      username: env.REDIS_USERNAME,
      password: env.REDIS_PASSWORD,
      tls: secure.redisTls,
    },
    revocation: {
      listenUrl: env.DATABASE_LISTEN_URL ?? env.DATABASE_URL,
      pollIntervalMs: env.REVOCATION_POLL_INTERVAL_MS,
      retryMs: env.REVOCATION_RETRY_MS,
      holeGraceMs: env.REVOCATION_HOLE_GRACE_MS,
      reconnectMaxMs: env.REVOCATION_LISTEN_RECONNECT_MAX_MS,
      retentionSeconds: env.REVOCATION_OUTBOX_RETENTION_SECONDS,
      pruneIntervalSeconds: env.REVOCATION_PRUNE_INTERVAL_SECONDS,
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
      negativeMinMisses: env.NEGATIVE_CACHE_MIN_MISSES,
      tombstoneTtlSeconds: env.CACHE_TOMBSTONE_TTL_SECONDS,
      writeRetries: env.CACHE_WRITE_RETRIES,
      writeRetryBaseMs: env.CACHE_WRITE_RETRY_BASE_MS,
      slidingTtl: env.SLIDING_TTL_ENABLED,
      slidingMinIntervalSeconds: env.SLIDING_TTL_MIN_INTERVAL_SECONDS,
      slidingIdleSeconds: env.SLIDING_TTL_IDLE_SECONDS,
      localTtlMs: env.L1_CACHE_TTL_MS,
      localRefreshAheadMs: Math.floor((env.L1_CACHE_TTL_MS * env.L1_CACHE_REFRESH_AHEAD_PERCENT) / 100),
      localMaxEntries: env.L1_CACHE_MAX_ENTRIES,
      encryptionKeys: secure.encryptionKeys,
      /** True when no CACHE_ENCRYPTION_KEYS were given and a random per-process key is used (never in production). */
      encryptionKeyEphemeral: secure.encryptionKeyEphemeral,
      decryptMemoEntries: env.CACHE_DECRYPT_MEMO_ENTRIES,
      warm: {
        sessions: env.CACHE_WARM_SESSIONS,
        batchSize: env.CACHE_WARM_BATCH_SIZE,
        ratePerSecond: env.CACHE_WARM_RATE_PER_SECOND,
        concurrency: env.CACHE_WARM_CONCURRENCY,
        lockTtlMs: env.CACHE_WARM_LOCK_TTL_MS,
      },
    },
    http: {
      tokenMaxLength: env.TOKEN_MAX_LENGTH,
      bodyLimitBytes: env.BODY_LIMIT_BYTES,
      apiKeys: secure.apiKeys,
      metricsKeys: secure.metricsKeys,
      requireKeyForValidate: env.REQUIRE_API_KEY_FOR_VALIDATE,
      requestTimeoutMs: env.HTTP_REQUEST_TIMEOUT_MS,
      healthTimeoutMs: env.HEALTH_TIMEOUT_MS,
      retryAfterSeconds: env.RETRY_AFTER_SECONDS,
    },
    telemetry: {
      redisInfoIntervalMs: env.TELEMETRY_REDIS_INFO_INTERVAL_MS,
      slowlogIntervalMs: env.TELEMETRY_SLOWLOG_INTERVAL_MS,
      slowlogBatch: env.TELEMETRY_SLOWLOG_BATCH,
      pollTimeoutMs: env.TELEMETRY_POLL_TIMEOUT_MS,
      windowSeconds: env.TELEMETRY_WINDOW_SECONDS,
      hotKeysTopK: env.TELEMETRY_HOT_KEYS_TOP_K,
      hotKeysCapacity: env.TELEMETRY_HOT_KEYS_CAPACITY,
      hotKeysSampleEvery: env.TELEMETRY_HOT_KEYS_SAMPLE_EVERY,
      missSpikeThreshold: env.TELEMETRY_MISS_SPIKE_THRESHOLD,
    },
    loadShedding: {
      maxEventLoopDelayMs: env.LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS,
      maxEventLoopUtilization: env.LOAD_SHED_MAX_EVENT_LOOP_UTILIZATION,
      sampleIntervalMs: env.LOAD_SHED_SAMPLE_INTERVAL_MS,
    },
    tracing: tracingSettings(env),
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_MS,
    shutdownDrainDelayMs: drainDelayMs(env),
    dev: { embeddedPostgresDir: env.EMBEDDED_POSTGRES_DIR },
  }
}

export type Config = Readonly<ReturnType<typeof toConfig>>

export interface HostPort {
  host: string
  port: number
}

export type RedisTopology =
  | { kind: 'single' }
  | { kind: 'sentinel'; sentinels: HostPort[]; masterName: string; username?: string; password?: string }
  | { kind: 'cluster'; nodes: HostPort[] }

const hostPorts = (list: string): HostPort[] =>
  list.split(',').map((item) => {
    const at = item.lastIndexOf(':')
    return { host: item.slice(0, at), port: Number(item.slice(at + 1)) }
  })

/** Exactly one topology: one node (REDIS_URL), Sentinel, or Cluster (CONFIG_RULES has already checked that). */
function redisTopology(env: Env): RedisTopology {
  if (env.REDIS_SENTINELS) {
    return {
      kind: 'sentinel',
      sentinels: hostPorts(env.REDIS_SENTINELS),
      masterName: env.REDIS_SENTINEL_MASTER_NAME!,
      username: env.REDIS_SENTINEL_USERNAME,
      password: env.REDIS_SENTINEL_PASSWORD,
    }
  }
  if (env.REDIS_CLUSTER_NODES) return { kind: 'cluster', nodes: hostPorts(env.REDIS_CLUSTER_NODES) }
  return { kind: 'single' }
}

// --- credentials, keys and TLS material: parsed and checked once here, so a mistake stops the process at start-up

export interface ServiceKey {
  /** What logs and the audit trail name; never the key. */
  id: string
  key: string
}

const KEY_ID = /^[A-Za-z0-9_.-]{1,32}$/
const CACHE_KEY_ID = /^[A-Za-z0-9_-]{1,16}$/

/** `id:key` or a bare key (id derived from its hash). */
function parseServiceKeys(variable: string, value: string | undefined, problems: string[]): ServiceKey[] {
  const keys: ServiceKey[] = []
  for (const entry of (value ?? '').split(',').map((k) => k.trim()).filter((k) => k.length > 0)) {
    const at = entry.indexOf(':')
    const named = at > 0 && KEY_ID.test(entry.slice(0, at))
    const key = named ? entry.slice(at + 1).trim() : entry
    const id = named ? entry.slice(0, at) : `key-${createHash('sha256').update(key).digest('hex').slice(0, 8)}`
    if (key.length === 0) problems.push(`${variable}: key "${id}" is empty`)
    if (keys.some((k) => k.id === id)) problems.push(`${variable}: key id "${id}" is used twice`)
    keys.push({ id, key })
  }
  return keys
}

function parseCacheKeys(value: string, problems: string[]): CacheKey[] {
  const keys: CacheKey[] = []
  for (const entry of value.split(',').map((k) => k.trim()).filter((k) => k.length > 0)) {
    const at = entry.indexOf(':')
    const id = at > 0 ? entry.slice(0, at) : ''
    if (!CACHE_KEY_ID.test(id)) {
      problems.push('CACHE_ENCRYPTION_KEYS: each entry is `id:key` with an id of 1-16 of A-Z a-z 0-9 _ -')
      continue
    }
    const secret = entry.slice(at + 1).trim()
    try {
      decodeKeySecret(id, secret)
    } catch (err) {
      problems.push(`CACHE_ENCRYPTION_KEYS: ${(err as Error).message}`)
      continue
    }
    if (keys.some((k) => k.id === id)) problems.push(`CACHE_ENCRYPTION_KEYS: key id "${id}" is used twice`)
    keys.push({ id, secret })
  }
  if (keys.length === 0 && problems.length === 0) problems.push('CACHE_ENCRYPTION_KEYS: no key given')
  return keys
}

function readPem(variable: string, file: string | undefined, problems: string[]): string | undefined {
  if (file === undefined) return undefined
  try {
    const text = readFileSync(file, 'utf8')
    if (!text.includes('-----BEGIN ')) problems.push(`${variable}: ${file} holds no PEM block`)
    return text
  } catch (err) {
    problems.push(`${variable}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
    return undefined
  }
}

function securitySettings(env: Env) {
  const problems: string[] = []

  const apiKeys = parseServiceKeys('SERVICE_API_KEYS', env.SERVICE_API_KEYS, problems)
  const metricsKeys = parseServiceKeys('METRICS_API_KEYS', env.METRICS_API_KEYS, problems)

  // Without keys (CONFIG_RULES refuses that in production, except for tools that never touch the cache) a random
  // per-process key seals the cache: nothing another instance or a restart wrote can be opened, so it is a miss.
  let encryptionKeys: CacheKey[]
  let encryptionKeyEphemeral = false
  if (env.CACHE_ENCRYPTION_KEYS !== undefined) {
    encryptionKeys = parseCacheKeys(env.CACHE_ENCRYPTION_KEYS, problems)
  } else {
    encryptionKeys = [{ id: 'ephemeral', secret: randomBytes(32).toString('base64') }]
    encryptionKeyEphemeral = true
  }

  const rediss = env.REDIS_URL.startsWith('rediss://')
  const redisTls = rediss
    ? {
        ca: readPem('REDIS_TLS_CA_FILE', env.REDIS_TLS_CA_FILE, problems),
        cert: readPem('REDIS_TLS_CERT_FILE', env.REDIS_TLS_CERT_FILE, problems),
        key: readPem('REDIS_TLS_KEY_FILE', env.REDIS_TLS_KEY_FILE, problems),
        servername: env.REDIS_TLS_SERVERNAME,
      }
    : undefined

  const databaseSsl =
    env.DATABASE_SSL_MODE === undefined
      ? undefined
      : {
          mode: env.DATABASE_SSL_MODE,
          ca: readPem('DATABASE_SSL_CA_FILE', env.DATABASE_SSL_CA_FILE, problems),
          cert: readPem('DATABASE_SSL_CERT_FILE', env.DATABASE_SSL_CERT_FILE, problems),
          key: readPem('DATABASE_SSL_KEY_FILE', env.DATABASE_SSL_KEY_FILE, problems),
        }

  if (problems.length > 0) throw new ConfigError(`Invalid configuration:\n  - ${problems.join('\n  - ')}`)
  return { apiKeys, metricsKeys, encryptionKeys, encryptionKeyEphemeral, redisTls, databaseSsl }
}

// --- rules between variables: what one variable's type and range cannot say. loadConfig checks every one of them on
// the validated environment, before anything is built, and reports all that fail at once; docs/configuration.md
// lists each rule's `rule` text (scripts/gen-config-doc.ts), so the list there is this table.

export interface RuleContext {
  production: boolean
  /** False for `npm run dev`, which starts an embedded Postgres. */
  requireDatabaseUrl: boolean
  /** False for tools that never touch the cache (`npm run migrate`). */
  requireCacheKeys: boolean
  /** False for tools that serve no HTTP (`npm run migrate`). */
  requireServiceKeys: boolean
}

export interface ConfigRule {
  /** The rule as docs/configuration.md states it. */
  rule: string
  /** One line per way the environment breaks it; none when it holds. */
  check: (env: Env, context: RuleContext) => string[]
}

const when = (broken: boolean, problem: string): string[] => (broken ? [problem] : [])
const redisTlsVariables = (env: Env) => [env.REDIS_TLS_CA_FILE, env.REDIS_TLS_CERT_FILE, env.REDIS_TLS_KEY_FILE, env.REDIS_TLS_SERVERNAME]
const databaseSslFiles = (env: Env) => [env.DATABASE_SSL_CA_FILE, env.DATABASE_SSL_CERT_FILE, env.DATABASE_SSL_KEY_FILE]
const serviceKeysOf = (variable: string, value: string | undefined) => parseServiceKeys(variable, value, [])

function drainDelayMs(env: Env): number {
  return env.SHUTDOWN_DRAIN_DELAY_MS ?? (env.NODE_ENV === 'production' ? DEFAULT_PRODUCTION_DRAIN_DELAY_MS : 0)
}

export const CONFIG_RULES: readonly ConfigRule[] = [
  {
    rule: '`DATABASE_URL` is required by `npm start` and `npm run migrate`; `npm run dev` starts an embedded Postgres instead.',
    check: (env, c) => when(c.requireDatabaseUrl && !env.DATABASE_URL, 'DATABASE_URL is required (npm run dev starts an embedded Postgres instead)'),
  },
  {
    rule: '`CACHE_ENCRYPTION_KEYS` is required when `NODE_ENV=production` (not by `npm run migrate`, which never touches the cache); elsewhere a random per-process key is used.',
    check: (env, c) =>
      when(
        c.production && c.requireCacheKeys && env.CACHE_ENCRYPTION_KEYS === undefined,
        'CACHE_ENCRYPTION_KEYS is required in production (cached user fields are encrypted with it)',
      ),
  },
  {
    rule:
      '`SERVICE_API_KEYS` is required when `NODE_ENV=production` (not by `npm run migrate`, which serves no HTTP): openapi.yaml ' +
      'promises that `/invalidate` (a logout) is never anonymous there.',
    check: (env, c) =>
      when(
        c.production && c.requireServiceKeys && serviceKeysOf('SERVICE_API_KEYS', env.SERVICE_API_KEYS).length === 0,
        'SERVICE_API_KEYS is required in production: without it /invalidate (logout) would accept anonymous calls. ' +
          'Set it to one or more `id:key` entries (openssl rand -base64 32 for a key)',
      ),
  },
  {
    rule: 'When `NODE_ENV=production`, every key in `SERVICE_API_KEYS` and `METRICS_API_KEYS` has at least 16 characters.',
    check: (env, c) =>
      c.production
        ? (['SERVICE_API_KEYS', 'METRICS_API_KEYS'] as const).flatMap((variable) =>
            serviceKeysOf(variable, env[variable])
              .filter((k) => k.key.length > 0 && k.key.length < 16)
              .map((k) => `${variable}: key "${k.id}" is shorter than 16 characters`),
          )
        : [],
  },
  {
    rule: '`REQUIRE_API_KEY_FOR_VALIDATE=true` needs at least one key in `SERVICE_API_KEYS`.',
    check: (env) =>
      when(
        env.REQUIRE_API_KEY_FOR_VALIDATE && serviceKeysOf('SERVICE_API_KEYS', env.SERVICE_API_KEYS).length === 0,
        'REQUIRE_API_KEY_FOR_VALIDATE=true needs SERVICE_API_KEYS (otherwise /validate would stay open)',
      ),
  },
  {
    rule: '`REDIS_URL` starts with `redis://` or `rediss://`.',
    check: (env) => when(!env.REDIS_URL.startsWith('redis://') && !env.REDIS_URL.startsWith('rediss://'), 'REDIS_URL must start with redis:// or rediss://'),
  },
  {
    rule: 'Any `REDIS_TLS_*` variable needs a `rediss://` `REDIS_URL` (no plaintext fallback).',
    check: (env) =>
      when(
        !env.REDIS_URL.startsWith('rediss://') && redisTlsVariables(env).some((v) => v !== undefined),
        'REDIS_TLS_* is set but REDIS_URL is not rediss://: refusing to connect in plaintext',
      ),
  },
  {
    rule: '`REDIS_TLS_CERT_FILE` and `REDIS_TLS_KEY_FILE` are set together or not at all.',
    check: (env) => when((env.REDIS_TLS_CERT_FILE === undefined) !== (env.REDIS_TLS_KEY_FILE === undefined), 'REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together'),
  },
  {
    rule: 'Any `DATABASE_SSL_*_FILE` needs `DATABASE_SSL_MODE` set, and not to `disable`.',
    check: (env) =>
      databaseSslFiles(env).some((v) => v !== undefined)
        ? [
            ...when(env.DATABASE_SSL_MODE === undefined, 'DATABASE_SSL_*_FILE needs DATABASE_SSL_MODE (verify-full, verify-ca or require)'),
            ...when(env.DATABASE_SSL_MODE === 'disable', 'DATABASE_SSL_*_FILE is set but DATABASE_SSL_MODE=disable'),
          ]
        : [],
  },
  {
    rule: '`DATABASE_SSL_CERT_FILE` and `DATABASE_SSL_KEY_FILE` are set together or not at all.',
    check: (env) =>
      when((env.DATABASE_SSL_CERT_FILE === undefined) !== (env.DATABASE_SSL_KEY_FILE === undefined), 'DATABASE_SSL_CERT_FILE and DATABASE_SSL_KEY_FILE go together'),
  },
  {
    rule: 'One Redis topology: `REDIS_SENTINELS` and `REDIS_CLUSTER_NODES` are not both set.',
    check: (env) =>
      when(env.REDIS_SENTINELS !== undefined && env.REDIS_CLUSTER_NODES !== undefined, 'REDIS_SENTINELS and REDIS_CLUSTER_NODES are both set: pick one topology'),
  },
  {
    rule: '`REDIS_SENTINELS` needs `REDIS_SENTINEL_MASTER_NAME`, and the other `REDIS_SENTINEL_*` variables need `REDIS_SENTINELS`.',
    check: (env) => [
      ...when(env.REDIS_SENTINELS !== undefined && !env.REDIS_SENTINEL_MASTER_NAME, 'REDIS_SENTINELS needs REDIS_SENTINEL_MASTER_NAME'),
      ...when(
        !env.REDIS_SENTINELS && Boolean(env.REDIS_SENTINEL_MASTER_NAME || env.REDIS_SENTINEL_USERNAME || env.REDIS_SENTINEL_PASSWORD),
        'REDIS_SENTINEL_* is set but REDIS_SENTINELS is not',
      ),
    ],
  },
  {
    rule: 'Every port in `REDIS_SENTINELS` and `REDIS_CLUSTER_NODES` is 1–65535.',
    check: (env) =>
      (['REDIS_SENTINELS', 'REDIS_CLUSTER_NODES'] as const).flatMap((name) => {
        const list = env[name]
        return when(list !== undefined && hostPorts(list).some((hp) => !(hp.port >= 1 && hp.port <= 65535)), `${name}: a port is out of range`)
      }),
  },
  {
    rule: '`REDIS_POOL_MIN` does not exceed `REDIS_POOL_MAX`.',
    check: (env) => when(env.REDIS_POOL_MIN > env.REDIS_POOL_MAX, 'REDIS_POOL_MIN must not exceed REDIS_POOL_MAX'),
  },
  {
    rule:
      'With `SLIDING_TTL_ENABLED=true`, `SLIDING_TTL_IDLE_SECONDS` exceeds `SLIDING_TTL_MIN_INTERVAL_SECONDS` (or an entry in use ' +
      'expires between two extensions) and does not exceed `CACHE_TTL_SECONDS`.',
    check: (env) =>
      when(
        env.SLIDING_TTL_ENABLED && (env.SLIDING_TTL_IDLE_SECONDS <= env.SLIDING_TTL_MIN_INTERVAL_SECONDS || env.SLIDING_TTL_IDLE_SECONDS > env.CACHE_TTL_SECONDS),
        'SLIDING_TTL_IDLE_SECONDS must exceed SLIDING_TTL_MIN_INTERVAL_SECONDS (or an entry in use expires between two extensions) and not exceed CACHE_TTL_SECONDS',
      ),
  },
  {
    rule:
      '`REVOCATION_OUTBOX_RETENTION_SECONDS` is at least `CACHE_TTL_SECONDS` + 60: a revocation stays readable for as long as an ' +
      'entry it concerns can be cached.',
    check: (env) =>
      when(
        env.REVOCATION_OUTBOX_RETENTION_SECONDS < env.CACHE_TTL_SECONDS + 60,
        'REVOCATION_OUTBOX_RETENTION_SECONDS must be at least CACHE_TTL_SECONDS + 60: a revocation must stay readable for as long as an entry it concerns can be cached',
      ),
  },
  {
    rule:
      '`SHUTDOWN_DRAIN_DELAY_MS` (default 5000 when `NODE_ENV=production`, else 0) is less than `SHUTDOWN_TIMEOUT_MS`: the deadline ' +
      'counts from the signal, and in-flight requests and pools need time after the drain.',
    check: (env) =>
      when(
        drainDelayMs(env) >= env.SHUTDOWN_TIMEOUT_MS,
        `SHUTDOWN_DRAIN_DELAY_MS (${drainDelayMs(env)}) must be less than SHUTDOWN_TIMEOUT_MS (${env.SHUTDOWN_TIMEOUT_MS}): the deadline ` +
          'counts from the signal, and in-flight requests and pools need time after the drain',
      ),
  },
]

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
    /** False for tools that never touch the cache (npm run migrate): CACHE_ENCRYPTION_KEYS is then not required. */
    requireCacheKeys?: boolean
    /** False for tools that serve no HTTP (npm run migrate): SERVICE_API_KEYS is then not required in production. */
    requireServiceKeys?: boolean
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
  const context: RuleContext = {
    production: value.NODE_ENV === 'production',
    requireDatabaseUrl: options.requireDatabaseUrl ?? true,
    requireCacheKeys: options.requireCacheKeys ?? true,
    requireServiceKeys: options.requireServiceKeys ?? true,
  }
  const broken = CONFIG_RULES.flatMap((r) => r.check(value, context))
  if (broken.length > 0) throw new ConfigError(`Invalid configuration:\n  - ${broken.join('\n  - ')}`)
  const config = toConfig(value)
  return deepFreeze(config)
}
