import pino from 'pino'
import { describe, expect, it, vi } from 'vitest'
import { lazyChildLoggerFactory } from '../../src/telemetry/lazy-child-logger.js'
import { captureLogs } from '../support/logs.js'

describe('the per-request logger', () => {
  it('writes exactly the line a real pino child would, bindings and redaction included', () => {
    const logs = captureLogs()
    const parent = pino({ level: 'info', redact: ['token'], timestamp: false }, logs.stream)
    const lazy = lazyChildLoggerFactory(parent, { requestId: 'r-1' }, undefined) as pino.Logger
    const real = parent.child({ requestId: 'r-1' })
    lazy.warn({ token: 'secret', n: 1 }, 'hello')
    real.warn({ token: 'secret', n: 1 }, 'hello')
    expect(logs.lines).toHaveLength(2)
    expect(logs.lines[0]).toBe(logs.lines[1])
    expect(logs.entries()[0]).toMatchObject({ requestId: 'r-1', token: '[Redacted]', msg: 'hello' })
  })

  it('makes no child for a request that logs nothing, or only below the level', () => {
    const parent = pino({ level: 'info' }, captureLogs().stream)
    const child = vi.spyOn(parent, 'child')
    const lazy = lazyChildLoggerFactory(parent, { requestId: 'r-2' }, undefined) as pino.Logger
    lazy.debug({ a: 1 }, 'not written')
    expect(lazy.level).toBe('info')
    expect(child).not.toHaveBeenCalled()
    lazy.info('written')
    expect(child).toHaveBeenCalledTimes(1)
  })
})
