import { describe, expect, it } from 'vitest'
import { startPoller } from '../../src/telemetry/poller.js'
import { eventually } from '../support/gate.js'

const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined }
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('startPoller', () => {
  it('runs at once, then again after each run ends: runs never overlap, however slow', async () => {
    let running = 0
    let most = 0
    let runs = 0
    const poller = startPoller({
      name: 'slow',
      intervalMs: 1,
      timeoutMs: 1000,
      log: quiet,
      run: async () => {
        runs++
        running++
        most = Math.max(most, running)
        await sleep(20)
        running--
      },
    })
    expect(runs).toBe(1)
    await eventually(() => runs >= 4, 10_000, 'four runs')
    await poller.stop()
    expect(most).toBe(1)
  })

  it('never throws: a run that rejects, throws synchronously or hangs is reported as failed and the polling goes on', async () => {
    const failures: string[] = []
    let calls = 0
    const poller = startPoller({
      name: 'broken',
      intervalMs: 1,
      timeoutMs: 30,
      log: quiet,
      run: () => {
        calls++
        if (calls === 1) throw new Error('sync')
        if (calls === 2) return Promise.reject(new Error('async'))
        return new Promise<void>(() => undefined) // hangs: abandoned after timeoutMs
      },
      failed: (err) => {
        failures.push((err as Error).message)
        throw new Error('a reporter that throws changes nothing')
      },
    })
    await eventually(() => failures.length >= 3, 10_000, 'three failed runs')
    await poller.stop()
    expect(failures.slice(0, 3)).toEqual(['sync', 'async', 'broken poll timed out after 30 ms'])
  })

  it('stops: clears its timer, waits for the run in progress, and runs no more; its timers never hold the process', async () => {
    let runs = 0
    let finished = false
    const before = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
    const poller = startPoller({
      name: 'stoppable',
      intervalMs: 10_000,
      timeoutMs: 1000,
      immediate: false,
      log: quiet,
      run: async () => {
        runs++
      },
    })
    // An unref'd timer is not an active resource.
    expect(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length).toBe(before)
    await poller.stop()
    expect(runs).toBe(0)

    const busy = startPoller({
      name: 'busy',
      intervalMs: 1,
      timeoutMs: 1000,
      log: quiet,
      run: async () => {
        runs++
        await sleep(30)
        finished = true
      },
    })
    await busy.stop()
    expect(finished).toBe(true)
    const after = runs
    await sleep(50)
    expect(runs).toBe(after)
  })

  it('ends for good when a run resolves "stop" (a poll that is not permitted, say)', async () => {
    let runs = 0
    const poller = startPoller({ name: 'once', intervalMs: 1, timeoutMs: 100, log: quiet, run: async () => (runs++, 'stop') })
    await sleep(50)
    expect(runs).toBe(1)
    await poller.stop()
  })
})
