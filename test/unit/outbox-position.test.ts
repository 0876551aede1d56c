import { describe, expect, it } from 'vitest'
import { createOutboxPosition } from '../../src/service/outbox-position.js'

const holeGraceMs = 1000

function tracker() {
  const clock = { ms: 0 }
  const position = createOutboxPosition<string>({ holeGraceMs }, () => clock.ms)
  const apply = (...ids: number[]) => {
    for (const id of ids) {
      expect(position.enqueue(id, `row ${id}`)).toBe(true)
      position.applied(id)
    }
  }
  return { clock, position, apply }
}

describe('the revocation feed position in the outbox', () => {
  it('has no floor before start, sees nothing and does not move', () => {
    const { position } = tracker()
    expect(position.floor).toBeUndefined()
    expect(position.seen(1)).toBe(false)
    expect(position.advance()).toBeUndefined()
  })

  it('starts after the last row written before the replay window, or after what was pruned if that is later', () => {
    const a = tracker().position
    a.start(7, 4)
    expect(a.floor).toBe(7)
    expect(a.seen(7)).toBe(true)
    expect(a.seen(8)).toBe(false)

    const b = tracker().position
    b.start(3, 9)
    expect(b.floor).toBe(9)
    expect(b.seen(9)).toBe(true)
    expect(b.seen(10)).toBe(false)
  })

  it('does not take the ids below the start for holes', () => {
    const { position, apply } = tracker()
    position.start(7, 0)
    apply(8)
    expect(position.advance()).toBe(8)
    expect(position.held).toEqual({ done: 0, holes: 0 })
  })

  it('moves over applied ids in order and stops at one still queued', () => {
    const { position, apply } = tracker()
    position.start(0, 0)
    apply(1, 2)
    expect(position.enqueue(3, 'row 3')).toBe(true)
    apply(4)
    expect(position.advance()).toBe(2)
    expect(position.pending).toBe(1)
    expect(position.enqueue(3, 'again')).toBe(false)
    expect(position.enqueue(1, 'again')).toBe(false)
    position.applied(3)
    expect(position.advance()).toBe(4)
    expect(position.held).toEqual({ done: 0, holes: 0 })
  })

  it('hands the queue out in arrival order, including ids queued while it is walked', () => {
    const { position } = tracker()
    position.start(0, 0)
    position.enqueue(2, 'row 2')
    position.enqueue(1, 'row 1')
    const walked: number[] = []
    for (const [id] of position.queued()) {
      walked.push(id)
      if (id === 1) position.enqueue(3, 'row 3')
      position.applied(id)
    }
    expect(walked).toEqual([2, 1, 3])
    expect(position.pending).toBe(0)
  })

  it('waits holeGraceMs for a hole, then skips it', () => {
    const { clock, position, apply } = tracker()
    position.start(0, 0)
    apply(1, 3)
    expect(position.advance()).toBe(1)
    expect(position.held).toEqual({ done: 1, holes: 1 })
    clock.ms = holeGraceMs - 1
    expect(position.advance()).toBe(1)
    clock.ms = holeGraceMs
    expect(position.advance()).toBe(3)
    expect(position.held).toEqual({ done: 0, holes: 0 })
  })

  it('takes an id committed out of order within the grace without waiting for the rest of it', () => {
    const { clock, position, apply } = tracker()
    position.start(0, 0)
    apply(1, 3)
    expect(position.advance()).toBe(1)
    clock.ms = 10
    apply(2)
    expect(position.advance()).toBe(3)
    expect(position.seen(2)).toBe(true)
    expect(position.held).toEqual({ done: 0, holes: 0 })
  })

  it('counts the grace of every hole from when it was first seen, not from when the floor reached it', () => {
    const { clock, position, apply } = tracker()
    position.start(0, 0)
    apply(4)
    // 1 is the next id; 2 and 3 are above it: all three are holes from now.
    expect(position.advance()).toBe(0)
    expect(position.held).toEqual({ done: 1, holes: 3 })
    clock.ms = holeGraceMs
    expect(position.advance()).toBe(4)
  })

  it('on a pruned gap, jumps the floor over it and drops the ids it held at or below the gap', () => {
    const { clock, position, apply } = tracker()
    position.start(0, 0)
    apply(5, 8, 12)
    expect(position.advance()).toBe(0)
    // done: 5, 8, 12; holes: 1-4, 6, 7, 9-11.
    expect(position.held).toEqual({ done: 3, holes: 9 })
    clock.ms = 10
    position.jumpTo(10)
    expect(position.floor).toBe(10)
    expect(position.held).toEqual({ done: 1, holes: 1 })
    // A late NOTIFY for a pruned row is not applied.
    expect(position.seen(7)).toBe(true)
    // Hole 11 keeps the time it was first seen (0), not the jump's.
    clock.ms = holeGraceMs
    expect(position.advance()).toBe(12)
    expect(position.held).toEqual({ done: 0, holes: 0 })
  })

  it('after a gap beyond every id seen, takes the next id without waiting', () => {
    const { position, apply } = tracker()
    position.start(0, 0)
    apply(2)
    position.advance()
    position.jumpTo(20)
    expect(position.held).toEqual({ done: 0, holes: 0 })
    apply(21)
    expect(position.advance()).toBe(21)
  })
})
