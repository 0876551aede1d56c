import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { FeedPath, RevocationFeedObserver } from '../service/revocation-feed.js'

/** From a few ms (NOTIFY) to the 1 s and 5 s bounds (docs/architecture.md, "The bounds, path by path"), and past them. */
const LAG_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
const PATHS: readonly FeedPath[] = ['notify', 'poll', 'catchup']

/** The revocation feed's figures (alerts and dashboard panels in ops/ are built on these names). */
export function createRevocationMetrics(registry: Registry) {
  const lag = new Histogram({
    name: 'session_revocation_lag_seconds',
    help: 'From an outbox row written in Postgres to its application at this instance, by how it arrived.',
    labelNames: ['path'] as const,
    buckets: LAG_BUCKETS,
    registers: [registry],
  })
  const applied = new Counter({
    name: 'session_revocation_events_applied_total',
    help: 'Outbox rows applied to the cache, by how they arrived.',
    labelNames: ['path'] as const,
    registers: [registry],
  })
  const connected = new Gauge({
    name: 'session_revocation_listener_connected',
    help: '1 while the LISTEN connection is up and listening, else 0 (revocations then arrive by the poll only).',
    registers: [registry],
  })
  const pending = new Gauge({
    name: 'session_revocation_pending_events',
    help: 'Outbox rows read but not yet applied (the cache refused them); Redis is not trusted meanwhile.',
    registers: [registry],
  })
  const gaps = new Counter({
    name: 'session_revocation_gaps_total',
    help: 'Times outbox rows were pruned before this instance applied them (the cache was then flushed).',
    registers: [registry],
  })
  const lastApplied = new Gauge({
    name: 'session_revocation_last_applied_id',
    help: 'Highest outbox id up to which every row has been applied here.',
    registers: [registry],
  })
  for (const path of PATHS) {
    lag.labels(path)
    applied.labels(path)
  }
  connected.set(0)
  pending.set(0)

  const lagChild = Object.fromEntries(PATHS.map((p) => [p, lag.labels(p)])) as Record<FeedPath, ReturnType<typeof lag.labels>>
  const appliedChild = Object.fromEntries(PATHS.map((p) => [p, applied.labels(p)])) as Record<FeedPath, ReturnType<typeof applied.labels>>

  const observer: RevocationFeedObserver = {
    applied(path, lagSeconds) {
      appliedChild[path].inc()
      if (lagSeconds !== null) lagChild[path].observe(lagSeconds)
    },
    pending: (events) => pending.set(events),
    gap: () => gaps.inc(),
    lastApplied: (id) => lastApplied.set(id),
  }
  return {
    observer,
    listenerConnected: (up: boolean) => connected.set(up ? 1 : 0),
  }
}
