import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../../src/config.js'

/** A valid cache key (production, the default NODE_ENV, requires one). */
const CACHE_KEY = `k1:${Buffer.alloc(32, 7).toString('base64')}`

/** Production also requires a service key. */
const SERVICE_KEYS = `studio:${'s'.repeat(24)}`

const load = (env: Record<string, string>, requireDatabaseUrl = true) =>
  loadConfig({ CACHE_ENCRYPTION_KEYS: CACHE_KEY, SERVICE_API_KEYS: SERVICE_KEYS, ...env }, { source: {}, requireDatabaseUrl })

describe('configuration', () => {
  it('defaults to the audit’s settings', () => {
    const config = load({ DATABASE_URL: 'postgres://db/x' })
    expect(config.cache.ttlSeconds).toBe(300)
    expect(config.redis).toMatchObject({ poolMin: 2, poolMax: 10, url: 'redis://127.0.0.1:6379' })
    expect(config.breaker).toEqual({
      timeoutMs: 1000,
      errorThresholdPercentage: 70,
      resetTimeoutMs: 15_000,
      rollingCountTimeoutMs: 10_000,
      volumeThreshold: 10,
    })
    expect(config.database.schema).toBe('platform')
    expect(config.port).toBe(3000)
    expect(Object.isFrozen(config.cache)).toBe(true)
  })

  it('converts strings from the environment to typed values', () => {
    // NODE_ENV=test: production refuses service keys shorter than 16 characters.
    const config = load({ NODE_ENV: 'test', DATABASE_URL: 'postgres://db/x', PORT: '8080', SLIDING_TTL_ENABLED: 'true', SERVICE_API_KEYS: ' a , b,,c ' })
    expect(config.port).toBe(8080)
    expect(config.cache.slidingTtl).toBe(true)
    expect(config.http.apiKeys.map((k) => k.key)).toEqual(['a', 'b', 'c'])
  })

  it('drains for 5 s by default in production and not at all elsewhere, always within the shutdown deadline', () => {
    const url = { DATABASE_URL: 'postgres://db/x' }
    expect(load(url)).toMatchObject({ shutdownDrainDelayMs: 5000, shutdownTimeoutMs: 10_000 })
    expect(load({ ...url, NODE_ENV: 'development' }).shutdownDrainDelayMs).toBe(0)
    expect(load({ ...url, NODE_ENV: 'test', SHUTDOWN_DRAIN_DELAY_MS: '250' }).shutdownDrainDelayMs).toBe(250)
    // The deadline counts from the signal, so a drain delay that fills it would leave nothing for in-flight requests.
    expect(() => load({ ...url, SHUTDOWN_DRAIN_DELAY_MS: '10000' })).toThrow(/SHUTDOWN_DRAIN_DELAY_MS \(10000\) must be less than SHUTDOWN_TIMEOUT_MS/)
    expect(() => load({ ...url, SHUTDOWN_TIMEOUT_MS: '3000' })).toThrow(ConfigError)
    expect(load({ ...url, SHUTDOWN_TIMEOUT_MS: '3000', SHUTDOWN_DRAIN_DELAY_MS: '1000' }).shutdownDrainDelayMs).toBe(1000)
  })

  it('treats an empty value as unset', () => {
    const config = load({ NODE_ENV: 'test', DATABASE_URL: 'postgres://db/x', PORT: '', SERVICE_API_KEYS: '' })
    expect(config.port).toBe(3000)
    expect(config.http.apiKeys).toEqual([])
  })

  it.each([
    [{ PORT: 'eighty' }, /PORT must be integer \(got "eighty"\)/],
    [{ CACHE_TTL_SECONDS: '0' }, /CACHE_TTL_SECONDS must be >= 1/],
    [{ DATABASE_SCHEMA: 'Robert"; DROP' }, /DATABASE_SCHEMA must match pattern/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL/],
    [{ REDIS_POOL_MIN: '5', REDIS_POOL_MAX: '2' }, /REDIS_POOL_MIN must not exceed REDIS_POOL_MAX/],
    [{ NODE_ENV: 'test', SERVICE_API_KEYS: '', REQUIRE_API_KEY_FOR_VALIDATE: 'true' }, /REQUIRE_API_KEY_FOR_VALIDATE=true needs SERVICE_API_KEYS/],
    [{ SERVICE_API_KEYS: '' }, /SERVICE_API_KEYS is required in production/],
  ])('refuses %j with a clear message', (env, message) => {
    expect(() => load({ DATABASE_URL: 'postgres://db/x', ...env })).toThrow(message)
  })

  it('requires DATABASE_URL unless the dev launcher says it will provide one', () => {
    expect(() => load({})).toThrow(ConfigError)
    expect(() => load({})).toThrow(/DATABASE_URL is required/)
    expect(load({}, false).database.url).toBeUndefined()
  })

  it('lets overrides win over the environment, and the environment over launcher defaults', () => {
    const config = loadConfig(
      { PORT: '3001' },
      { source: { PORT: '3002', LOG_LEVEL: 'warn', DATABASE_URL: 'postgres://db/x', CACHE_ENCRYPTION_KEYS: CACHE_KEY, SERVICE_API_KEYS: SERVICE_KEYS }, defaults: { LOG_LEVEL: 'debug', LOG_PRETTY: 'true' } },
    )
    expect(config.port).toBe(3001)
    expect(config.log).toEqual({ level: 'warn', pretty: true })
  })

  describe('Redis topology: exactly one of one node, Sentinel, Cluster', () => {
    const base = { DATABASE_URL: 'postgres://db/x' }
    it('is one node by default', () => {
      expect(load(base).redis.topology).toEqual({ kind: 'single' })
    })
    it('reads Sentinel: the sentinels, the master name, the sentinel credentials', () => {
      const config = load({ ...base, REDIS_SENTINELS: 's1:26379,10.0.0.2:26380', REDIS_SENTINEL_MASTER_NAME: 'ssc-master', REDIS_SENTINEL_PASSWORD: 'pw' })
      expect(config.redis.topology).toEqual({
        kind: 'sentinel',
        sentinels: [{ host: 's1', port: 26379 }, { host: '10.0.0.2', port: 26380 }],
        masterName: 'ssc-master',
        username: undefined,
        password: 'pw',
      })
    })
    it('reads Cluster nodes', () => {
      expect(load({ ...base, REDIS_CLUSTER_NODES: 'n1:7000,n2:7001' }).redis.topology).toEqual({
        kind: 'cluster',
        nodes: [{ host: 'n1', port: 7000 }, { host: 'n2', port: 7001 }],
      })
    })
    it.each([
      [{ REDIS_SENTINELS: 's1:26379', REDIS_SENTINEL_MASTER_NAME: 'm', REDIS_CLUSTER_NODES: 'n1:7000' }, /both set: pick one topology/],
      [{ REDIS_SENTINELS: 's1:26379' }, /REDIS_SENTINELS needs REDIS_SENTINEL_MASTER_NAME/],
      [{ REDIS_SENTINEL_MASTER_NAME: 'm' }, /REDIS_SENTINEL_\* is set but REDIS_SENTINELS is not/],
      [{ REDIS_CLUSTER_NODES: 'n1:70000' }, /a port is out of range/],
      [{ REDIS_CLUSTER_NODES: 'n1' }, /REDIS_CLUSTER_NODES/],
    ])('refuses %j with a clear message', (env, message) => {
      expect(() => load({ ...base, ...env })).toThrow(ConfigError)
      expect(() => load({ ...base, ...env })).toThrow(message)
    })
  })
})
