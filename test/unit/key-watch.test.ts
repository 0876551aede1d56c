import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createKeyWatch, FrequentItems, keyId } from '../../src/telemetry/key-watch.js'

const hash = (s: string) => createHash('sha256').update(s).digest('hex')

describe('FrequentItems (Misra-Gries)', () => {
  it('counts exactly while there is room, and reports the largest first', () => {
    const items = new FrequentItems(10)
    for (const key of ['a', 'b', 'a', 'c', 'a', 'b']) items.add(key)
    expect(items.top(2)).toEqual([
      { key: 'a', count: 3 },
      { key: 'b', count: 2 },
    ])
  })

  it('never holds more than its capacity, and always finds a key with more than lookups/(capacity+1) of them', () => {
    const capacity = 50
    const items = new FrequentItems(capacity)
    let lookups = 0
    let hot = 0
    let largest = 0
    // 100,000 unique keys (a flood of unknown tokens) with one key interleaved at 5 %.
    for (let i = 0; i < 100_000; i++) {
      items.add(`unique-${i}`)
      lookups++
      largest = Math.max(largest, items.size)
      if (i % 20 === 0) {
        items.add('hot')
        lookups++
        hot++
      }
    }
    expect(largest).toBe(capacity)
    const [top] = items.top(1)
    expect(top?.key).toBe('hot')
    // A lower bound, short of the truth by at most lookups/(capacity+1).
    expect(top!.count).toBeLessThanOrEqual(hot)
    expect(top!.count).toBeGreaterThanOrEqual(hot - lookups / (capacity + 1))
  })

  it('does O(1) amortised work: the decrement passes a flood of unique keys causes touch no more counters than there were adds', () => {
    const capacity = 1000
    const items = new FrequentItems(capacity)
    let adds = 0
    let passes = 0
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 100_000; i++) {
        adds++
        // add() returns 0 exactly when the key found no free counter, i.e. when it ran a decrement pass over all of them.
        if (items.add(`k${round}-${i % (7 * capacity)}`) === 0) passes++
      }
    }
    expect(passes).toBeGreaterThan(0)
    expect(passes * capacity).toBeLessThanOrEqual(adds)
  })
})

describe('key watch', () => {
  it('reports a miss spike once per key per window, by an 8-character key id, the moment it reaches the threshold', () => {
    const spikes: Array<[string, number]> = []
    const watch = createKeyWatch({ topK: 3, capacity: 100, missSpikeThreshold: 4 }, (key, misses) => spikes.push([key, misses]))
    const stampeded = hash('stampeded')
    for (let i = 0; i < 3; i++) watch.lookup(stampeded, false)
    expect(spikes).toEqual([])
    watch.lookup(stampeded, true) // hits do not count towards a spike
    watch.lookup(stampeded, false)
    expect(spikes).toEqual([[stampeded.slice(0, 8), 4]])
    for (let i = 0; i < 10; i++) watch.lookup(stampeded, false)
    expect(spikes).toHaveLength(1)
    watch.rotate()
    for (let i = 0; i < 4; i++) watch.lookup(stampeded, false)
    expect(spikes).toHaveLength(2)
  })

  it('closes a window with its top-K by requests and its most-missed key, then starts empty', () => {
    const watch = createKeyWatch({ topK: 2, capacity: 100, missSpikeThreshold: 1000 }, () => undefined)
    const [a, b, c] = [hash('a'), hash('b'), hash('c')]
    for (let i = 0; i < 5; i++) watch.lookup(a, true)
    for (let i = 0; i < 3; i++) watch.lookup(b, false)
    watch.lookup(c, true)
    expect(watch.rotate()).toEqual({
      hot: [
        { key: keyId(a), requests: 5 },
        { key: keyId(b), requests: 3 },
      ],
      mostMissed: { key: keyId(b), misses: 3 },
    })
    expect(watch.rotate()).toEqual({ hot: [], mostMissed: undefined })
    expect(keyId(a)).toMatch(/^[0-9a-f]{8}$/)
  })

  it('with sampling, counts one lookup in N and reports it scaled back up; misses are still counted one by one', () => {
    const spikes: Array<[string, number]> = []
    const watch = createKeyWatch({ topK: 2, capacity: 100, missSpikeThreshold: 3, sampleEvery: 4 }, (key, misses) => spikes.push([key, misses]))
    const [hot, cold] = [hash('hot'), hash('cold')]
    for (let i = 0; i < 40; i++) watch.lookup(hot, true)
    watch.lookup(cold, false)
    watch.lookup(cold, false)
    expect(spikes).toEqual([])
    watch.lookup(cold, false)
    expect(spikes).toEqual([[keyId(cold), 3]])
    const window = watch.rotate()
    expect(window.hot[0]).toEqual({ key: keyId(hot), requests: 40 })
    expect(window.mostMissed).toEqual({ key: keyId(cold), misses: 3 })
  })
})
