import { startTcpProxy } from '../../support/tcp-proxy.js'
import { revocationMatrix } from '../../support/revocation-matrix.js'

// The LISTEN connection cannot be opened at all (DATABASE_LISTEN_URL behind a proxy that refuses everything, as a
// transaction-mode pooler would hear nothing): revocations arrive by the backstop poll, within 5 s.
const POLL_MS = 1500
revocationMatrix({
  name: 'no LISTEN connection at all (the poll alone)',
  env: { REVOCATION_POLL_INTERVAL_MS: String(POLL_MS) },
  async setup(db) {
    const url = new URL(db.url)
    const proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port || 5432) })
    proxy.blackhole('refuse')
    url.host = `127.0.0.1:${proxy.port}`
    return { env: { DATABASE_LISTEN_URL: url.toString() }, close: () => proxy.close() }
  },
  // The poll's interval, one poll's own time, and the answers' round trips.
  boundMs: (ending) => (ending.via === 'sql' ? Math.min(5000, POLL_MS + 1000) : 0),
})
