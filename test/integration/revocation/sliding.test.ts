import { describe, expect, it } from 'vitest'
import { ask, revocationMatrix } from '../../support/revocation-matrix.js'
import { createTestDatabase } from '../../support/database.js'
import { startTestApp } from '../../support/app.js'

// Sliding TTL on: a session in steady use keeps being extended, and still ends within the bound.
revocationMatrix({
  name: 'sliding TTL on',
  env: { SLIDING_TTL_ENABLED: 'true', SLIDING_TTL_MIN_INTERVAL_SECONDS: '1', SLIDING_TTL_IDLE_SECONDS: '60' },
  boundMs: (ending) => (ending.via === 'sql' ? 1000 : 0),
})

describe('sliding TTL never outlives the cache TTL', () => {
  it('a session in steady use is re-read from Postgres at least every CACHE_TTL_SECONDS, counted from the read', async () => {
    const db = await createTestDatabase()
    const ttlSeconds = 2
    const t = await startTestApp({
      db,
      env: {
        CACHE_TTL_SECONDS: String(ttlSeconds),
        SLIDING_TTL_ENABLED: 'true',
        SLIDING_TTL_MIN_INTERVAL_SECONDS: '1',
        SLIDING_TTL_IDLE_SECONDS: String(ttlSeconds),
        REVOCATION_OUTBOX_RETENTION_SECONDS: '120',
      },
    })
    try {
      const { token } = await db.insertSession()
      // Steady use for three cache lifetimes: every Postgres read is noted; no two may be further apart than the TTL
      // (plus the time one request and one background fill take).
      const reads: number[] = []
      const until = Date.now() + ttlSeconds * 3 * 1000
      while (Date.now() < until) {
        const answer = await ask(t, token)
        expect(answer.valid).toBe(true)
        if (answer.source === 'postgres') reads.push(Date.now())
        await new Promise((r) => setTimeout(r, 50))
      }
      expect(reads.length).toBeGreaterThanOrEqual(3)
      const gaps = reads.slice(1).map((at, i) => at - reads[i]!)
      expect(Math.max(...gaps)).toBeLessThanOrEqual(ttlSeconds * 1000 + 500)
    } finally {
      await t.close()
      await db.drop()
    }
  })
})
