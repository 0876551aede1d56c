/**
 * What the soak watches in the server process, read from its own /metrics (prom-client's default process metrics):
 * resident memory, used heap, open file descriptors (every socket is one), active handles and active timers.
 */

export interface Sample {
  /** Seconds since the load started (negative: before it). */
  t: number
  rssBytes: number
  heapUsedBytes: number
  /** V8's heap as committed (what of the RSS the JS heap holds) and memory outside it (Buffers, native). */
  heapTotalBytes: number
  externalBytes: number
  openFds: number
  activeHandles: number
  timers: number
  /** Redis + Postgres pool connections: sockets (and pg's idle timers) the process is meant to hold. */
  poolConnections: number
  /** Counters, for rates between samples: the process's CPU seconds, Postgres queries, answers from Postgres, 503 SESSION_STORE_BUSY. */
  cpuSeconds: number
  postgresQueries: number
  postgresQuerySeconds: number
  answeredFromPostgres: number
  storeBusy: number
  /** The server's own event-loop delay, p99 since the previous scrape (prom-client resets it on each). */
  loopDelayP99Ms: number
}

/** Sum of every series of a gauge with labels (prom-client reports handles per type; the *_total gauges are off). */
function sumOf(body: string, name: string, having = ''): number {
  return body.split('\n').filter((l) => l.startsWith(`${name}{`) && l.includes(having)).reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0)
}

function read(body: string, name: string, labels = ''): number {
  const line = body.split('\n').find((l) => l.startsWith(`${name}${labels} `))
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : NaN
}

export async function sample(metricsUrl: string, t: number): Promise<Sample> {
  const body = await (await fetch(metricsUrl, { signal: AbortSignal.timeout(10_000) })).text()
  return {
    t,
    rssBytes: read(body, 'process_resident_memory_bytes'),
    heapUsedBytes: read(body, 'nodejs_heap_size_used_bytes'),
    heapTotalBytes: read(body, 'nodejs_heap_size_total_bytes'),
    externalBytes: read(body, 'nodejs_external_memory_bytes'),
    openFds: read(body, 'process_open_fds'),
    activeHandles: sumOf(body, 'nodejs_active_handles'),
    timers: read(body, 'nodejs_active_resources', '{type="Timeout"}') || 0,
    poolConnections: read(body, 'redis_pool_size') + read(body, 'postgres_pool_size'),
    cpuSeconds: read(body, 'process_cpu_seconds_total'),
    postgresQueries: sumOf(body, 'postgres_query_duration_seconds_count'),
    postgresQuerySeconds: sumOf(body, 'postgres_query_duration_seconds_sum'),
    answeredFromPostgres: sumOf(body, 'session_validations_total', 'source="postgres"'),
    storeBusy: sumOf(body, 'session_service_errors_total', 'SESSION_STORE_BUSY'),
    loopDelayP99Ms: read(body, 'nodejs_eventloop_lag_p99_seconds') * 1000,
  }
}

/** The Redis breaker's state from /metrics: 0 closed, 1 half-open, 2 open. */
export async function breakerState(metricsUrl: string): Promise<number> {
  const body = await (await fetch(metricsUrl, { signal: AbortSignal.timeout(5000) })).text()
  return read(body, 'circuit_breaker_state', '{breaker="redis"}')
}

export interface SeriesSummary {
  warmupEnd: number
  /** Lowest value in the first third of the samples after warm-up, and in the last third. */
  startTrough: number
  endTrough: number
  startMean: number
  endMean: number
  min: number
  max: number
  end: number
  /** (endMean − startMean) / startMean, in %. */
  growthPct: number
}

/**
 * Growth is judged on the mean of the first third of the samples after warm-up against the mean of the last third. A
 * heap is a sawtooth (a sample lands anywhere between two collections) and V8 and the allocator hand pages back in
 * bursts, so a single sample, or a trough, against another measures the GC; a leak moves the whole third.
 */
export function summarise(samples: Sample[], pick: (s: Sample) => number, warmupS: number): SeriesSummary {
  const values = samples.filter((s) => s.t >= warmupS).map(pick)
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(xs.length, 1)
  const third = Math.max(1, Math.floor(values.length / 3))
  const first = values.slice(0, third)
  const last = values.slice(-third)
  const startTrough = Math.min(...first)
  const endTrough = Math.min(...last)
  return {
    warmupEnd: warmupS,
    startTrough,
    endTrough,
    startMean: mean(first),
    endMean: mean(last),
    min: Math.min(...values),
    max: Math.max(...values),
    end: values.at(-1) ?? NaN,
    growthPct: ((mean(last) - mean(first)) / mean(first)) * 100,
  }
}

/** Sockets, handles and timers beyond the pools' connections: what a leak would add to. */
export const unexplained = (s: Sample) => ({
  fds: s.openFds - s.poolConnections,
  handles: s.activeHandles - s.poolConnections,
  timers: s.timers - s.poolConnections,
})
