import type pg from 'pg'
import { Errors } from '../errors.js'
import { classifyPgFailure, sqlState, type PgFailureKind } from './pg-errors.js'

/** How a query failed: whether a retry can help (pg-errors.ts), and Postgres's SQLSTATE when it sent one. */
export interface QueryFailure {
  kind: PgFailureKind
  sqlstate: string | undefined
  message: string
}

export type QueryObserver = (name: string, ok: boolean, seconds: number, failure?: QueryFailure) => void

/**
 * Runs the store's queries: named (prepared once per connection, then only bound and executed), timed into
 * postgres_query_duration_seconds, and every failure turned into an error the caller can act on, never an answer:
 * SESSION_STORE_UNAVAILABLE (503, retry) for what can heal, SESSION_STORE_MISCONFIGURED (500) for what cannot.
 */
export function timedQuery(pool: pg.Pool, schema: string, observe: QueryObserver) {
  return async function query<R extends pg.QueryResultRow>(name: string, text: string, values: unknown[]) {
    const started = performance.now()
    try {
      const result = await pool.query<R>({ name: `ssc_${schema}_${name}`, text, values })
      observe(name, true, (performance.now() - started) / 1000)
      return result
    } catch (err) {
      const kind = classifyPgFailure(err)
      observe(name, false, (performance.now() - started) / 1000, { kind, sqlstate: sqlState(err), message: (err as Error).message })
      throw kind === 'permanent' ? new Errors.StoreMisconfigured({ cause: err }) : new Errors.StoreUnavailable({ cause: err })
    }
  }
}
