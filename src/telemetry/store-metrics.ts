import { Counter, Gauge, type Registry } from 'prom-client'
import type { ActivityOutcome } from '../service/activity-recorder.js'
import type { StoreAccessState } from '../service/store-access.js'
import type { QueryFailure } from '../store/timed-query.js'

const ACTIVITY_OUTCOMES: readonly ActivityOutcome[] = ['queued', 'written', 'dropped']

/** The session store's own figures: failed queries by kind, whether its role can work, and activity recording. */
export function createStoreMetrics(registry: Registry) {
  const queryErrors = new Counter({
    name: 'postgres_query_errors_total',
    help:
      'Failed Postgres queries, by query name, kind (transient: can heal, answered 503; permanent: a missing privilege, ' +
      'column or table, answered 500 SESSION_STORE_MISCONFIGURED) and SQLSTATE ("none" for a network failure).',
    labelNames: ['query', 'kind', 'sqlstate'] as const,
    registers: [registry],
  })
  const misconfigured = new Gauge({
    name: 'session_store_misconfigured',
    help: "1 while the service's Postgres role is known unable to do its work (not ready; see the error log), else 0.",
    registers: [registry],
  })
  misconfigured.set(0)
  const activity = new Counter({
    name: 'session_activity_total',
    help: 'last_activity_at recording: uses queued for a write, rows written, uses dropped (pending full or a failed batch).',
    labelNames: ['outcome'] as const,
    registers: [registry],
  })
  const activityChild = new Map(ACTIVITY_OUTCOMES.map((outcome) => [outcome, activity.labels(outcome)]))
  for (const child of activityChild.values()) child.inc(0)

  return {
    queryFailed(query: string, failure: QueryFailure) {
      queryErrors.labels(query, failure.kind, failure.sqlstate ?? 'none').inc()
    },
    accessState(state: StoreAccessState) {
      misconfigured.set(state === 'misconfigured' ? 1 : 0)
    },
    activity(outcome: ActivityOutcome, n: number) {
      activityChild.get(outcome)?.inc(n)
    },
  }
}
