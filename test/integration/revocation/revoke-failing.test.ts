import { expect } from 'vitest'
import { hashToken } from '../../../src/domain/token.js'
import { startTcpProxy, type TcpProxy } from '../../support/tcp-proxy.js'
import { ask, revocationMatrix } from '../../support/revocation-matrix.js'

// Postgres cannot be reached by the service when /invalidate comes (the Studio's own writes are not the service's):
// the cached entries are dropped first, then the call answers 503 (it is the caller's to retry). Nothing answers the
// session valid meanwhile: uncached, it gets 503 (the answer cannot be known), never valid:true from a cache.
// SQL endings are not in this cell: while the service cannot reach Postgres it cannot hear what is written there
// (docs/architecture.md, "Revocation from Postgres": a partition between the service and Postgres holds cached answers until it heals).
let proxy: TcpProxy
revocationMatrix({
  name: 'the Postgres revoke failing (the service cut off from Postgres)',
  env: { DATABASE_CONNECT_TIMEOUT_MS: '300', DATABASE_STATEMENT_TIMEOUT_MS: '300' },
  async setup(db) {
    const url = new URL(db.url)
    proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port || 5432) })
    url.host = `127.0.0.1:${proxy.port}`
    return { env: { DATABASE_URL: url.toString() }, close: () => proxy.close() }
  },
  skip: (ending) => ending.via === 'sql',
  async before() {
    proxy.blackhole('refuse')
  },
  // Only an invalidation by token without revoke needs nothing from Postgres.
  expectStatus: (ending) => (ending.name === '/invalidate by token' ? 200 : 503),
  async verify({ a, b, session }) {
    try {
      expect(await a.redis.exists(a.keys.entry(hashToken(session.token))), 'entry dropped before the answer').toBe(0)
      for (let round = 0; round < 3; round++) {
        for (const app of [a, b]) {
          const x = await ask(app, session.token)
          expect(x.valid === true ? x.source : String(x.status), JSON.stringify(x)).not.toMatch(/redis|l1/)
          if (x.valid === undefined) expect(x.status).toBe(503)
        }
      }
    } finally {
      proxy.resume()
    }
  },
  boundMs: () => 0,
})
