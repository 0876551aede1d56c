import http from 'node:http'
import type { AddressInfo } from 'node:net'
import * as hdr from 'hdr-histogram-js'
import { afterEach, describe, expect, it } from 'vitest'
import { run } from '../../load/node-soak/loadgen.js'
import { tally } from '../../load/node-soak/traffic.js'

/**
 * The soak's load generator is open-loop: a stall of the service must show as latency on every request due during it
 * (counted from its scheduled send time), not as requests never sent. A closed-loop generator on 5 connections would
 * see at most 5 slow requests across a 300 ms stall; this one must see every request due in it.
 */

const RATE = 100
const DURATION_S = 1
const STALL_FROM_MS = 500
const STALL_UNTIL_MS = 800

let server: http.Server | undefined
let control: http.Server | undefined
afterEach(async () => {
  await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined))
  await new Promise((resolve) => control?.close(resolve) ?? resolve(undefined))
  server = undefined
  control = undefined
})

/** A server that answers at once (the soak's bare control), counting what it was asked. */
async function immediateServer() {
  let asked = 0
  control = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      if (req.method === 'POST') asked++
      res.end('{}')
    })
  })
  await new Promise<void>((resolve) => control!.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(control!.address() as AddressInfo).port}`, asked: () => asked }
}

/** Answers what each kind must get, but holds every answer due between STALL_FROM_MS and STALL_UNTIL_MS after the first request. */
async function stallingService() {
  let first: number | undefined
  server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString()))
    req.on('end', () => {
      const at = performance.now()
      first ??= at
      const token = req.url === '/health/live' ? '' : (JSON.parse(body) as { token: string }).token
      if (req.url === '/health/live') first = undefined
      const answer = req.url === '/invalidate' ? { invalidated: 1 }
        : token.startsWith('valid_') ? { valid: true }
        : token.startsWith('revoked_') ? { valid: false, reason: 'revoked' }
        : { valid: false, reason: 'not_found' }
      const since = first === undefined ? 0 : at - first
      const hold = since >= STALL_FROM_MS && since < STALL_UNTIL_MS ? STALL_UNTIL_MS - since : 0
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer)), hold)
    })
  })
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server!.address() as AddressInfo).port}`
}

describe('soak load generator', () => {
  it('sends on schedule through a stall and counts each request from its scheduled time', async () => {
    const url = await stallingService()
    const result = await run(
      { url, connections: 5, rate: RATE, durationS: DURATION_S, arrivals: 'constant', validTokens: ['valid_a', 'valid_b'], revokedTokens: ['revoked_a'], serviceKey: 'k' },
      () => undefined,
    )
    const counts = tally(result, undefined)
    expect(counts.sent).toBe(RATE * DURATION_S)
    expect(counts.errors + counts.timeouts).toBe(0)
    expect(Object.values(counts.wrong).reduce((a, b) => a + b, 0)).toBe(0)
    expect(Object.values(counts.answered).reduce((a, b) => a + b, 0)).toBe(RATE * DURATION_S)

    const latency = hdr.decodeFromCompressedBase64(result.buckets[0]!.latency, 'packed')
    // Requests due in [500, 700) ms waited at least until 800 ms: 20 of the 100, so the 80th percentile is ≥ 100 ms.
    const dueInFirstTwoThirds = ((STALL_UNTIL_MS - STALL_FROM_MS) * (2 / 3) * RATE) / 1000
    expect(latency.getValueAtPercentile(100 - dueInFirstTwoThirds) / 1000).toBeGreaterThanOrEqual((STALL_UNTIL_MS - STALL_FROM_MS) / 3)
    // The first request due in the stall waited nearly all of it.
    expect(counts.latency.maxMs).toBeGreaterThanOrEqual((STALL_UNTIL_MS - STALL_FROM_MS) * 0.9)
  })

  it('asks the control at every Nth scheduled time, and the service\'s stall does not show in the control\'s latency', async () => {
    const url = await stallingService()
    const bare = await immediateServer()
    const every = 4
    const result = await run(
      {
        url, connections: 5, rate: RATE, durationS: DURATION_S, arrivals: 'constant', validTokens: ['valid_a'], revokedTokens: ['revoked_a'], serviceKey: 'k',
        probe: { url: bare.url, every, connections: 2 },
      },
      () => undefined,
    )
    const counts = tally(result, undefined)
    expect(counts.probe?.sent).toBe((RATE * DURATION_S) / every)
    expect(bare.asked()).toBe((RATE * DURATION_S) / every)
    expect(counts.probe?.failed).toBe(0)
    expect(counts.probe?.count).toBe((RATE * DURATION_S) / every)
    // The service held a third of its requests for up to 300 ms; the control, asked at the same times, never waited for it.
    expect(counts.latency.maxMs).toBeGreaterThanOrEqual((STALL_UNTIL_MS - STALL_FROM_MS) * 0.9)
    expect(counts.probe!.maxMs).toBeLessThan((STALL_UNTIL_MS - STALL_FROM_MS) / 3)
  })

  it('counts a 503 as the restart\'s when its request was due before the window closed and answered after it opened', () => {
    const empty = hdr.encodeIntoCompressedBase64(hdr.build({ bitBucketSize: 'packed' }))
    const bucket = { sent: 10, statuses: { '503': 3 }, codes503: { X: 3 }, answered: { valid: 0, unknown: 0, revoked: 0, invalidate: 0 }, wrong: { valid: 0, unknown: 0, revoked: 0, invalidate: 0 }, errors: 0, timeouts: 0, latency: empty }
    const result = {
      startEpochMs: 0, elapsedS: 3, buckets: [bucket, { ...bucket, statuses: {}, codes503: {} }, { ...bucket, statuses: {}, codes503: {} }],
      wrongExamples: [], errorExamples: [], dispatchLag: empty, cpuUserS: 0, cpuSystemS: 0, eventLoopDelayP99Ms: 0, connectionsOpened: 1, more503s: 0,
      // Due before the kill at 1.5 s and answered after it; due and answered before it; due and answered after the window.
      status503s: [[900, 1600, 'X'], [100, 200, 'X'], [2600, 2700, 'X']] as Array<[number, number, string]>,
    }
    const counts = tally(result, { from: 1.5, to: 2.5 })
    expect(counts.inWindow.status503).toBe(1)
    expect(counts.outside.status503).toBe(2)
    // Sent: second 1 overlaps [1.5, 2.5], and so does second 2; second 0 does not.
    expect(counts.inWindow.sent).toBe(20)
    expect(counts.outside.sent).toBe(10)
  })
})
