/**
 * The soak's load generator, in a process of its own (forked by traffic.ts) so that its CPU is its own and is reported,
 * and so that the service's event loop and the generator's never share a thread.
 *
 * Open loop: request i is due at a time fixed in advance (every 1/rate s, or Poisson arrivals at that mean rate), on
 * connection i mod C of C keep-alive connections (undici Clients, pipelining 1), whatever happened to the requests
 * before it. Its latency is counted from that scheduled time, not from when it went out, so a stalled service or a
 * busy connection shows up as latency instead of as requests never sent (no coordinated omission). A request due on a
 * connection whose previous request is still in flight waits in that Client's queue, and the wait is counted too.
 * Bounded: exactly round(rate x duration) requests, each with a 30 s timeout; loopback only (the parent passes the URL).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import * as hdr from 'hdr-histogram-js'
import { Client, errors } from 'undici'
import { codeOf, isRight, pick, zero, type Kind } from './mix.js'

export interface LoadOptions {
  url: string
  connections: number
  /** Requests per second over all connections. */
  rate: number
  durationS: number
  /** burst: each second's requests all due at its start, the shape autocannon gave the old soak (for comparison only). */
  arrivals: 'constant' | 'poisson' | 'burst'
  validTokens: string[]
  revokedTokens: string[]
  serviceKey: string
  /**
   * A control measured at the same time by the same process: every `every`-th scheduled request also sends one to a
   * bare server at `url` (over its own keep-alive connections), at the same scheduled time, counted the same way. What
   * that server's answers take is what the machine and the generator cost right then, whatever the service does.
   */
  probe?: { url: string; every: number; connections: number }
}

/** One second of scheduled sends (bucket s holds the requests due in [s, s+1) s after the load's start). */
export interface Bucket {
  sent: number
  statuses: Record<string, number>
  codes503: Record<string, number>
  answered: Record<Kind, number>
  wrong: Record<Kind, number>
  errors: number
  timeouts: number
  /** Latency from scheduled send to the whole answer read, in µs (hdr-histogram-js, compressed base64). */
  latency: string
}

export interface LoadResult {
  /** Date.now() at the first scheduled send: the parent maps its own timeline (the Redis restart) onto the buckets. */
  startEpochMs: number
  elapsedS: number
  buckets: Bucket[]
  wrongExamples: string[]
  errorExamples: string[]
  /**
   * Every 503 as [due ms, answered ms, code] after the start (the first MAX_503S; `more503s` counts the rest): whether
   * it belongs to the Redis restart depends on both ends, since a request due before the kill can be answered after it.
   */
  status503s: Array<[number, number, string]>
  more503s: number
  /** How late the generator put each request on its connection, in µs: its own lag, already inside the latency. */
  dispatchLag: string
  /** The probe's latencies (hdr, compressed base64), requests sent and failed; absent without a probe. */
  probe?: { latency: string; sent: number; failed: number }
  cpuUserS: number
  cpuSystemS: number
  eventLoopDelayP99Ms: number
  connectionsOpened: number
}

export type ToParent = { type: 'started'; startEpochMs: number } | { type: 'done'; result: LoadResult } | { type: 'failed'; error: string }

const TIMEOUT_MS = 30_000
const MAX_503S = 100_000
const HIGHEST_US = 60_000_000
const histogram = () => hdr.build({ bitBucketSize: 'packed', lowestDiscernibleValue: 1, highestTrackableValue: HIGHEST_US, numberOfSignificantValueDigits: 3 })
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const any = <T>(list: T[]) => list[Math.floor(Math.random() * list.length)]!

export async function run(o: LoadOptions, send: (m: ToParent) => void): Promise<LoadResult> {
  const origin = new URL(o.url).origin
  const clients = Array.from({ length: o.connections }, () =>
    new Client(origin, { pipelining: 1, headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS, keepAliveTimeout: 120_000, connectTimeout: 10_000 }))
  // Open every connection before the clock starts (100 at a time), so the load measures answers, not TCP handshakes.
  let opened = 0
  for (let i = 0; i < clients.length; i += 100) {
    await Promise.all(clients.slice(i, i + 100).map(async (c) => {
      const res = await c.request({ path: '/health/live', method: 'GET' })
      await res.body.dump()
      opened++
    }))
  }

  const probeClients = o.probe
    ? Array.from({ length: o.probe.connections }, () => new Client(new URL(o.probe!.url).origin, { pipelining: 1, headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS, keepAliveTimeout: 120_000, connectTimeout: 10_000 }))
    : []
  for (const c of probeClients) await (await c.request({ path: '/', method: 'GET' })).body.dump()
  const probed = { latency: histogram(), sent: 0, failed: 0 }

  const total = Math.round(o.rate * o.durationS)
  const bucketCount = Math.ceil(o.durationS) + 1
  const buckets = Array.from({ length: bucketCount }, () => ({
    sent: 0, statuses: {} as Record<string, number>, codes503: {} as Record<string, number>, answered: zero(), wrong: zero(), errors: 0, timeouts: 0, latency: histogram(),
  }))
  const wrongExamples: string[] = []
  const errorExamples: string[] = []
  const status503s: Array<[number, number, string]> = []
  let more503s = 0
  const lag = histogram()
  const json = { 'content-type': 'application/json' }
  const auth = { ...json, authorization: `Bearer ${o.serviceKey}` }
  let pending = 0

  const loop = monitorEventLoopDelay({ resolution: 10 })
  loop.enable()
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const startEpochMs = Date.now()
  send({ type: 'started', startEpochMs })

  function fireProbe(i: number, dueMs: number): void {
    probed.sent++
    pending++
    probeClients[(i / o.probe!.every) % probeClients.length]!
      .request({ path: '/validate', method: 'POST', headers: json, body: '{"token":"probe"}' })
      .then(async (res) => {
        await res.body.dump()
        probed.latency.recordValue(Math.min(HIGHEST_US, Math.max(1, Math.round((performance.now() - t0 - dueMs) * 1000))))
      })
      .catch(() => probed.failed++)
      .finally(() => pending--)
  }

  function fire(i: number, dueMs: number): void {
    const bucket = buckets[Math.min(bucketCount - 1, Math.floor(dueMs / 1000))]!
    const kind = pick()
    const token = kind === 'revoked' ? any(o.revokedTokens) : kind === 'unknown' ? `soak_unknown_${Math.random().toString(36).slice(2)}` : any(o.validTokens)
    bucket.sent++
    pending++
    const at = performance.now()
    lag.recordValue(Math.max(1, Math.round((at - t0 - dueMs) * 1000)))
    clients[i % clients.length]!
      .request({ path: kind === 'invalidate' ? '/invalidate' : '/validate', method: 'POST', headers: kind === 'invalidate' ? auth : json, body: JSON.stringify({ token }) })
      .then(async (res) => {
        const body = await res.body.text()
        const answeredMs = performance.now() - t0
        bucket.latency.recordValue(Math.min(HIGHEST_US, Math.max(1, Math.round((answeredMs - dueMs) * 1000))))
        bucket.statuses[res.statusCode] = (bucket.statuses[res.statusCode] ?? 0) + 1
        if (res.statusCode === 503) {
          const code = codeOf(body)
          bucket.codes503[code] = (bucket.codes503[code] ?? 0) + 1
          if (status503s.length < MAX_503S) status503s.push([Math.round(dueMs), Math.round(answeredMs), code])
          else more503s++
        } else if (res.statusCode === 200) {
          bucket.answered[kind]++
          if (!isRight(kind, body)) {
            bucket.wrong[kind]++
            if (wrongExamples.length < 5) wrongExamples.push(`${kind}: ${body.slice(0, 200)}`)
          }
        }
      })
      .catch((err: Error) => {
        if (err instanceof errors.HeadersTimeoutError || err instanceof errors.BodyTimeoutError) bucket.timeouts++
        else bucket.errors++
        if (errorExamples.length < 5) errorExamples.push(`${kind} due at ${(dueMs / 1000).toFixed(1)} s: ${err.name}: ${err.message}`)
      })
      .finally(() => pending--)
    // After the service's request, so the control never goes out ahead of what it is compared with.
    if (o.probe && i % o.probe.every === 0) fireProbe(i, dueMs)
  }

  const exponential = () => -Math.log(1 - Math.random()) * (1000 / o.rate)
  let nextMs = 0
  for (let i = 0; i < total; ) {
    const now = performance.now() - t0
    while (i < total && nextMs <= now) {
      fire(i, nextMs)
      i++
      nextMs = o.arrivals === 'poisson' ? nextMs + exponential() : o.arrivals === 'burst' ? Math.floor(i / o.rate) * 1000 : (i * 1000) / o.rate
    }
    if (i < total) await sleep(Math.max(0, nextMs - (performance.now() - t0)))
  }
  // Every request has its own timeout, so this wait is bounded; the extra second is for the timeouts' own timers.
  const drainUntil = performance.now() + TIMEOUT_MS + 1000
  while (pending > 0 && performance.now() < drainUntil) await sleep(50)
  const elapsedS = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  loop.disable()
  await Promise.all([...clients, ...probeClients].map((c) => c.close().catch(() => undefined)))

  return {
    startEpochMs,
    elapsedS,
    buckets: buckets.map((b) => ({ ...b, latency: hdr.encodeIntoCompressedBase64(b.latency) })),
    wrongExamples,
    errorExamples,
    status503s,
    more503s,
    dispatchLag: hdr.encodeIntoCompressedBase64(lag),
    cpuUserS: cpu.user / 1e6,
    cpuSystemS: cpu.system / 1e6,
    eventLoopDelayP99Ms: loop.percentile(99) / 1e6,
    connectionsOpened: opened,
    ...(o.probe ? { probe: { latency: hdr.encodeIntoCompressedBase64(probed.latency), sent: probed.sent, failed: probed.failed } } : {}),
  }
}

// Forked with an IPC channel: one 'start' message in, 'started' and then 'done' (or 'failed') out. Only as the entry
// point: imported (a test), the module must not take over its host's IPC channel.
if (process.send && process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  // The channel is closed only once the last message has gone out (the result is large).
  const send = (m: ToParent) => new Promise<void>((resolve) => process.send!(m, undefined, undefined, () => resolve()))
  process.once('message', (message: { type: 'start'; options: LoadOptions }) => {
    run(message.options, (m) => void send(m)).then(
      (result) => send({ type: 'done', result }),
      (err: unknown) => send({ type: 'failed', error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
    ).finally(() => process.disconnect())
  })
}
