import { expect } from 'vitest'
import { ask, revocationMatrix } from '../../support/revocation-matrix.js'

// L1 on both instances: the instance that served /invalidate forgets at once; the other hears it by pub/sub. Before
// the ending both answer from L1 itself (not Redis), so what the bound measures is L1's eviction.
revocationMatrix({
  name: 'L1 on',
  env: { L1_CACHE_TTL_MS: '30000' },
  async before({ a, b, session }) {
    for (const app of [a, b]) {
      expect(app.app.internals.local?.active, 'L1 subscribed to the invalidation feed').toBe(true)
      expect(await ask(app, session.token), app === a ? 'a' : 'b').toMatchObject({ valid: true, source: 'l1' })
    }
  },
  boundMs: (ending) => (ending.via === 'sql' ? 1000 : 100),
})
