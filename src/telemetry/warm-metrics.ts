import { Counter, Gauge, type Registry } from 'prom-client'
import type { CacheWarmerObserver } from '../service/cache-warmer.js'

/** Cache warming (src/service/cache-warmer.ts): runs, what each session's fill did, and how far the current run is. */
export function createWarmMetrics(registry: Registry): CacheWarmerObserver {
  const runs = new Counter({
    name: 'cache_warm_runs_total',
    help: 'Cache warming runs this instance made (it found the cache cold and held the lock), by how they ended.',
    labelNames: ['outcome'] as const,
    registers: [registry],
  })
  const sessions = new Counter({
    name: 'cache_warm_sessions_total',
    help: 'Sessions cache warming tried to fill: written, tombstoned (revoked since its read), skipped, failed.',
    labelNames: ['outcome'] as const,
    registers: [registry],
  })
  const progress = new Gauge({ name: 'cache_warm_progress_ratio', help: 'Share of the current (or last) warming run done, 0-1.', registers: [registry] })
  const running = new Gauge({ name: 'cache_warm_running', help: '1 while this instance is warming the cache.', registers: [registry] })
  const lastSeconds = new Gauge({ name: 'cache_warm_last_duration_seconds', help: 'How long the last warming run took.', registers: [registry] })
  for (const outcome of ['done', 'aborted', 'failed']) runs.labels(outcome).inc(0)
  for (const outcome of ['written', 'tombstoned', 'skipped', 'failed']) sessions.labels(outcome).inc(0)
  return {
    started() {
      running.set(1)
      progress.set(0)
    },
    filled: (outcome) => sessions.labels(outcome).inc(),
    progress: (done, total) => progress.set(total === 0 ? 1 : done / total),
    finished(outcome, seconds) {
      running.set(0)
      runs.labels(outcome).inc()
      lastSeconds.set(seconds)
    },
  }
}
