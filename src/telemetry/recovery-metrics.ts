import { Counter, type Registry } from 'prom-client'
import type { RecoverySignal } from '../redis/recovery.js'

/** Signal-driven recovery probes (src/redis/recovery.ts), by what prompted them and how they went. */
export function createRecoveryMetrics(registry: Registry) {
  const probes = new Counter({
    name: 'redis_recovery_probes_total',
    help: 'Probes of Redis made on a recovery signal (master switch, a connection ready again) while the breaker was open; ok closes it.',
    labelNames: ['signal', 'outcome'] as const,
    registers: [registry],
  })
  for (const signal of ['switch', 'reconnect', 'subscriber', 'retry'] as const) for (const outcome of ['ok', 'failed'] as const) probes.labels(signal, outcome).inc(0)
  return {
    probed: (signal: RecoverySignal, ok: boolean) => probes.labels(signal, ok ? 'ok' : 'failed').inc(),
  }
}
