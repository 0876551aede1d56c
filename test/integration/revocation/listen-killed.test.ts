import { afterAll, expect } from 'vitest'
import { eventually } from '../../support/gate.js'
import type { TestApp } from '../../support/app.js'
import { revocationMatrix } from '../../support/revocation-matrix.js'

// Both instances' LISTEN connections are killed by Postgres (pg_terminate_backend) right before the session ends, so the
// ending commits while neither listens: its NOTIFY reaches nobody. Each must reconnect on a new backend, LISTEN again,
// and read what was committed meanwhile (the reconnect's catch-up). The backstop poll is pushed to its maximum, far
// past the bound, so it cannot stand in for a catch-up that never ran: the bound is the reconnect's, from the config.
const POLL_MS = 60_000
/** waitUntilGone's slack past the bound (revocation-matrix.ts): the poll must be further than that. */
const MATRIX_SLACK_MS = 2000

const oldPids = new Map<TestApp, number>()
let outboxBefore = 0
let sqlBoundMs = 0

async function metric(app: TestApp, line: RegExp): Promise<number> {
  const body = (await app.app.inject({ method: 'GET', url: '/metrics' })).body
  const match = body.split('\n').find((l) => line.test(l))
  return match ? Number(match.split(' ').at(-1)) : 0
}
const CATCHUP = /^session_revocation_events_applied_total\{path="catchup"\}/
const catchupsBefore = new Map<TestApp, number>()
/** Instances × cells whose ending only a catch-up could apply, and did: the scenario this file exists for. */
let caughtUp = 0

afterAll(() => {
  // Six SQL endings on two instances; a very busy machine may let a reconnect beat a commit now and then.
  expect(caughtUp, 'cells applied by the reconnect\'s catch-up').toBeGreaterThanOrEqual(6)
})

revocationMatrix({
  name: 'the LISTEN connections killed with pg_terminate_backend just before (the poll a minute away)',
  env: { REVOCATION_POLL_INTERVAL_MS: String(POLL_MS) },
  async before({ db, a, b }) {
    // The reconnect's bound: its longest backoff wait, one connect, and LISTEN + one outbox read + the apply (500 ms).
    const { config } = a
    sqlBoundMs = config.revocation.reconnectMaxMs + config.database.connectTimeoutMs + 500
    expect(sqlBoundMs, 'within the design bound for a lost LISTEN connection').toBeLessThanOrEqual(5000)
    expect(config.revocation.pollIntervalMs).toBeGreaterThan(sqlBoundMs + MATRIX_SLACK_MS)

    await eventually(() => [a, b].every((app) => app.app.internals.revocation.status().listener === 'listening'), 10_000, 'both listening')
    for (const app of [a, b]) {
      const pid = app.app.internals.revocation.status().backendPid
      expect(pid, 'a listening backend').toEqual(expect.any(Number))
      oldPids.set(app, pid!)
      catchupsBefore.set(app, await metric(app, CATCHUP))
    }
    outboxBefore = Number((await db.query('SELECT coalesce(max(id), 0) AS id FROM $schema.session_cache_outbox')).rows[0].id)
    const { rows } = await db.query('SELECT pg_terminate_backend(pid) AS killed FROM unnest($1::int[]) AS pid', [[...oldPids.values()]])
    expect(rows.map((r) => r.killed)).toEqual([true, true])
    // Both have noticed: the ending commits inside their reconnect's backoff, with nobody listening.
    await eventually(() => [a, b].every((app) => app.app.internals.revocation.status().listener === 'lost'), 2000, 'both lost')
  },
  async after({ db, a, b }) {
    for (const app of [a, b]) {
      const { reconnectMaxMs } = app.config.revocation
      const old = oldPids.get(app)
      // Back, and on a new backend: the old one is gone from Postgres, the new one is this service's listener.
      await eventually(
        () => {
          const s = app.app.internals.revocation.status()
          return s.listener === 'listening' && s.backendPid !== null && s.backendPid !== old
        },
        reconnectMaxMs + app.config.database.connectTimeoutMs + 2000,
        'listener back on a new backend',
      )
      const pid = app.app.internals.revocation.status().backendPid!
      const { rows } = await db.query(
        `SELECT pid, application_name, backend_start FROM pg_stat_activity WHERE pid = ANY($1::int[])`,
        [[old, pid]],
      )
      expect(rows.map((r) => r.pid)).toEqual([pid])
      expect(rows[0].application_name).toBe('studio-session-cache-listener')
      // When the ending wrote an outbox row before the new backend even started (every SQL ending does: it commits
      // inside the reconnect's backoff), its NOTIFY reached nobody and the poll is a minute away: only the reconnect's
      // catch-up can apply it, and must. (An /invalidate with revoke may commit after the reconnect: its NOTIFY then
      // arrives, and the call itself dropped the entry anyway.)
      const written = await db.query('SELECT max(created_at) AS at FROM $schema.session_cache_outbox WHERE id > $1', [outboxBefore])
      const writtenAt = written.rows[0].at as Date | null
      if (writtenAt !== null && writtenAt.getTime() < (rows[0].backend_start as Date).getTime()) {
        await eventually(async () => (await metric(app, CATCHUP)) > catchupsBefore.get(app)!, sqlBoundMs, 'applied by the catch-up')
        caughtUp++
      }
    }
  },
  boundMs: (ending) => (ending.via === 'sql' ? sqlBoundMs : 0),
})
