import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { connectionOptions } from '../../src/redis/client.js'
import { pgConnectionOptions } from '../../src/store/pg-session-store.js'

/** Credentials, keys and TLS settings: parsed once, refused at start-up when wrong, mapped onto the clients' options. */

const KEY = randomBytes(32).toString('base64')
const base = { DATABASE_URL: 'postgres://db/x', CACHE_ENCRYPTION_KEYS: `k1:${KEY}`, SERVICE_API_KEYS: `studio:${'s'.repeat(24)}` }
const load = (env: Record<string, string>) => loadConfig({ ...base, ...env }, { source: {} })

const dir = mkdtempSync(path.join(tmpdir(), 'ssc-config-'))
const pemFile = path.join(dir, 'ca.pem')
writeFileSync(pemFile, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n')
const notPem = path.join(dir, 'not.pem')
writeFileSync(notPem, 'hello')
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('service API keys', () => {
  it('takes `id:key` entries and bare keys (id derived from the hash, never from the key text)', () => {
    const keys = load({ SERVICE_API_KEYS: `studio:${'s'.repeat(20)}, ${'b'.repeat(24)}` }).http.apiKeys
    expect(keys[0]).toEqual({ id: 'studio', key: 's'.repeat(20) })
    expect(keys[1]!.key).toBe('b'.repeat(24))
    expect(keys[1]!.id).toMatch(/^key-[0-9a-f]{8}$/)
    expect(keys[1]!.id).not.toContain('bbb')
  })

  it.each([
    [{ SERVICE_API_KEYS: 'short' }, /SERVICE_API_KEYS: key "key-[0-9a-f]{8}" is shorter than 16 characters/],
    [{ SERVICE_API_KEYS: `a:${'x'.repeat(16)},a:${'y'.repeat(16)}` }, /key id "a" is used twice/],
    [{ METRICS_API_KEYS: 'tiny' }, /METRICS_API_KEYS: key .* shorter than 16/],
  ])('refuses %j in production', (env, message) => {
    expect(() => load(env)).toThrow(message)
  })

  it('refuses to start production without SERVICE_API_KEYS (anonymous /invalidate), with a message that says so', () => {
    expect(() => loadConfig({ DATABASE_URL: 'postgres://db/x', CACHE_ENCRYPTION_KEYS: `k1:${KEY}` }, { source: {} })).toThrow(
      /SERVICE_API_KEYS is required in production: without it \/invalidate \(logout\) would accept anonymous calls/,
    )
    // Outside production, and for tools that serve nothing (npm run migrate), no keys is allowed.
    expect(loadConfig({ NODE_ENV: 'development', DATABASE_URL: 'postgres://db/x' }, { source: {} }).http.apiKeys).toEqual([])
    expect(
      loadConfig({ DATABASE_URL: 'postgres://db/x' }, { source: {}, requireCacheKeys: false, requireServiceKeys: false }).http.apiKeys,
    ).toEqual([])
  })

  it('allows short keys outside production (tests, development)', () => {
    expect(load({ NODE_ENV: 'test', SERVICE_API_KEYS: 'k1,k2', METRICS_API_KEYS: 'm:k3' }).http.metricsKeys).toEqual([{ id: 'm', key: 'k3' }])
  })
})

describe('cache encryption keys', () => {
  it('parses `id:base64` pairs, first one sealing', () => {
    const other = randomBytes(32).toString('base64url')
    expect(load({ CACHE_ENCRYPTION_KEYS: `new:${other},old:${KEY}` }).cache.encryptionKeys.map((k) => k.id)).toEqual(['new', 'old'])
  })

  it.each([
    ['missing in production', { CACHE_ENCRYPTION_KEYS: '' }, /CACHE_ENCRYPTION_KEYS is required in production/],
    ['too short', { CACHE_ENCRYPTION_KEYS: 'k:abc' }, /32 random bytes/],
    ['without an id', { CACHE_ENCRYPTION_KEYS: KEY }, /each entry is `id:key`/],
    ['with a duplicate id', { CACHE_ENCRYPTION_KEYS: `k:${KEY},k:${KEY}` }, /key id "k" is used twice/],
  ])('refuses a key list %s', (_what, env, message) => {
    expect(() => load(env)).toThrow(message)
  })

  it('outside production, no keys means a random per-process key, flagged so the app warns', () => {
    const config = loadConfig({ NODE_ENV: 'development', DATABASE_URL: 'postgres://db/x' }, { source: {} })
    expect(config.cache.encryptionKeyEphemeral).toBe(true)
    expect(config.cache.encryptionKeys).toHaveLength(1)
  })
})

describe('TLS settings', () => {
  it('reads the Redis CA and client certificate for a rediss:// URL, and always verifies', () => {
    const config = load({ REDIS_URL: 'rediss://r:6380', REDIS_TLS_CA_FILE: pemFile, REDIS_TLS_CERT_FILE: pemFile, REDIS_TLS_KEY_FILE: pemFile })
    expect(config.redis.tls?.ca).toContain('BEGIN CERTIFICATE')
    const { extra } = connectionOptions(config.redis)
    expect(extra.tls).toMatchObject({ rejectUnauthorized: true, ca: expect.stringContaining('BEGIN'), cert: expect.any(String), key: expect.any(String) })
    expect(connectionOptions(load({ REDIS_URL: 'rediss://r:6380' }).redis).extra.tls).toEqual({ rejectUnauthorized: true })
    expect(connectionOptions(load({}).redis).extra.tls).toBeUndefined()
  })

  it.each([
    [{ REDIS_TLS_CA_FILE: pemFile }, /REDIS_TLS_\* is set but REDIS_URL is not rediss:\/\//],
    [{ REDIS_URL: 'rediss://r', REDIS_TLS_CERT_FILE: pemFile }, /REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together/],
    [{ REDIS_URL: 'rediss://r', REDIS_TLS_CA_FILE: path.join(dir, 'missing.pem') }, /REDIS_TLS_CA_FILE: cannot read .*missing\.pem \(ENOENT\)/],
    [{ REDIS_URL: 'rediss://r', REDIS_TLS_CA_FILE: notPem }, /holds no PEM block/],
    [{ REDIS_URL: 'http://r' }, /REDIS_URL must start with redis:\/\/ or rediss:\/\//],
    [{ DATABASE_SSL_CA_FILE: pemFile }, /DATABASE_SSL_\*_FILE needs DATABASE_SSL_MODE/],
    [{ DATABASE_SSL_MODE: 'disable', DATABASE_SSL_CA_FILE: pemFile }, /DATABASE_SSL_MODE=disable/],
    [{ DATABASE_SSL_MODE: 'sometimes' }, /DATABASE_SSL_MODE/],
  ])('refuses %j', (env, message) => {
    expect(() => load(env)).toThrow(message)
  })

  it('maps libpq sslmode names onto pg, removing ssl parameters from the URL so the explicit mode wins', () => {
    const url = 'postgres://u:p@db:5432/x?sslmode=disable&application_name=a'
    expect(pgConnectionOptions(url, undefined)).toEqual({ connectionString: url })
    const full = pgConnectionOptions(url, { mode: 'verify-full', ca: 'CA' })
    expect(full.connectionString).toBe('postgres://u:p@db:5432/x?application_name=a')
    expect(full.ssl).toEqual({ ca: 'CA', rejectUnauthorized: true })
    const ca = pgConnectionOptions(url, { mode: 'verify-ca', ca: 'CA' }).ssl as { rejectUnauthorized: boolean; checkServerIdentity: () => unknown }
    expect(ca.rejectUnauthorized).toBe(true)
    expect(ca.checkServerIdentity()).toBeUndefined()
    expect(pgConnectionOptions(url, { mode: 'require' }).ssl).toEqual({ rejectUnauthorized: false })
    expect(pgConnectionOptions(url, { mode: 'disable' }).ssl).toBe(false)
  })

  it('lets REDIS_USERNAME/REDIS_PASSWORD win over credentials in the URL', () => {
    const config = load({ REDIS_URL: 'redis://old:oldpw@r:6379/0', REDIS_USERNAME: 'ssc', REDIS_PASSWORD: 'pw' })
    const { url, extra } = connectionOptions(config.redis)
    expect(url).toBe('redis://r:6379/0')
    expect(extra).toMatchObject({ username: 'ssc', password: 'pw' })
  })
})
