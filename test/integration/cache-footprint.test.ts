import { randomBytes, randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SessionAnswer } from '../../src/domain/session.js'
import { hashToken } from '../../src/domain/token.js'
import { redisCacheUnderTest } from '../support/redis-cache.js'
import { startRedisServer } from '../support/redis-server.js'

/**
 * What one cached session costs Redis, as docs/capacity.md and `npm run bench` (load/bench/run.ts) measure it:
 * MEMORY USAGE of its entry, its session index and its user's sorted set (one session per user, as in the bench).
 * Sessions are shaped like the bench's seed (email `bench-<uuid>@example.test`, 55 characters; Ada Lovelace, ada; no
 * last activity; expiring in a day; read a few minutes after creation; sealed by a key with the bench's id, `bench`),
 * and filled through the real cache (pool, breaker, scripts, codec).
 *
 * BUDGET is what this build measured (Redis 7.0.15, jemalloc 5.3, 2 × 64-bit cores) and what docs/capacity.md quotes
 * next to the bench's own measurement: a change that makes a cached session bigger fails here. Allocation classes are
 * 16 bytes apart up to 128 and 32 apart up to 256, so each number is exact for this data, not a mean with noise; a
 * Redis whose per-key overhead differs (another major version) may need the numbers measured again.
 */
const BUDGET = {
  /** A 19-character key prefix, like the bench's `ssc-bench-<8 hex>:`. */
  benchPrefix: { entry: 248, sessionIndex: 120, userIndex: 136, total: 504 },
  /** A 4-character key prefix, like the default `ssc:`. */
  defaultPrefix: { entry: 232, sessionIndex: 88, userIndex: 104, total: 424 },
} as const

const SESSIONS = 40

function benchShaped(): SessionAnswer & { valid: true } {
  const userId = randomUUID()
  const readAtMs = Date.now()
  const expiresAt = new Date(readAtMs + 86_400_000).toISOString()
  return {
    valid: true,
    entry: {
      session: { id: randomUUID(), userId, createdAt: new Date(readAtMs - 5 * 60_000).toISOString(), expiresAt, lastActivityAt: null },
      user: { id: userId, email: `bench-${userId}@example.test`, firstName: 'Ada', lastName: 'Lovelace', username: 'ada' },
      expiresAtMs: Date.parse(expiresAt),
      readAtMs,
    },
  }
}

// A redis-server of its own (the same binary as the shared one): the other test files' traffic on the shared Redis,
// running at the same time, once moved a mean by a byte in CI; here nothing else writes while it measures.
let server: Awaited<ReturnType<typeof startRedisServer>>
let redis: Redis
beforeAll(async () => {
  server = await startRedisServer()
  redis = new Redis(server.url)
})
afterAll(async () => {
  redis?.disconnect()
  await server?.close()
})

async function measure(prefix: string) {
  const subject = await redisCacheUnderTest(server.url, 30_000, { kind: 'single' }, { prefix, keyId: 'bench' })
  try {
    const usage = async (key: string) => {
      const bytes = await redis.memory('USAGE', key, 'SAMPLES', 0)
      if (bytes === null) throw new Error(`${key} is missing`)
      return bytes
    }
    const sum = { entry: 0, sessionIndex: 0, userIndex: 0 }
    for (let i = 0; i < SESSIONS; i++) {
      const answer = benchShaped()
      const tokenHash = hashToken(`bench_${randomBytes(24).toString('base64url')}`)
      expect(await subject.cache.fill(tokenHash, answer, 300_000)).toBe('written')
      expect(await subject.cache.get(tokenHash)).toEqual(answer)
      sum.entry += await usage(subject.keys.entry(tokenHash))
      sum.sessionIndex += await usage(subject.keys.sessionIndex(answer.entry.session.id))
      sum.userIndex += await usage(subject.keys.userIndex(answer.entry.session.userId))
    }
    const mean = (n: number) => Math.round(n / SESSIONS)
    const bytes = { entry: mean(sum.entry), sessionIndex: mean(sum.sessionIndex), userIndex: mean(sum.userIndex) }
    return { ...bytes, total: bytes.entry + bytes.sessionIndex + bytes.userIndex }
  } finally {
    await subject.close()
  }
}

function withinBudget(bytes: Awaited<ReturnType<typeof measure>>, budget: (typeof BUDGET)[keyof typeof BUDGET]) {
  for (const part of ['entry', 'sessionIndex', 'userIndex', 'total'] as const) {
    expect(bytes[part], `${part}: ${JSON.stringify(bytes)} against ${JSON.stringify(budget)}`).toBeLessThanOrEqual(budget[part])
  }
}

describe('Redis bytes per cached session (entry + both indexes, MEMORY USAGE)', () => {
  it('stays within the budget with a bench-length key prefix (19 characters)', async () => {
    const prefix = `ssc-fprnt-${randomBytes(4).toString('hex')}:`
    expect(prefix).toHaveLength(19)
    const bytes = await measure(prefix)
    withinBudget(bytes, BUDGET.benchPrefix)
  })

  it('stays within the budget with a default-length key prefix (`ssc:`, 4 characters)', async () => {
    const prefix = `f${randomBytes(1).toString('hex')}:`
    expect(prefix).toHaveLength(4)
    const bytes = await measure(prefix)
    withinBudget(bytes, BUDGET.defaultPrefix)
  })
})
