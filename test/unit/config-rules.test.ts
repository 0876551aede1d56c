import { describe, expect, it, vi } from 'vitest'
import { CONFIG_RULES, ConfigError, loadConfig } from '../../src/config.js'

const CACHE_KEY = `k1:${Buffer.alloc(32, 7).toString('base64')}`
const valid = { DATABASE_URL: 'postgres://db/x', CACHE_ENCRYPTION_KEYS: CACHE_KEY, SERVICE_API_KEYS: 'studio:a-key-of-sixteen-plus' }

/**
 * One environment per rule that breaks it and nothing else. docs/configuration.md lists CONFIG_RULES; these cases
 * hold that every rule listed is one loadConfig enforces, so the list cannot name a rule the code does not check.
 */
const BREAKING: Array<{ env: Record<string, string>; message: string }> = [
  { env: { DATABASE_URL: '' }, message: 'DATABASE_URL is required' },
  { env: { CACHE_ENCRYPTION_KEYS: '' }, message: 'CACHE_ENCRYPTION_KEYS is required in production' },
  { env: { SERVICE_API_KEYS: '' }, message: 'SERVICE_API_KEYS is required in production' },
  { env: { METRICS_API_KEYS: 'm:short' }, message: 'METRICS_API_KEYS: key "m" is shorter than 16 characters' },
  { env: { NODE_ENV: 'development', SERVICE_API_KEYS: '', REQUIRE_API_KEY_FOR_VALIDATE: 'true' }, message: 'REQUIRE_API_KEY_FOR_VALIDATE=true needs SERVICE_API_KEYS' },
  { env: { REDIS_URL: 'http://127.0.0.1:6379' }, message: 'REDIS_URL must start with redis:// or rediss://' },
  { env: { REDIS_TLS_SERVERNAME: 'redis.internal' }, message: 'REDIS_TLS_* is set but REDIS_URL is not rediss://' },
  { env: { REDIS_URL: 'rediss://127.0.0.1:6380', REDIS_TLS_KEY_FILE: '/nonexistent.key' }, message: 'REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together' },
  { env: { DATABASE_SSL_CA_FILE: '/nonexistent.pem' }, message: 'DATABASE_SSL_*_FILE needs DATABASE_SSL_MODE' },
  { env: { DATABASE_SSL_MODE: 'require', DATABASE_SSL_CERT_FILE: '/nonexistent.pem' }, message: 'DATABASE_SSL_CERT_FILE and DATABASE_SSL_KEY_FILE go together' },
  { env: { REDIS_SENTINELS: 'a:26379', REDIS_SENTINEL_MASTER_NAME: 'm', REDIS_CLUSTER_NODES: 'b:7000' }, message: 'pick one topology' },
  { env: { REDIS_SENTINELS: 'a:26379' }, message: 'REDIS_SENTINELS needs REDIS_SENTINEL_MASTER_NAME' },
  { env: { REDIS_CLUSTER_NODES: 'b:70000' }, message: 'REDIS_CLUSTER_NODES: a port is out of range' },
  { env: { REDIS_POOL_MIN: '5', REDIS_POOL_MAX: '4' }, message: 'REDIS_POOL_MIN must not exceed REDIS_POOL_MAX' },
  { env: { SLIDING_TTL_ENABLED: 'true', SLIDING_TTL_IDLE_SECONDS: '60', SLIDING_TTL_MIN_INTERVAL_SECONDS: '60' }, message: 'SLIDING_TTL_IDLE_SECONDS must exceed' },
  { env: { CACHE_TTL_SECONDS: '600', REVOCATION_OUTBOX_RETENTION_SECONDS: '600' }, message: 'REVOCATION_OUTBOX_RETENTION_SECONDS must be at least CACHE_TTL_SECONDS + 60' },
  { env: { SHUTDOWN_TIMEOUT_MS: '5000' }, message: 'SHUTDOWN_DRAIN_DELAY_MS (5000) must be less than SHUTDOWN_TIMEOUT_MS (5000)' },
]

describe('CONFIG_RULES, the rules between variables that docs/configuration.md lists', () => {
  it('accepts the valid base environment', () => {
    expect(() => loadConfig(valid, { source: {} })).not.toThrow()
  })

  it.each(BREAKING)('refuses $message', ({ env, message }) => {
    expect(() => loadConfig({ ...valid, ...env }, { source: {} })).toThrow(ConfigError)
    expect(() => loadConfig({ ...valid, ...env }, { source: {} })).toThrow(message)
  })

  it('has a case above for every rule, each breaking exactly one', () => {
    const spies = CONFIG_RULES.map((rule) => vi.spyOn(rule, 'check'))
    try {
      const brokenBy = BREAKING.map(({ env }) => {
        for (const spy of spies) spy.mockClear()
        expect(() => loadConfig({ ...valid, ...env }, { source: {} })).toThrow(ConfigError)
        return spies.flatMap((spy, i) => (spy.mock.results.some((r) => (r.value as string[]).length > 0) ? [i] : []))
      })
      for (const [i, rules] of brokenBy.entries()) expect(rules, BREAKING[i]!.message).toHaveLength(1)
      expect(new Set(brokenBy.flat()).size).toBe(CONFIG_RULES.length)
    } finally {
      for (const spy of spies) spy.mockRestore()
    }
  })

  it('leaves DATABASE_URL to npm run dev when it starts an embedded Postgres', () => {
    expect(() => loadConfig({ ...valid, DATABASE_URL: '' }, { source: {}, requireDatabaseUrl: false })).not.toThrow()
  })
})
