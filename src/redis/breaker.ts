import CircuitBreaker from 'opossum'
import type { Log } from '../service/observer.js'

export interface BreakerOptions {
  timeoutMs: number
  errorThresholdPercentage: number
  resetTimeoutMs: number
  rollingCountTimeoutMs: number
  volumeThreshold: number
}

export type BreakerState = 'closed' | 'half-open' | 'open'
export type BreakerEvent = 'open' | 'halfOpen' | 'close' | 'reject' | 'timeout' | 'failure' | 'success'

/**
 * An error that says the server answered (a Redis reply error such as WRONGTYPE or OOM) is not an outage: it must
 * not open the breaker. A miss is a null reply, not an error, so it never reaches here.
 */
export function isNotAnOutage(err: unknown): boolean {
  return (err as { name?: string } | null)?.name === 'ReplyError'
}

export function breakerState(breaker: CircuitBreaker): BreakerState {
  if (breaker.opened) return 'open'
  if (breaker.halfOpen) return 'half-open'
  return 'closed'
}

/**
 * A breaker that closes starts from an empty rolling window. Opossum keeps the outage's failures in it, so the first
 * failure after a close (one slow command on a Redis that has just restarted and is refilling) would find a failure
 * rate near 100 % and open it again at once: after a recovery it must take BREAKER_VOLUME_THRESHOLD calls again.
 * Opossum has no reset for its stats; `status.window` hands out its buckets themselves, whose counts are zeroed here.
 */
function forgetWindow(breaker: CircuitBreaker): void {
  for (const bucket of breaker.status.window as unknown as Array<Record<string, unknown>>) {
    for (const key of Object.keys(bucket)) if (typeof bucket[key] === 'number') bucket[key] = 0
  }
}

/**
 * An opossum breaker around "run this cache operation". The action takes the operation as its argument, so one
 * breaker guards every command without a closure per call. Rolling percentiles are off: they sort latencies on the
 * hot path, and our own histograms already measure them.
 */
export function createBreaker<A extends unknown[], T>(
  action: (...args: A) => Promise<T>,
  options: BreakerOptions,
  log: Log,
  onEvent: (event: BreakerEvent, state: BreakerState) => void,
): CircuitBreaker<A, T> {
  const breaker = new CircuitBreaker<A, T>(action, {
    name: 'redis',
    timeout: options.timeoutMs,
    errorThresholdPercentage: options.errorThresholdPercentage,
    resetTimeout: options.resetTimeoutMs,
    rollingCountTimeout: options.rollingCountTimeoutMs,
    volumeThreshold: options.volumeThreshold,
    rollingPercentilesEnabled: false,
    // Nobody listens to opossum's rolling snapshots (the metrics count events): no timer computing them.
    enableSnapshots: false,
    errorFilter: isNotAnOutage,
  })
  breaker.on('open', () => {
    log.warn({ breaker: 'redis', state: 'open' }, 'circuit breaker opened: Redis is skipped, requests read Postgres')
    onEvent('open', 'open')
  })
  breaker.on('halfOpen', () => {
    log.info({ breaker: 'redis', state: 'half-open' }, 'circuit breaker half-open: probing Redis')
    onEvent('halfOpen', 'half-open')
  })
  breaker.on('close', () => {
    forgetWindow(breaker)
    log.info({ breaker: 'redis', state: 'closed' }, 'circuit breaker closed: Redis is back')
    onEvent('close', 'closed')
  })
  breaker.on('reject', () => onEvent('reject', breakerState(breaker)))
  breaker.on('timeout', () => onEvent('timeout', breakerState(breaker)))
  breaker.on('failure', () => onEvent('failure', breakerState(breaker)))
  return breaker
}
