import { describe, expect, it } from 'vitest'
import { commandName, createSlowlogTracker, parseSlowlog, type SlowlogEntry } from '../../src/redis/slowlog.js'
import { createMetrics } from '../../src/telemetry/metrics.js'

const entry = (id: number, command = 'get', timestampSeconds = 2000): SlowlogEntry => ({ id, timestampSeconds, durationMicros: 1500, command })

describe('SLOWLOG', () => {
  it('keeps the command name and duration of each entry and drops its arguments', () => {
    const reply = [
      [7, 2000, 12_500, ['GET', 'ssc:e:0123456789abcdef'], '127.0.0.1:5000', 'studio-session-cache'],
      [6, 1999, 40, [Buffer.from('EVALSHA'), 'abc', '6', 'ssc:e:feed'], '127.0.0.1:5001', ''],
      [5, 1998, 40, ['weird command!'], '', ''],
      'not an entry',
    ]
    const entries = parseSlowlog(reply)
    expect(entries).toEqual([
      { id: 7, timestampSeconds: 2000, durationMicros: 12_500, command: 'get' },
      { id: 6, timestampSeconds: 1999, durationMicros: 40, command: 'evalsha' },
      { id: 5, timestampSeconds: 1998, durationMicros: 40, command: 'other' },
    ])
    expect(JSON.stringify(entries)).not.toContain('ssc:')
    expect(commandName('CONFIG|GET')).toBe('config|get')
    expect(commandName(undefined)).toBe('other')
  })

  it('reports each entry once, none from before the process started, and starts over when Redis restarts', () => {
    const tracker = createSlowlogTracker(2000)
    // Newest first, as SLOWLOG GET answers; 10 and 11 predate this process.
    expect(tracker.fresh([entry(12), entry(11, 'get', 1990), entry(10, 'get', 1980)])).toEqual({ fresh: [entry(12)], missed: 0 })
    expect(tracker.fresh([entry(14), entry(13), entry(12)])).toEqual({ fresh: [entry(13), entry(14)], missed: 0 })
    expect(tracker.fresh([entry(14)])).toEqual({ fresh: [], missed: 0 })
    // 15-19 rotated out before this poll read the log.
    expect(tracker.fresh([entry(21), entry(20)])).toEqual({ fresh: [entry(20), entry(21)], missed: 5 })
    // Ids went backwards: Redis restarted.
    expect(tracker.fresh([entry(1, 'set', 2100), entry(0, 'get', 2100)])).toEqual({ fresh: [entry(0, 'get', 2100), entry(1, 'set', 2100)], missed: 0 })
  })

  it('counts entries by command, with their time, and the missed ones as "unknown"', async () => {
    const metrics = createMetrics({ redisPool: () => ({ size: 0, available: 0, borrowed: 0, pending: 0 }) })
    metrics.slowlog([entry(1), entry(2), entry(3, 'evalsha')], 4)
    const body = await metrics.registry.metrics()
    expect(body).toContain('redis_slowlog_entries_total{command="get"} 2')
    expect(body).toContain('redis_slowlog_entries_total{command="evalsha"} 1')
    expect(body).toContain('redis_slowlog_entries_total{command="unknown"} 4')
    expect(body).toContain('redis_slowlog_duration_seconds_total{command="get"} 0.003')
  })
})

describe('Redis INFO figures', () => {
  it('turn Redis’s own counters into counters of what this process saw: baseline first, then deltas, restarts included', async () => {
    const metrics = createMetrics({ redisPool: () => ({ size: 0, available: 0, borrowed: 0, pending: 0 }) }, { redisInfo: true })
    const figures = (evicted: number, expired: number) => ({
      usedMemoryBytes: 1_000_000,
      maxmemoryBytes: 268_435_456,
      connectedClients: 7,
      evictedKeys: evicted,
      expiredKeys: expired,
    })
    const read = async (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await metrics.registry.metrics())?.[1])
    metrics.redisInfo(figures(100, 1000))
    expect(await read('redis_evicted_keys_total')).toBe(0)
    expect(await read('redis_up')).toBe(1)
    metrics.redisInfo(figures(130, 1010))
    expect(await read('redis_evicted_keys_total')).toBe(30)
    expect(await read('redis_expired_keys_total')).toBe(10)
    metrics.redisInfo(figures(5, 2)) // Redis restarted: its counters began again from 0
    expect(await read('redis_evicted_keys_total')).toBe(35)
    expect(await read('redis_expired_keys_total')).toBe(12)
    expect(await read('redis_memory_max_bytes')).toBe(268_435_456)
    expect(await read('redis_connected_clients')).toBe(7)
    metrics.redisInfo(null)
    expect(await read('redis_up')).toBe(0)
  })
})
