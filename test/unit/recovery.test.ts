import CircuitBreaker from 'opossum'
import { afterEach, describe, expect, it } from 'vitest'
import { createRecovery, type Recovery } from '../../src/redis/recovery.js'

/**
 * The recovery logic on a real opossum breaker (its reset timer far away, so only a probe can close it), with a probe
 * the test answers. What Redis does on a reconnect is tested against real servers (redis-recovery.test.ts, topology/).
 */
const silent = { debug() {}, info() {}, warn() {}, error() {} } as never
const BASE_MS = 40
const STABLE_MS = 1000
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

let recovery: Recovery | undefined
let breaker: CircuitBreaker | undefined
afterEach(() => {
  recovery?.stop()
  breaker?.shutdown()
})

function setUp(resetTimeoutMs = 60_000) {
  breaker = new CircuitBreaker(async () => 'ok', { resetTimeout: resetTimeoutMs, enableSnapshots: false, rollingPercentilesEnabled: false })
  const probes: number[] = []
  const state = { answers: true }
  recovery = createRecovery({
    breaker,
    probe: async () => {
      probes.push(performance.now())
      if (!state.answers) throw new Error('no answer')
    },
    observer: { probing() {}, probed() {} },
    log: silent,
    options: { resetTimeoutMs, baseBackoffMs: BASE_MS, stableMs: STABLE_MS },
  })
  return { breaker, recovery, probes, state }
}

describe('recovery: a signal ends the open state at once, flapping is damped', () => {
  it('does nothing while the breaker is closed', async () => {
    const { recovery, probes } = setUp()
    recovery.signal('reconnect')
    await sleep(10)
    expect(probes).toHaveLength(0)
  })

  it('a signal while open probes now, and an answer closes the breaker (no reset timer needed)', async () => {
    const { breaker, recovery, probes } = setUp()
    breaker.open()
    const usable = recovery.whenUsable(5000)
    const at = performance.now()
    recovery.signal('switch')
    await usable
    expect(probes).toHaveLength(1)
    expect(breaker.closed).toBe(true)
    expect(performance.now() - at).toBeLessThan(BASE_MS)
  })

  it('a failed probe leaves it open and the next one waits its backoff; a signal meanwhile is kept, not lost', async () => {
    const { breaker, recovery, probes, state } = setUp()
    state.answers = false
    breaker.open()
    recovery.signal('reconnect')
    await sleep(5)
    expect(probes).toHaveLength(1)
    expect(breaker.opened).toBe(true)
    state.answers = true
    recovery.signal('reconnect')
    await sleep(5)
    // Still inside the first backoff (BASE_MS): no second probe yet.
    expect(probes).toHaveLength(1)
    await recovery.whenUsable(5000)
    expect(probes).toHaveLength(2)
    expect(probes[1]! - probes[0]!).toBeGreaterThanOrEqual(BASE_MS - 2)
    expect(breaker.closed).toBe(true)
  })

  it('a breaker that re-opens soon after a probe closed it backs off more each time', async () => {
    const { breaker, recovery, probes } = setUp()
    const gaps: number[] = []
    for (let flap = 0; flap < 4; flap++) {
      breaker.open()
      const openedAt = performance.now()
      recovery.signal('reconnect')
      await recovery.whenUsable(5000)
      gaps.push(probes.at(-1)! - openedAt)
    }
    expect(probes).toHaveLength(4)
    // First open: at once. Then BASE_MS · 2^(flaps-1): 40, 80, 160.
    expect(gaps[0]).toBeLessThan(BASE_MS / 2)
    expect(gaps[1]).toBeGreaterThanOrEqual(BASE_MS - 2)
    expect(gaps[2]).toBeGreaterThanOrEqual(BASE_MS * 2 - 2)
    expect(gaps[3]).toBeGreaterThanOrEqual(BASE_MS * 4 - 2)
  })

  it('the backoff never passes the reset timeout, when the breaker\'s own half-open trial is as quick', async () => {
    const resetTimeoutMs = BASE_MS * 2.5
    const { breaker, recovery } = setUp(resetTimeoutMs)
    let lastWait = 0
    for (let flap = 0; flap < 4; flap++) {
      breaker.open()
      const openedAt = performance.now()
      recovery.signal('reconnect')
      await recovery.whenUsable(5000)
      lastWait = performance.now() - openedAt
      // Closed by a probe, or half-open by opossum's timer (the same moment once the cap is reached).
      expect(breaker.opened).toBe(false)
      if (breaker.halfOpen) breaker.close()
    }
    expect(lastWait).toBeGreaterThanOrEqual(resetTimeoutMs - 2)
    // Uncapped, the fourth would wait BASE_MS · 4 = 160 ms.
    expect(lastWait).toBeLessThan(BASE_MS * 4 - 20)
  })

  it('after staying closed for the stable period, a new outage probes at once again', async () => {
    const { breaker, recovery, probes } = setUp()
    breaker.open()
    recovery.signal('reconnect')
    await recovery.whenUsable(5000)
    // Stable: the flap count is reset when the next open comes later than STABLE_MS after the close.
    await sleep(STABLE_MS + 20)
    breaker.open()
    const at = performance.now()
    recovery.signal('reconnect')
    await recovery.whenUsable(5000)
    expect(probes).toHaveLength(2)
    expect(probes[1]! - at).toBeLessThan(BASE_MS / 2)
  })
})
