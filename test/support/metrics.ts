import type { App } from '../../src/app.js'

/**
 * The sum of a metric's samples whose labels include `labels`, read from the app's own registry (what /metrics
 * shows); 0 while it has none.
 */
export async function metricValue(app: App, name: string, labels: Record<string, string> = {}): Promise<number> {
  const samples = (await app.internals.metrics.registry.getSingleMetric(name)?.get())?.values ?? []
  return samples
    .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
    .reduce((sum, v) => sum + v.value, 0)
}
