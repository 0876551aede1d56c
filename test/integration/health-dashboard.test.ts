import { Ajv2020 } from 'ajv/dist/2020.js'
import addFormatsModule from 'ajv-formats'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashToken } from '../../src/domain/token.js'
import { startTestApp, type TestApp } from '../support/app.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'

/**
 * The Studio's Redis dashboard (apps/studio, components/interfaces/Database/Redis/RedisDashboard.tsx) reads
 * /api/health/redis as its `RedisHealth` type (apps/studio/types/redis.ts). The schema below is written from that
 * type, not from openapi.yaml, and the live /health/redis must satisfy it: proxying the dashboard to this service
 * must not break it. Extra fields (the service's own) are allowed; the dashboard ignores them.
 */
const num = { type: 'number' }
const nullableNum = { type: ['number', 'null'] }
const RedisHealth = {
  type: 'object',
  required: ['status', 'timestamp', 'redis', 'sessionCache', 'hotkeys', 'performance', 'errors'],
  properties: {
    status: { enum: ['healthy', 'degraded', 'unhealthy'] },
    timestamp: { type: 'string', format: 'date-time' },
    redis: {
      type: 'object',
      required: ['connected'],
      properties: {
        connected: { type: 'boolean' },
        // Optional strings/numbers in the Studio's type; this service sends null for "not measured" in its own fields.
        version: { type: ['string', 'null'] },
        uptime: num,
        usedMemory: { type: 'string' },
        totalKeys: nullableNum,
      },
    },
    sessionCache: {
      type: 'object',
      required: ['enabled', 'healthy', 'metrics', 'pool'],
      properties: {
        enabled: { type: 'boolean' },
        healthy: { type: 'boolean' },
        metrics: {
          type: 'object',
          required: ['hits', 'misses', 'errors', 'total', 'hitRate', 'ttl'],
          properties: { hits: num, misses: num, errors: num, total: num, hitRate: num, ttl: num },
        },
        pool: {
          oneOf: [{ type: 'null' }, { type: 'object', required: ['size', 'available', 'pending'], properties: { size: num, available: num, pending: num } }],
        },
      },
    },
    hotkeys: {
      type: 'object',
      required: ['totalTracked', 'totalAccesses', 'thresholdExceeded', 'topHotkeys', 'detectorStats'],
      properties: {
        totalTracked: num,
        totalAccesses: num,
        thresholdExceeded: num,
        topHotkeys: {
          type: 'array',
          items: {
            type: 'object',
            required: ['key', 'accesses', 'accessesPerMinute', 'firstSeen', 'lastAccessed', 'isHot'],
            properties: { key: { type: 'string' }, accesses: num, accessesPerMinute: num, firstSeen: num, lastAccessed: num, isHot: { type: 'boolean' } },
          },
        },
        detectorStats: {
          type: 'object',
          required: ['threshold', 'windowSizeMs', 'maxTrackedKeys'],
          properties: { threshold: num, windowSizeMs: num, maxTrackedKeys: num, trackedKeys: num },
        },
      },
    },
    performance: { type: 'object', required: ['ping', 'set', 'get'], properties: { ping: nullableNum, set: nullableNum, get: nullableNum } },
    errors: { type: 'array', items: { type: 'string' } },
  },
}

type AddFormats = (ajv: Ajv2020) => unknown
const formatsExport = addFormatsModule as unknown as AddFormats | { default: AddFormats }
const addFormats: AddFormats = typeof formatsExport === 'function' ? formatsExport : formatsExport.default
const ajv = new Ajv2020({ allErrors: true })
addFormats(ajv)
const check = ajv.compile(RedisHealth)

let db: TestDatabase
let t: TestApp

beforeAll(async () => {
  db = await createTestDatabase()
  // Every lookup counted for hot keys, so the window's figures are exact.
  t = await startTestApp({ db, env: { TELEMETRY_HOT_KEYS_SAMPLE_EVERY: '1', CACHE_TTL_SECONDS: '120', REVOCATION_OUTBOX_RETENTION_SECONDS: '3600' } })
})
afterAll(async () => {
  await t?.close()
  await db?.drop()
})

describe('/health/redis as the Studio dashboard reads it', () => {
  it('carries every RedisHealth field, filled from what the service measures; hot keys by 8-hex id only', async () => {
    const hot = await db.insertSession()
    const other = await db.insertSession()
    for (let i = 0; i < 6; i++) expect((await t.validate(hot.token)).statusCode).toBe(200)
    expect((await t.validate(other.token)).statusCode).toBe(200)
    await t.settle()
    t.app.internals.telemetry.closeWindow()

    const response = await t.app.inject({ method: 'GET', url: '/health/redis' })
    expect(response.statusCode).toBe(200)
    const body = response.json()
    expect(check(body), JSON.stringify(check.errors)).toBe(true)

    expect(body.status).toBe('healthy')
    expect(body.errors).toEqual([])
    expect(Date.now() - Date.parse(body.timestamp)).toBeLessThan(10_000)
    expect(body.redis).toMatchObject({ connected: true, uptime: body.redis.uptimeSeconds, usedMemory: expect.stringMatching(/^\d+(\.\d\d[KMGTP])?B?$/) })
    expect(body.sessionCache).toMatchObject({
      enabled: true,
      healthy: true,
      metrics: { hits: body.sessionCache.hits, misses: body.sessionCache.misses, errors: 0, total: body.sessionCache.hits + body.sessionCache.misses, ttl: 120 },
      pool: { size: body.pool.size, available: body.pool.available, pending: body.pool.pending },
    })
    expect(body.performance).toMatchObject({ ping: body.performance.pingMs, set: body.performance.setMs, get: body.performance.getMs })
    expect(typeof body.performance.ping).toBe('number')

    // Hot keys: the session asked 6 times leads, by the first 8 hex characters of its token's hash, never more.
    const hotId = hashToken(hot.token).slice(0, 8)
    expect(body.hotkeys.totalAccesses).toBe(7)
    expect(body.hotkeys.topHotkeys[0]).toMatchObject({ key: hotId, accesses: 6 })
    expect(body.hotkeys.detectorStats).toMatchObject({ windowSizeMs: 60_000, maxTrackedKeys: 1000, trackedKeys: body.hotkeys.topHotkeys.length })
    const text = response.body
    for (const secret of [hot.token, other.token, hashToken(hot.token), hashToken(other.token)]) expect(text).not.toContain(secret)
  })
})
