import { fork } from 'node:child_process'
import path from 'node:path'
import * as hdr from 'hdr-histogram-js'
import type { Bucket, LoadOptions, LoadResult, ToParent } from './loadgen.js'
import { KINDS, zero, type Kind } from './mix.js'

/**
 * The parent's side of the load: forks load/node-soak/loadgen.ts (its own process, its own CPU), and afterwards sorts
 * its per-second buckets into inside and outside the Redis restart's window.
 */
export function startLoad(root: string, options: LoadOptions) {
  const child = fork(path.join(root, 'load/node-soak/loadgen.ts'), [], {
    execPath: path.join(root, 'node_modules/.bin/node'),
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  let onStarted: (epochMs: number) => void = () => undefined
  const started = new Promise<number>((resolve) => (onStarted = resolve))
  const done = new Promise<LoadResult>((resolve, reject) => {
    child.on('message', (m: ToParent) => {
      if (m.type === 'started') onStarted(m.startEpochMs)
      else if (m.type === 'done') resolve(m.result)
      else reject(new Error(`load generator failed: ${m.error}`))
    })
    // 'exit' can come before the last IPC message is handled; 'close' comes after the channel closed, and the grace is
    // for a large result still being parsed.
    child.once('close', (code) => setTimeout(() => reject(new Error(`load generator exited with ${code} before reporting`)), 1000))
  })
  child.send({ type: 'start', options })
  return {
    /** Date.now() when the first request was due. */
    started: Promise.race([started, done.then(() => NaN)]),
    done,
  }
}

export interface LatencySummary {
  count: number
  p50Ms: number
  p99Ms: number
  p999Ms: number
  maxMs: number
}

export interface TrafficCounts {
  sent: number
  answered: Record<Kind, number>
  /** valid:true for an unknown or revoked token, valid:false for a valid one, or a body that is not an answer. */
  wrong: Record<Kind, number>
  wrongExamples: string[]
  errorExamples: string[]
  inWindow: { sent: number; status503: number; codes503: Record<string, number>; latency: LatencySummary }
  outside: { sent: number; status503: number; codes503: Record<string, number>; latency: LatencySummary; first503s: string[] }
  /** Any status other than 200 and 503. */
  otherStatus: Record<string, number>
  errors: number
  timeouts: number
  latency: LatencySummary
  dispatchLag: LatencySummary
  /** Five-second slices: requests, 503s, p50 and p99 (ms), and whether the slice touches the window. */
  timeline: Array<{ fromS: number; sent: number; status503: number; p50Ms: number; p99Ms: number; inWindow: boolean }>
  elapsedS: number
  rps: number
  loadgenCpuS: number
  loadgenCpuPct: number
  loadgenLoopDelayP99Ms: number
  connectionsOpened: number
  /** The control: a bare server asked at the same time by the same generator (LoadOptions.probe). */
  probe?: LatencySummary & { sent: number; failed: number }
}

const build = () => hdr.build({ bitBucketSize: 'packed', lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 })
const decode = (s: string) => hdr.decodeFromCompressedBase64(s, 'packed')
const summary = (h: hdr.Histogram): LatencySummary => ({
  count: h.totalCount,
  p50Ms: h.getValueAtPercentile(50) / 1000,
  p99Ms: h.getValueAtPercentile(99) / 1000,
  p999Ms: h.getValueAtPercentile(99.9) / 1000,
  maxMs: h.maxValue / 1000,
})

/**
 * `window` is in seconds after the first scheduled send. For the requests sent (the 503 share's denominator) and the
 * latencies, a bucket (one second of scheduled sends) counts as inside it if any part of it overlaps: the window is
 * rounded outwards to whole seconds. A 503 is the restart's if the request was due before the window closed and
 * answered after it opened (one due just before the kill can fail because of it); any other 503 is outside.
 */
export function tally(r: LoadResult, window: { from: number; to: number } | undefined): TrafficCounts {
  const inside = (s: number) => window !== undefined && s + 1 > window.from && s < window.to
  const all = build()
  const inH = build()
  const outH = build()
  const counts: TrafficCounts = {
    sent: 0, answered: zero(), wrong: zero(), wrongExamples: r.wrongExamples, errorExamples: r.errorExamples,
    inWindow: { sent: 0, status503: 0, codes503: {}, latency: summary(build()) },
    outside: { sent: 0, status503: 0, codes503: {}, latency: summary(build()), first503s: [] },
    otherStatus: {}, errors: 0, timeouts: 0, latency: summary(build()), dispatchLag: summary(decode(r.dispatchLag)), timeline: [],
    elapsedS: r.elapsedS, rps: 0, loadgenCpuS: r.cpuUserS + r.cpuSystemS, loadgenCpuPct: ((r.cpuUserS + r.cpuSystemS) / r.elapsedS) * 100,
    loadgenLoopDelayP99Ms: r.eventLoopDelayP99Ms, connectionsOpened: r.connectionsOpened,
  }
  let slice: { h: hdr.Histogram; fromS: number; sent: number; status503: number; inWindow: boolean } | undefined
  const flush = () => {
    if (slice && slice.sent > 0) counts.timeline.push({ fromS: slice.fromS, sent: slice.sent, status503: slice.status503, p50Ms: slice.h.getValueAtPercentile(50) / 1000, p99Ms: slice.h.getValueAtPercentile(99) / 1000, inWindow: slice.inWindow })
  }
  r.buckets.forEach((b: Bucket, s) => {
    const h = decode(b.latency)
    const status503 = b.statuses['503'] ?? 0
    all.add(h)
    counts.sent += b.sent
    for (const k of KINDS) {
      counts.answered[k] += b.answered[k]
      counts.wrong[k] += b.wrong[k]
    }
    for (const [status, c] of Object.entries(b.statuses)) if (status !== '200' && status !== '503') counts.otherStatus[status] = (counts.otherStatus[status] ?? 0) + c
    counts.errors += b.errors
    counts.timeouts += b.timeouts
    ;(inside(s) ? counts.inWindow : counts.outside).sent += b.sent
    ;(inside(s) ? inH : outH).add(h)
    if (s % 5 === 0) {
      flush()
      slice = { h: build(), fromS: s, sent: 0, status503: 0, inWindow: false }
    }
    slice!.h.add(h)
    slice!.sent += b.sent
    slice!.status503 += status503
    slice!.inWindow ||= inside(s)
  })
  flush()
  for (const [dueMs, answeredMs, code] of r.status503s) {
    const theRestarts = window !== undefined && dueMs / 1000 <= window.to && answeredMs / 1000 >= window.from
    const side = theRestarts ? counts.inWindow : counts.outside
    side.status503++
    side.codes503[code] = (side.codes503[code] ?? 0) + 1
    if (!theRestarts && counts.outside.first503s.length < 3) counts.outside.first503s.push(`${code} due at ${(dueMs / 1000).toFixed(1)} s, answered at ${(answeredMs / 1000).toFixed(1)} s`)
  }
  // Beyond the list's cap: counted as outside, the side that fails the run.
  counts.outside.status503 += r.more503s
  if (r.more503s) counts.outside.codes503['(beyond the list)'] = r.more503s
  counts.latency = summary(all)
  counts.inWindow.latency = summary(inH)
  counts.outside.latency = summary(outH)
  counts.rps = counts.sent / Math.max(r.elapsedS, 1)
  if (r.probe) counts.probe = { ...summary(decode(r.probe.latency)), sent: r.probe.sent, failed: r.probe.failed }
  return counts
}
