import { describe, expect, it } from 'vitest'
import { createTurnBarrier } from '../../src/http/turn-barrier.js'

describe('the turn barrier (L1 answers written together)', () => {
  it('gives every caller in one turn the same wait, and a caller in a later turn a new one', async () => {
    const endOfTurn = createTurnBarrier()
    const first = endOfTurn()
    expect(endOfTurn()).toBe(first)
    await first
    const later = endOfTurn()
    expect(later).not.toBe(first)
    await later
  })

  it('lets its callers go in the check phase, after what the turn queued before them and before what it queued after', async () => {
    const endOfTurn = createTurnBarrier()
    const order: string[] = []
    setImmediate(() => order.push('queued before'))
    const callers = [endOfTurn().then(() => order.push('caller 1')), endOfTurn().then(() => order.push('caller 2'))]
    setImmediate(() => order.push('queued after'))
    await Promise.all(callers)
    await new Promise((r) => setImmediate(r))
    expect(order).toEqual(['queued before', 'caller 1', 'caller 2', 'queued after'])
  })
})
