import type pg from 'pg'
import { Errors } from '../errors.js'

export type QueryObserver = (name: string, ok: boolean, seconds: number) => void

/**
 * Runs the store's queries: named (prepared once per connection, then only bound and executed), timed into
 * postgres_query_duration_seconds, and every failure turned into SESSION_STORE_UNAVAILABLE (a 503, never an answer).
 */
export function timedQuery(pool: pg.Pool, schema: string, observe: QueryObserver) {
  return async function query<R extends pg.QueryResultRow>(name: string, text: string, values: unknown[]) {
    const started = performance.now()
    let ok = false
    try {
      const result = await pool.query<R>({ name: `ssc_${schema}_${name}`, text, values })
      ok = true
      return result
    } catch (err) {
      throw new Errors.StoreUnavailable({ cause: err })
    } finally {
      observe(name, ok, (performance.now() - started) / 1000)
    }
  }
}
