import { expect } from 'vitest'
import { eventually } from '../../support/gate.js'
import { revocationMatrix } from '../../support/revocation-matrix.js'

// Both instances' LISTEN connections are killed by Postgres (pg_terminate_backend) right before the session ends:
// each must reconnect, LISTEN again, and read what was committed meanwhile, within 5 s.
revocationMatrix({
  name: 'the LISTEN connections killed with pg_terminate_backend just before',
  async before({ db, a, b }) {
    await eventually(() => [a, b].every((app) => app.app.internals.revocation.status().listener === 'listening'), 10_000, 'both listening')
    const pids = [a, b].map((app) => app.app.internals.revocation.status().backendPid)
    for (const pid of pids) expect(pid, 'a listening backend').toEqual(expect.any(Number))
    const { rows } = await db.query('SELECT pg_terminate_backend(pid) AS killed FROM unnest($1::int[]) AS pid', [pids])
    expect(rows.map((r) => r.killed)).toEqual([true, true])
  },
  async after({ a, b }) {
    // And each listener is back on a new backend (within its reconnect backoff, the connect timeout and slack).
    for (const app of [a, b]) {
      const { pollIntervalMs, reconnectMaxMs } = app.config.revocation
      await eventually(() => app.app.internals.revocation.status().listener === 'listening', reconnectMaxMs + pollIntervalMs + 2000, 'listener back')
    }
  },
  boundMs: (ending) => (ending.via === 'sql' ? 5000 : 0),
})
