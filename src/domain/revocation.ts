import type { InvalidationTarget } from './session.js'

/**
 * One row of the revocation outbox: what a write in Postgres ended (sessions by token hash and id, users by id), and
 * when it was written, so that the lag to its application here can be measured.
 */
export interface RevocationEvent {
  id: number
  targets: InvalidationTarget[]
  writtenAtMs: number
}

/** Where the outbox stands: its newest row, and the newest row ever pruned (rows up to it can no longer be read). */
export interface OutboxPosition {
  maxId: number
  prunedThrough: number
}
