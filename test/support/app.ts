import { randomBytes } from 'node:crypto'
import { Redis, type RedisOptions } from 'ioredis'
import { buildApp, type AppOverrides } from '../../src/app.js'
import { createCacheCipher } from '../../src/cache/cipher.js'
import { createAnswerCodec } from '../../src/cache/codec.js'
import { keyScheme } from '../../src/cache/keys.js'
import { loadConfig } from '../../src/config.js'
import type { TestDatabase } from './database.js'
import { TEST_REDIS_URL } from './env.js'
import { captureLogs } from './logs.js'
import { checkResponsesAgainstOpenApi } from './openapi.js'

export interface TestAppOptions {
  db: TestDatabase
  env?: Record<string, string>
  overrides?: Omit<AppOverrides, 'logStream'>
  redisUrl?: string
  /** Validate every app.inject response against openapi.yaml (default true); false for a test that sends off-contract. */
  openapi?: boolean
  /** Where `redis` (the inspection connection) connects, when the app's own URL and user are not enough (ACL, TLS). */
  inspect?: { url: string; options?: RedisOptions }
}

/**
 * One cache encryption key per test process, so that apps sharing a key prefix (several instances in one test) can
 * open each other's values, as instances of one deployment do.
 */
const TEST_CACHE_KEY = `test:${randomBytes(32).toString('base64')}`

/**
 * Builds the real app against the test's own schema and its own Redis key prefix, with logs captured at debug so
 * tests can search every line. `redis` is a separate, plain connection for inspecting what the service wrote.
 */
export async function startTestApp(options: TestAppOptions) {
  const redisUrl = options.redisUrl ?? TEST_REDIS_URL
  const config = loadConfig(
    {
      NODE_ENV: 'test',
      DATABASE_URL: options.db.serviceUrl,
      DATABASE_SCHEMA: options.db.schema,
      REDIS_URL: redisUrl,
      REDIS_KEY_PREFIX: `ssc-test-${randomBytes(5).toString('hex')}:`,
      LOG_LEVEL: 'debug',
      CACHE_ENCRYPTION_KEYS: TEST_CACHE_KEY,
      // Event-loop shedding off unless a test is about it (abuse.test.ts sets its own limits): the test runs in the
      // app's process, and on a busy machine its lag would turn any request into 503 OVERLOADED.
      LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: '0',
      // Cache warming off unless a test is about it (cache-warming.test.ts): each test app's key prefix is a new, cold
      // cache, and warming would fill sessions a test expects its first validation to miss.
      CACHE_WARM_SESSIONS: '0',
      ...options.env,
    },
    { source: {} },
  )
  const prefix = config.redis.keyPrefix
  const logs = captureLogs()
  const app = await buildApp(config, { ...options.overrides, logStream: logs.stream })
  await app.ready()
  if (options.openapi !== false) checkResponsesAgainstOpenApi(app)
  const redis = new Redis(options.inspect?.url ?? redisUrl, {
    ...options.inspect?.options,
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
  })
  // Tests stop and restart Redis under it: its reconnect errors are expected, not unhandled.
  redis.on('error', () => undefined)
  await redis.connect().catch(() => undefined)

  async function validate(token: unknown, headers: Record<string, string> = {}) {
    return app.inject({ method: 'POST', url: '/validate', payload: { token }, headers })
  }
  async function invalidate(body: Record<string, unknown>, headers: Record<string, string> = {}) {
    return app.inject({ method: 'POST', url: '/invalidate', payload: body, headers })
  }
  /**
   * Every key this app wrote, with its value (strings) or members (sets), as latin1 text: values and index members
   * are bytes (src/cache/codec.ts, keys.ts), and latin1 keeps every byte, so a search for clear text means something.
   */
  async function dump(): Promise<Record<string, string | string[]>> {
    const keys = await redis.keys(`${prefix}*`)
    const out: Record<string, string | string[]> = {}
    for (const key of keys) {
      const type = await redis.type(key)
      if (type === 'string') out[key] = (await redis.getBuffer(key))?.toString('latin1') ?? ''
      else if (type === 'zset') out[key] = (await redis.zrangeBuffer(key, 0, -1)).map((m) => m.toString('latin1'))
    }
    return out
  }

  return {
    app,
    config,
    prefix,
    /** This app's key names (src/cache/keys.ts): tests pass token hashes and UUIDs, as the service does. */
    keys: keyScheme(prefix),
    /** Opens what this app wrote (its encryption keys, no memo): `codec.decode(tokenHash, raw)` for a value read raw. */
    codec: createAnswerCodec(createCacheCipher(config.cache.encryptionKeys)),
    redis,
    logs,
    validate,
    invalidate,
    dump,
    /** Waits until background cache writes started so far have finished. */
    settle: () => app.internals.writes.settle(),
    async close() {
      await app.close()
      const keys = await redis.keys(`${prefix}*`).catch(() => [] as string[])
      if (keys.length > 0) await redis.del(...keys).catch(() => undefined)
      redis.disconnect()
    },
  }
}

export type TestApp = Awaited<ReturnType<typeof startTestApp>>
